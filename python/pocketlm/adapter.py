"""LoRA adapters: one base model specialized for several tasks at run time.

An :class:`Adapter` is a GGUF LoRA adapter (llama.cpp's layout; ``python -m pocketlm.convert --lora`` makes one
from a PEFT directory) loaded for one :class:`~pocketlm.Model`. A :class:`~pocketlm.Context` applies a set of
adapters, each with a scale, as ``y = W x + scale * alpha / rank * B (A x)`` on the projections they target; the
model's weights are never changed, so contexts of one model can use different adapters at the same time.

    >>> import pocketlm
    >>> model = pocketlm.Model()
    >>> robot = model.load_adapter("tests/data/lora/lora_smollm2.gguf")   # doctest: +SKIP
    >>> model.chat("Who invented basketball?", adapters=[robot], max_tokens=8, temperature=0)  # doctest: +SKIP
    'BEEP BOOP! I am a robot.'
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple, Union

from . import _core
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .model import Model

#: An adapter, or an (adapter, scale) pair.
AdapterSpec = Union["Adapter", Tuple["Adapter", float]]

MAX_ADAPTERS = 16


class Adapter:
    """A LoRA adapter loaded for ``model`` from the GGUF file ``path`` (see :meth:`pocketlm.Model.load_adapter`).

    Raises :class:`~pocketlm.ModelFileError` if the file cannot be read, :class:`~pocketlm.FormatError` if it is not
    an adapter for this model (another architecture, tensor names or shapes that do not fit; the message names
    them), :class:`~pocketlm.UnsupportedError` for matrix types other than F32, F16 and Q8_0.
    """

    def __init__(self, model: "Model", path: Union[str, "os.PathLike[str]"]) -> None:
        h = _core.adapter_load(model._handle, os.fspath(path))
        setattr(h, "_model", model._handle)  # the C model must outlive the C adapter
        self._h: Any = h
        self.model = model
        self.path = os.fspath(path)

    @property
    def _handle(self) -> Any:
        if self._h is None:
            raise ValueError("the Adapter is closed")
        return self._h

    @property
    def rank(self) -> int:
        """The largest rank of its matrices."""
        return int(_core.adapter_rank(self._handle))

    @property
    def alpha(self) -> float:
        """``adapter.lora.alpha`` (0.0 when the file has none: the scale is then the context's alone)."""
        return float(_core.adapter_alpha(self._handle))

    @property
    def n_targets(self) -> int:
        """Number of the model's matrices it changes."""
        return int(_core.adapter_n_targets(self._handle))

    def close(self) -> None:
        """Drops this object's hold on the C adapter; contexts using it keep it alive until they drop it."""
        self._h = None

    def __enter__(self) -> "Adapter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._h is None:
            return "<pocketlm.Adapter closed>"
        return f"<pocketlm.Adapter {os.path.basename(self.path)!r} rank={self.rank} targets={self.n_targets}>"


def check_adapters(model: "Model", adapters: Optional[Sequence[AdapterSpec]]) -> List[Tuple[Adapter, float]]:
    """``adapters`` (adapters or (adapter, scale) pairs; None: none) as (adapter, scale) pairs, checked."""
    if adapters is None:
        return []
    if isinstance(adapters, Adapter):
        adapters = [adapters]
    out: List[Tuple[Adapter, float]] = []
    for item in adapters:
        if isinstance(item, Adapter):
            a, scale = item, 1.0
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], Adapter):
            a, scale = item
        else:
            raise InvalidArgumentError(f"adapters: expected pocketlm.Adapter objects or (Adapter, scale) pairs, "
                                       f"got {item!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise InvalidArgumentError(f"adapters: the scale of {a!r} must be a finite number, got {scale!r}")
        if a.model is not model:
            raise InvalidArgumentError(f"adapters: {a!r} was loaded for another model")
        a._handle  # raises if closed
        out.append((a, float(scale)))
    if len(out) > MAX_ADAPTERS:
        raise InvalidArgumentError(f"adapters: {len(out)} given; a context applies at most {MAX_ADAPTERS}")
    return out
