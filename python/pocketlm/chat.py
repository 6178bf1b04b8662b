"""Chat formats: turning a list of messages into the prompt text a model was trained on.

GGUF files store a Jinja chat template. Rather than run Jinja, pocketlm
recognizes the family of the stored template by its markers and renders that
family's format in its C core (``csrc/chat.c``, shared with the Lua package);
this module is a thin layer over it. Four families are known:

========  ===================================  ==========================================
name      recognized by                        turn
========  ===================================  ==========================================
chatml    ``<|im_start|>``                     ``<|im_start|>user\\nHi<|im_end|>\\n``
llama3    ``<|start_header_id|>``              ``<|start_header_id|>user<|end_header_id|>\\n\\nHi<|eot_id|>``
gemma     ``<start_of_turn>``                  ``<start_of_turn>user\\nHi<end_of_turn>\\n``
phi3      ``<|user|>`` and ``<|end|>``         ``<|user|>\\nHi<|end|>\\n``
========  ===================================  ==========================================

A template that matches none is rendered as ChatML. Llama 3 and Gemma strip
the whitespace around each message, as their templates do; Gemma has no system
role, so a leading system message opens the first user turn. The BOS token is
not part of the text: tokenization adds it when the model asks for it. A ChatML
template that writes a default system message when the conversation has none
(as SmolLM2's does) gets the same default here::

    >>> from pocketlm.chat import detect_format
    >>> fmt = detect_format("{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}")
    >>> print(fmt.render([{"role": "user", "content": "Hi"}]), end="")
    <|im_start|>user
    Hi<|im_end|>
    <|im_start|>assistant

Roles are ``system``, ``user`` and ``assistant``; another role, or text that
cannot be encoded as UTF-8, raises :class:`pocketlm.InvalidArgumentError` (a
``ValueError``) naming the message.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _core

__all__ = ["ChatFormat", "Message", "detect_format", "get_format", "FORMATS"]

#: A chat message: ``{"role": "system" | "user" | "assistant", "content": str}``.
Message = Mapping[str, str]


def _normalize(messages: Union[str, Sequence[Message]]) -> List[str]:
    """The messages as [role, content, role, content, ...], as the C renderer takes them."""
    if isinstance(messages, str):
        return ["user", messages]
    out: List[str] = []
    for i, m in enumerate(messages):
        try:
            role, content = m["role"], m["content"]
        except (KeyError, TypeError):
            raise ValueError(f"message {i} must be a mapping with 'role' and 'content'") from None
        if not isinstance(role, str) or not isinstance(content, str):
            raise TypeError(f"message {i}: role and content must be strings")
        out += (role, content)
    return out


def _stops(family: int) -> Tuple[str, ...]:
    stops = []
    while True:
        s = _core.chat_stop(family, len(stops))
        if s is None:
            return tuple(stops)
        stops.append(s)


class ChatFormat:
    """One chat family: renders messages to prompt text. ``stop`` lists end-of-turn markers, used as stop
    strings in case the vocabulary does not mark them as end-of-generation tokens."""

    name = "chatml"
    stop: Tuple[str, ...] = ()
    _family = _core.CHAT_CHATML

    def __init__(self, default_system: Optional[str] = None) -> None:
        #: System message used when the conversation does not start with one (None: no system message).
        self.default_system = default_system

    def render(self, messages: Union[str, Sequence[Message]], *, add_generation_prompt: bool = True) -> str:
        """The prompt text of ``messages`` (dicts with ``role`` and ``content``; a string is one user message),
        ending with the opening of the assistant's turn if ``add_generation_prompt``."""
        ds = self.default_system
        text = _core.chat_render(self._family, "" if ds is None else ds, ds is not None, _normalize(messages),
                                 bool(add_generation_prompt))
        return text.decode("utf-8")

    def __repr__(self) -> str:
        return f"<pocketlm.ChatFormat {self.name}>"


class ChatML(ChatFormat):
    name = _core.chat_family_name(_core.CHAT_CHATML)
    stop = _stops(_core.CHAT_CHATML)
    _family = _core.CHAT_CHATML


class Llama3(ChatFormat):
    """Llama 3: each message is stripped of surrounding whitespace."""

    name = _core.chat_family_name(_core.CHAT_LLAMA3)
    stop = _stops(_core.CHAT_LLAMA3)
    _family = _core.CHAT_LLAMA3


class Gemma(ChatFormat):
    """Gemma has no system role: a system message is put at the start of the first user turn."""

    name = _core.chat_family_name(_core.CHAT_GEMMA)
    stop = _stops(_core.CHAT_GEMMA)
    _family = _core.CHAT_GEMMA


class Phi3(ChatFormat):
    name = _core.chat_family_name(_core.CHAT_PHI3)
    stop = _stops(_core.CHAT_PHI3)
    _family = _core.CHAT_PHI3


FORMATS: Dict[str, type] = {cls.name: cls for cls in (ChatML, Llama3, Gemma, Phi3)}


def get_format(name: str) -> ChatFormat:
    """The format named ``name`` (``chatml``, ``llama3``, ``gemma``, ``phi3``), with no default system message."""
    try:
        return FORMATS[name]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown chat format {name!r}; known: {', '.join(FORMATS)}") from None


def detect_format(template: str) -> ChatFormat:
    """The format of a stored chat template, recognized by its markers (ChatML when none match)."""
    family, default_system = _core.chat_detect(template or "")
    fmt: ChatFormat = FORMATS[_core.chat_family_name(family)]()
    fmt.default_system = None if default_system is None else default_system.decode("utf-8")
    return fmt
