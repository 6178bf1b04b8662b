"""Exceptions: one class per status of the C library, all under :class:`pocketlm.Error`.

The message is the C library's, naming what was wrong (which key, which tensor,
which offset)::

    >>> import pocketlm
    >>> try:
    ...     pocketlm.Model("/nonexistent.gguf")
    ... except pocketlm.ModelFileError as e:
    ...     print(type(e).__name__, e.status_name)
    ModelFileError PLM_ERR_IO

Several classes also derive from the built-in exception a Python user would
expect (``OSError``, ``ValueError``, ``MemoryError``), so existing handlers keep
working.
"""

from __future__ import annotations

from . import _core

__all__ = [
    "Error",
    "ModelFileError",
    "FormatError",
    "UnsupportedError",
    "OutOfMemoryError",
    "InvalidArgumentError",
    "ContextFullError",
    "CancelledError",
    "InternalError",
]


class Error(Exception):
    """Base class of every error raised by pocketlm's C library."""

    #: The C status code (``pocketlm._core.ERR_*``).
    status: int = _core.ERR_INTERNAL

    @property
    def status_name(self) -> str:
        """The C name of the status, e.g. ``"PLM_ERR_FORMAT"``."""
        return _core.status_str(self.status)


class ModelFileError(Error, OSError):
    """The model file could not be opened, read or mapped (``PLM_ERR_IO``)."""

    status = _core.ERR_IO


class FormatError(Error):
    """The file is malformed: not GGUF, truncated, or inconsistent (``PLM_ERR_FORMAT``)."""

    status = _core.ERR_FORMAT


class UnsupportedError(Error):
    """The file is valid but uses an architecture or tensor type pocketlm does not run (``PLM_ERR_UNSUPPORTED``)."""

    status = _core.ERR_UNSUPPORTED


class OutOfMemoryError(Error, MemoryError):
    """An allocation failed (``PLM_ERR_OOM``)."""

    status = _core.ERR_OOM


class InvalidArgumentError(Error, ValueError):
    """An argument is out of range: a token outside the vocabulary, a bad parameter (``PLM_ERR_ARG``)."""

    status = _core.ERR_ARG


class ContextFullError(Error):
    """The KV cache has no room for the tokens (``PLM_ERR_CONTEXT_FULL``); the cache is unchanged."""

    status = _core.ERR_CONTEXT_FULL


class CancelledError(Error):
    """The computation was cancelled (``PLM_ERR_CANCELLED``); the cache is unchanged."""

    status = _core.ERR_CANCELLED


class InternalError(Error):
    """A bug in pocketlm (``PLM_ERR_INTERNAL``, or a buffer-size status that should never escape)."""

    status = _core.ERR_INTERNAL


_core.set_error_classes({
    _core.ERR_IO: ModelFileError,
    _core.ERR_FORMAT: FormatError,
    _core.ERR_UNSUPPORTED: UnsupportedError,
    _core.ERR_OOM: OutOfMemoryError,
    _core.ERR_ARG: InvalidArgumentError,
    _core.ERR_CONTEXT_FULL: ContextFullError,
    _core.ERR_CANCELLED: CancelledError,
    _core.ERR_BUFFER: InternalError,
    _core.ERR_INTERNAL: InternalError,
})
