"""Chat formats: turning a list of messages into the prompt text a model was trained on.

GGUF files store a Jinja chat template. Rather than run Jinja, pocketlm
recognizes the family of the stored template by its markers and renders that
family's format in Python. Four families are known:

========  ===================================  ==========================================
name      recognized by                        turn
========  ===================================  ==========================================
chatml    ``<|im_start|>``                     ``<|im_start|>user\\nHi<|im_end|>\\n``
llama3    ``<|start_header_id|>``              ``<|start_header_id|>user<|end_header_id|>\\n\\nHi<|eot_id|>``
gemma     ``<start_of_turn>``                  ``<start_of_turn>user\\nHi<end_of_turn>\\n``
phi3      ``<|user|>`` and ``<|end|>``         ``<|user|>\\nHi<|end|>\\n``
========  ===================================  ==========================================

A template that matches none is rendered as ChatML. The BOS token is not part of
the text: tokenization adds it when the model asks for it. A ChatML template
that writes a default system message when the conversation has none (as
SmolLM2's does) gets the same default here::

    >>> from pocketlm.chat import detect_format
    >>> fmt = detect_format("{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}")
    >>> print(fmt.render([{"role": "user", "content": "Hi"}]), end="")
    <|im_start|>user
    Hi<|im_end|>
    <|im_start|>assistant
"""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = ["ChatFormat", "Message", "detect_format", "get_format", "FORMATS"]

#: A chat message: ``{"role": "system" | "user" | "assistant", "content": str}``.
Message = Mapping[str, str]


def _normalize(messages: Union[str, Sequence[Message]]) -> List[Tuple[str, str]]:
    if isinstance(messages, str):
        return [("user", messages)]
    out = []
    for i, m in enumerate(messages):
        try:
            role, content = m["role"], m["content"]
        except (KeyError, TypeError):
            raise ValueError(f"message {i} must be a mapping with 'role' and 'content'") from None
        if not isinstance(role, str) or not isinstance(content, str):
            raise TypeError(f"message {i}: role and content must be strings")
        out.append((role, content))
    return out


class ChatFormat:
    """One chat family: renders messages to prompt text. ``stop`` lists end-of-turn markers, used as stop
    strings in case the vocabulary does not mark them as end-of-generation tokens."""

    name = "chatml"
    stop: Tuple[str, ...] = ()

    def __init__(self, default_system: Optional[str] = None) -> None:
        #: System message used when the conversation does not start with one (None: no system message).
        self.default_system = default_system

    def render(self, messages: Union[str, Sequence[Message]], *, add_generation_prompt: bool = True) -> str:
        msgs = _normalize(messages)
        if self.default_system is not None and (not msgs or msgs[0][0] != "system"):
            msgs.insert(0, ("system", self.default_system))
        return self._render(msgs, add_generation_prompt)

    def _render(self, msgs: List[Tuple[str, str]], gen: bool) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<pocketlm.ChatFormat {self.name}>"


class ChatML(ChatFormat):
    name = "chatml"
    stop = ("<|im_end|>",)

    def _render(self, msgs: List[Tuple[str, str]], gen: bool) -> str:
        text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in msgs)
        return text + ("<|im_start|>assistant\n" if gen else "")


class Llama3(ChatFormat):
    name = "llama3"
    stop = ("<|eot_id|>",)

    def _render(self, msgs: List[Tuple[str, str]], gen: bool) -> str:
        text = "".join(f"<|start_header_id|>{role}<|end_header_id|>\n\n{content.strip()}<|eot_id|>"
                       for role, content in msgs)
        return text + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if gen else "")


class Gemma(ChatFormat):
    """Gemma has no system role: a system message is put at the start of the first user turn."""

    name = "gemma"
    stop = ("<end_of_turn>",)

    def _render(self, msgs: List[Tuple[str, str]], gen: bool) -> str:
        prefix = ""
        if msgs and msgs[0][0] == "system":
            prefix = msgs[0][1].strip() + "\n\n"
            msgs = msgs[1:]
        parts = []
        for role, content in msgs:
            role = "model" if role == "assistant" else role
            parts.append(f"<start_of_turn>{role}\n{prefix}{content.strip()}<end_of_turn>\n")
            prefix = ""
        if prefix:  # a system message and no turn to attach it to
            parts.append(f"<start_of_turn>user\n{prefix.rstrip()}<end_of_turn>\n")
        return "".join(parts) + ("<start_of_turn>model\n" if gen else "")


class Phi3(ChatFormat):
    name = "phi3"
    stop = ("<|end|>",)

    def _render(self, msgs: List[Tuple[str, str]], gen: bool) -> str:
        text = "".join(f"<|{role}|>\n{content}<|end|>\n" for role, content in msgs)
        return text + ("<|assistant|>\n" if gen else "")


FORMATS: Dict[str, type] = {"chatml": ChatML, "llama3": Llama3, "gemma": Gemma, "phi3": Phi3}

_CHATML_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system\s*\n(.*?)<\|im_end\|>", re.S)


def get_format(name: str) -> ChatFormat:
    """The format named ``name`` (``chatml``, ``llama3``, ``gemma``, ``phi3``), with no default system message."""
    try:
        return FORMATS[name]()
    except KeyError:
        raise ValueError(f"unknown chat format {name!r}; known: {', '.join(FORMATS)}") from None


def detect_format(template: str) -> ChatFormat:
    """The format of a stored chat template, recognized by its markers (ChatML when none match)."""
    t = template or ""
    if "<|start_header_id|>" in t:
        return Llama3()
    if "<start_of_turn>" in t:
        return Gemma()
    if "<|user|>" in t and "<|end|>" in t:
        return Phi3()
    default_system = None
    if "<|im_start|>" in t and "messages[0]['role'] != 'system'" in t.replace('"', "'"):
        m = _CHATML_DEFAULT_SYSTEM.search(t)
        if m:
            default_system = m.group(1)
    return ChatML(default_system)
