"""The argument checker of every public entry point (the API and the command line).

A number crosses into C through a fixed-size field (int32, uint64, size_t, float), where SWIG would raise its own
``OverflowError``/``TypeError`` naming a wrapper function, or silently truncate a float or a bool. So each public
call checks its numbers here first, and a wrong one fails at that call, naming the parameter:

- an integer parameter takes an ``int`` (or another integer type such as ``numpy.int64``), never a ``bool``,
  ``float`` or ``str``: anything else is a ``TypeError``;
- a value outside the parameter's range (the C field's, or narrower where C states a narrower one) is an
  :class:`InvalidArgumentError` (also a ``ValueError``) giving the range;
- a float parameter takes an ``int`` or a ``float`` (not a ``bool``); NaN, infinities and values beyond float32
  are refused where C refuses them, here, before they could reach C.

Ranges come from the C library (its constants and ``plm_*_default_params``) where it defines them.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Optional

from . import _core
from .errors import InvalidArgumentError

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
UINT64_MAX = (1 << 64) - 1
SIZE_MAX = (1 << 64) - 1
FLT_MAX = 3.4028234663852886e38

# Context parameters, as plm_context_create checks them (csrc/include/pocketlm.h).
N_CTX = (0, _core.N_CTX_MAX)            # 0: min(n_ctx_train, 4096)
N_THREADS = (0, _core.N_THREADS_MAX)    # 0: one per physical core
N_SEQ_MAX = (1, _core.N_SEQ_MAX)
N_BATCH = (1, INT32_MAX)


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _range(lo: Optional[float], hi: Optional[float]) -> str:
    return f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"


def int_arg(name: str, value: Any, lo: Optional[int] = INT32_MIN, hi: Optional[int] = INT32_MAX, *,
            none: bool = False, note: str = "") -> Any:
    """``value`` as an ``int`` in ``[lo, hi]`` (None allowed only with ``none``); ``note`` is added to the range
    error (what 0 or -1 means, say)."""
    if value is None and none:
        return None
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise TypeError(f"{name} must be an int, not a bool ({value!r})")
    try:
        i = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int{' or None' if none else ''}, not {_type_name(value)} ({value!r})") \
            from None
    if (lo is not None and i < lo) or (hi is not None and i > hi):
        raise InvalidArgumentError(f"{name} must be in {_range(lo, hi)}{note}, got {i}")
    return i


def float_arg(name: str, value: Any, lo: Optional[float] = None, hi: Optional[float] = None, *,
              none: bool = False, lo_open: bool = False) -> Any:
    """``value`` as a finite ``float`` that fits a C float, in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); None
    allowed only with ``none``."""
    if value is None and none:
        return None
    if isinstance(value, bool) or type(value).__name__ == "bool_" or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a number, not {_type_name(value)} ({value!r})")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number{' or None' if none else ''}, not {_type_name(value)} "
                        f"({value!r})") from None
    except OverflowError:   # an int beyond any float
        f = math.inf if value > 0 else -math.inf
    if not (-FLT_MAX <= f <= FLT_MAX):
        raise InvalidArgumentError(f"{name} must be a finite number of at most 3.4e38 in magnitude (a C float), "
                                   f"got {value!r}")
    if (lo is not None and (f < lo or (lo_open and f == lo))) or (hi is not None and f > hi):
        left = "(" if lo_open else "["
        raise InvalidArgumentError(f"{name} must be in {left}{_range(lo, hi)[1:]}, got {value!r}")
    return f


def token_arg(name: str, value: Any) -> int:
    """A token id: an int32 (the vocabulary itself is C's to check)."""
    return int_arg(name, value)

