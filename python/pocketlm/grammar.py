"""Structured output: a grammar that constrains generation token by token, in C.

A :class:`Grammar` is made from a JSON Schema (a dict, JSON text, or a pydantic model class), GBNF text (the
grammar format of llama.cpp), a regular expression, or a list of choices. While generating, the C sampler only
lets through tokens whose bytes continue a valid sentence, and ends the output where it is complete::

    >>> import json, pocketlm
    >>> model = pocketlm.Model()
    >>> schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
    ...           "required": ["city"]}
    >>> out = model.chat("Where is the Eiffel Tower? Answer in JSON.", json_schema=schema, temperature=0)
    >>> sorted(json.loads(out))
    ['city']

``generate``, ``stream`` and ``chat`` take ``json_schema=``, ``grammar=``, ``regex=`` or ``choices=`` (one of
them), and so do ``generate_many``, ``chat_many`` and ``Batch.submit`` (a grammar state per request);
``chat`` also takes ``response_format=`` in the llama-cpp-python and OpenAI shapes, and
:meth:`pocketlm.Model.generate_json` returns the parsed object. A malformed grammar, schema or expression raises
:class:`pocketlm.InvalidArgumentError` naming line:column and what was expected; a schema keyword pocketlm does
not enforce is an error, never ignored.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Sequence, Union

from . import _core
from .errors import InvalidArgumentError

__all__ = ["Grammar", "IncompleteOutputError", "json_schema_to_gbnf", "schema_dict"]


class IncompleteOutputError(InvalidArgumentError):
    """Generation stopped (``max_tokens``, a stop string, a full context) before the structure was complete, so
    there is no whole object to return. ``text`` holds what was generated and ``stop_reason`` why it ended."""

    def __init__(self, message: str, text: str = "", stop_reason: Optional[str] = None) -> None:
        super().__init__(message)
        self.text = text
        self.stop_reason = stop_reason


SchemaLike = Union[Mapping[str, Any], str, bytes, type]


def schema_dict(schema: SchemaLike) -> Dict[str, Any]:
    """A JSON Schema as a dict: a dict as is, JSON text parsed, a pydantic model class's ``model_json_schema()``."""
    if isinstance(schema, Mapping):
        return dict(schema)
    if isinstance(schema, (str, bytes)):
        try:
            out = json.loads(schema)
        except ValueError as e:
            raise InvalidArgumentError(f"json_schema: not valid JSON: {e}") from None
        if not isinstance(out, (dict, bool)):
            raise InvalidArgumentError("json_schema must be a JSON object")
        return out  # type: ignore[return-value]
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return schema.model_json_schema()  # pydantic v2
    if isinstance(schema, type) and hasattr(schema, "schema"):
        return schema.schema()  # pydantic v1
    raise InvalidArgumentError(
        f"json_schema must be a dict, JSON text or a pydantic model class, got {type(schema).__name__}")


def _text(schema: SchemaLike) -> bytes:
    if isinstance(schema, (str, bytes)):
        return schema.encode("utf-8") if isinstance(schema, str) else schema
    return json.dumps(schema_dict(schema)).encode("utf-8")


def json_schema_to_gbnf(schema: SchemaLike) -> str:
    """The GBNF text a JSON Schema compiles to (what the C library enforces)."""
    return _core.json_schema_to_gbnf(_text(schema)).decode("utf-8")


class Grammar:
    """A compiled constraint, immutable and shareable between generations and threads.

        >>> import pocketlm
        >>> g = pocketlm.Grammar.from_choices(["yes", "no"])
        >>> pocketlm.Model().generate("Is the sky blue? Answer:", grammar=g, temperature=0) in ("yes", "no")
        True
    """

    __slots__ = ("_h", "kind", "source")

    def __init__(self, handle: Any, kind: str, source: Any) -> None:
        self._h = handle
        #: ``"gbnf"``, ``"json_schema"``, ``"regex"`` or ``"choices"``.
        self.kind = kind
        #: What it was made from.
        self.source = source

    @classmethod
    def from_gbnf(cls, text: str, root: str = "root") -> "Grammar":
        """A grammar from GBNF text; ``root`` names the start rule."""
        if not isinstance(text, str):
            raise InvalidArgumentError(f"grammar must be GBNF text (a str), got {type(text).__name__}")
        return cls(_core.grammar_parse(text.encode("utf-8"), str(root)), "gbnf", text)

    @classmethod
    def from_json_schema(cls, schema: SchemaLike) -> "Grammar":
        """A grammar for the JSON documents ``schema`` accepts (a dict, JSON text or a pydantic model class)."""
        return cls(_core.grammar_from_json_schema(_text(schema)), "json_schema", schema)

    @classmethod
    def from_regex(cls, pattern: str) -> "Grammar":
        """A grammar for the strings the regular expression matches as a whole (see the C header for the
        subset: no lazy quantifiers, backreferences or lookaround)."""
        if not isinstance(pattern, str):
            raise InvalidArgumentError(f"regex must be a str, got {type(pattern).__name__}")
        return cls(_core.grammar_from_regex(pattern.encode("utf-8")), "regex", pattern)

    @classmethod
    def from_choices(cls, choices: Sequence[str]) -> "Grammar":
        """A grammar for exactly one of ``choices``."""
        if isinstance(choices, (str, bytes)) or not all(isinstance(c, str) for c in choices):
            raise InvalidArgumentError("choices must be a list of strings")
        items = list(choices)
        if not items:
            raise InvalidArgumentError("choices must list at least one string")
        return cls(_core.grammar_from_choices([c.encode("utf-8") for c in items]), "choices", items)

    def __repr__(self) -> str:
        src = self.source if isinstance(self.source, (str, list)) else type(self.source).__name__
        text = repr(src)
        return f"<pocketlm.Grammar {self.kind} {text[:60]}{'...' if len(text) > 60 else ''}>"


def resolve(json_schema: Optional[SchemaLike] = None, grammar: Union[str, Grammar, None] = None,
            regex: Optional[str] = None, choices: Optional[Sequence[str]] = None) -> Optional[Grammar]:
    """The one constraint asked for by the generation keyword arguments, compiled; None when none is."""
    given = [k for k, v in (("json_schema", json_schema), ("grammar", grammar), ("regex", regex),
                            ("choices", choices)) if v is not None]
    if len(given) > 1:
        raise InvalidArgumentError(f"give one of json_schema, grammar, regex and choices, not {' and '.join(given)}")
    if json_schema is not None:
        return Grammar.from_json_schema(json_schema)
    if grammar is not None:
        return grammar if isinstance(grammar, Grammar) else Grammar.from_gbnf(grammar)
    if regex is not None:
        return Grammar.from_regex(regex)
    if choices is not None:
        return Grammar.from_choices(choices)
    return None


def from_response_format(response_format: Any) -> Optional[SchemaLike]:
    """The JSON Schema a ``response_format`` asks for, or None for plain text.

    Accepted shapes: llama-cpp-python's ``{"type": "json_object"}`` (any JSON object) and
    ``{"type": "json_object", "schema": {...}}``; OpenAI's ``{"type": "json_schema", "json_schema": {"name": ...,
    "schema": {...}}}``; ``{"type": "text"}``; or a pydantic model class.
    """
    if response_format is None:
        return None
    if isinstance(response_format, type):
        return response_format
    if not isinstance(response_format, Mapping):
        raise InvalidArgumentError(f"response_format must be a dict, got {type(response_format).__name__}")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
        return {"type": "object"} if schema is None else schema
    if kind == "json_schema":
        js = response_format.get("json_schema")
        if not isinstance(js, Mapping) or "schema" not in js:
            raise InvalidArgumentError('response_format {"type": "json_schema"} needs "json_schema": {"schema": {...}}')
        return js["schema"]
    raise InvalidArgumentError(f'response_format "type" must be "text", "json_object" or "json_schema", got {kind!r}')
