"""Chat formats: turning a list of messages into the prompt text a model was trained on.

GGUF files store a Jinja chat template. :meth:`pocketlm.Model.apply_chat_template` and
:meth:`pocketlm.Model.chat` run it with pocketlm's Jinja interpreter in C (``csrc/jinja.c``, through
``plm_chat_apply``, shared with the Lua package): messages may carry ``tool_calls`` and the role ``tool``,
and ``tools`` and ``chat_template_kwargs`` (``enable_thinking``, ``date_string``...) reach the template. A
template the interpreter cannot render raises an error naming the construct and its line, never a
different prompt. A file without a template is rendered as ChatML; a caller may name a family instead.

This module holds those families, rendered by the C core directly, and recognized in a template by its
markers (which gives a chat its stop strings). Four families are known:

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

import collections.abc
import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

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


def _messages_json(messages: Union[str, Sequence[Mapping[str, Any]]]) -> bytes:
    """The messages as the JSON array plm_chat_apply takes: each a mapping with a string ``role`` and a ``content``
    (a string, a list of parts, or None / absent beside ``tool_calls``), other keys passed as they are."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, collections.abc.Mapping) or "role" not in m or ("content" not in m and "tool_calls" not in m):
            raise ValueError(f"message {i} must be a mapping with 'role' and 'content'")
        content = m.get("content")
        if not isinstance(m["role"], str) or not (content is None or isinstance(content, (str, list, tuple))):
            raise TypeError(f"message {i}: role must be a string, content a string, a list of parts or None")
        out.append(dict(m))
    try:
        return json.dumps(out, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("chat messages: text that cannot be encoded as UTF-8 (a lone surrogate)") from None


def _vars_json(tools: Optional[Sequence[Any]], chat_template_kwargs: Optional[Mapping[str, Any]]) -> Optional[bytes]:
    """The template variables beyond messages, add_generation_prompt, bos_token and eos_token, as JSON (or None)."""
    if chat_template_kwargs is not None and not isinstance(chat_template_kwargs, collections.abc.Mapping):
        raise TypeError(f"chat_template_kwargs must be a mapping, got {type(chat_template_kwargs).__name__}")
    v: Dict[str, Any] = dict(chat_template_kwargs or {})
    if tools is not None:
        v["tools"] = list(tools)
    return json.dumps(v, ensure_ascii=False).encode("utf-8") if v else None


def _override(template: Optional[str], chat_template: Optional[str]) -> Tuple[Optional[str], bool]:
    """What renders instead of the model's stored template: a family name, or Jinja source (is_template)."""
    if template is not None and chat_template is not None:
        raise ValueError("give template (a chat format's name) or chat_template (Jinja source), not both")
    if template is not None:
        get_format(template)  # the names, checked as before
        return template, False
    return chat_template, chat_template is not None


def apply_model_template(model: Any, messages: Union[str, Sequence[Mapping[str, Any]]], *,
                         add_generation_prompt: bool = True, template: Optional[str] = None,
                         chat_template: Optional[str] = None, tools: Optional[Sequence[Any]] = None,
                         chat_template_kwargs: Optional[Mapping[str, Any]] = None) -> str:
    """The prompt text of a chat with a model handle (plm_chat_apply); see :meth:`pocketlm.Model.apply_chat_template`."""
    over, is_template = _override(template, chat_template)
    text = _core.chat_apply(model, _messages_json(messages), _vars_json(tools, chat_template_kwargs), over, is_template,
                            bool(add_generation_prompt))
    return text.decode("utf-8")


def model_stops(model: Any, template: Optional[str] = None, chat_template: Optional[str] = None) -> Tuple[str, ...]:
    """The stop strings of such a chat (plm_chat_model_stop): the end-of-turn markers of the family rendered or
    recognized in the template; none for a template of no known family (the end-of-generation tokens end it)."""
    over, is_template = _override(template, chat_template)
    stops: List[str] = []
    while True:
        s = _core.chat_model_stop(model, over, is_template, len(stops))
        if s is None:
            return tuple(stops)
        stops.append(s)


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
