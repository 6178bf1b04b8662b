"""Sampling: turning logits into a token, with the C sampler.

:class:`Sampler` keeps state between calls (the penalty history and the random
generator), so use one object for one sequence::

    >>> import pocketlm
    >>> model = pocketlm.Model()
    >>> sampler = pocketlm.Sampler(model, temperature=0)   # greedy
    >>> with model.context() as ctx:
    ...     ctx.eval(model.tokenize("The capital of France is"))
    ...     model.token_to_piece(sampler.sample(ctx.logits))
    b' Paris'
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Tuple, Union

from . import _core
from ._args import UINT64_MAX, float_arg, int_arg, token_arg
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .model import Model

__all__ = ["Sampler", "LogitBias", "DEFAULTS"]

#: ``{token: bias}`` or pairs ``(token, bias)``, added to the logits before sampling.
LogitBias = Union[Mapping[int, float], Iterable[Tuple[int, float]]]

_SAMPLER_FLOATS = ("temperature", "top_p", "min_p", "repeat_penalty", "frequency_penalty", "presence_penalty")
_SAMPLER_INTS = ("top_k", "penalty_last_n")


def _c_float(v: float) -> float:
    """A C float as the short decimal it was written as (0.95, not 0.949999988079071)."""
    return float(f"{v:.7g}")


_d = _core.sampler_default_params()
#: Sampling defaults: the C library's (plm_sampler_default_params), which a parameter left at None takes.
DEFAULTS = {**{k: _c_float(getattr(_d, k)) for k in _SAMPLER_FLOATS}, **{k: getattr(_d, k) for k in _SAMPLER_INTS}}
del _d


def sampler_params(temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
                   min_p: Optional[float] = None, repeat_penalty: Optional[float] = None,
                   frequency_penalty: Optional[float] = None, presence_penalty: Optional[float] = None,
                   penalty_last_n: Optional[int] = None, seed: Optional[int] = None) -> Any:
    """A filled ``_core.SamplerParams``, each argument checked (see pocketlm._args); None keeps the C default,
    ``seed=None`` draws a fresh random seed. The ranges beyond "a finite C float" / "an int32" are the C sampler's
    own, checked when it is created (:class:`InvalidArgumentError` naming the parameter)."""
    p = _core.sampler_default_params()
    values = dict(temperature=temperature, top_p=top_p, min_p=min_p, repeat_penalty=repeat_penalty,
                  frequency_penalty=frequency_penalty, presence_penalty=presence_penalty)
    for k in _SAMPLER_FLOATS:
        if values[k] is not None:
            setattr(p, k, float_arg(k, values[k]))
    if top_k is not None:
        p.top_k = int_arg("top_k", top_k, note=" (<= 0: off)")
    if penalty_last_n is not None:
        p.penalty_last_n = int_arg("penalty_last_n", penalty_last_n)
    seed = int_arg("seed", seed, -(1 << 63), UINT64_MAX, none=True)
    p.seed = random.getrandbits(64) if seed is None else seed & UINT64_MAX
    return p


def logit_bias_arg(logit_bias: Optional[LogitBias]) -> Optional[list]:
    """``logit_bias`` as a list of ``(token, bias)`` pairs, each token an int32 and each bias a number (``-inf``
    bans the token; NaN and ``+inf`` are refused, as C refuses them); None stays None."""
    if logit_bias is None:
        return None
    if isinstance(logit_bias, (str, bytes, int, float)):
        raise TypeError(f"logit_bias must be {{token: bias}} or (token, bias) pairs, not {type(logit_bias).__name__}")
    items = logit_bias.items() if isinstance(logit_bias, Mapping) else logit_bias
    pairs = []
    for item in items:
        try:
            token, bias = item
        except (TypeError, ValueError):
            raise TypeError(f"logit_bias must be {{token: bias}} or (token, bias) pairs, got the item {item!r}") \
                from None
        token = token_arg("logit_bias token", token)
        if isinstance(bias, float) and bias == -math.inf:
            pairs.append((token, bias))
        else:
            pairs.append((token, float_arg(f"logit_bias[{token}]", bias)))
    return pairs


class Sampler:
    """Picks tokens from logits: greedy (``temperature=0``) or temperature with top-k, top-p, min-p,
    repetition/frequency/presence penalties over the last ``penalty_last_n`` accepted tokens, and a logit bias.

    ``vocab`` is a :class:`Model` or a vocabulary size. A parameter left at None takes the C library's default
    (:data:`DEFAULTS`: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1.0 (off),
    frequency_penalty and presence_penalty 0.0 (off), penalty_last_n 64). ``seed=None`` draws a random seed; an int
    makes the choices reproducible. A wrong type is a ``TypeError``, a value out of range an
    :class:`InvalidArgumentError`, both naming the parameter. ``grammar``, ``json_schema``, ``regex`` or
    ``choices`` (with a Model) constrain the tokens drawn as in :meth:`Model.generate`; :meth:`accept` then
    advances the constraint (only tokens drawn after the prompt should be accepted).
    """

    def __init__(self, vocab: Union["Model", int], *, temperature: Optional[float] = None, top_k: Optional[int] = None,
                 top_p: Optional[float] = None, min_p: Optional[float] = None, repeat_penalty: Optional[float] = None,
                 frequency_penalty: Optional[float] = None, presence_penalty: Optional[float] = None,
                 penalty_last_n: Optional[int] = None, seed: Optional[int] = None,
                 logit_bias: Optional[LogitBias] = None, grammar: Any = None,
                 json_schema: Any = None, regex: Optional[str] = None, choices: Any = None) -> None:
        n_vocab = getattr(vocab, "n_vocab", None)
        if n_vocab is None:
            n_vocab = int_arg("vocab", vocab, 1)
        params = sampler_params(temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty,
                                presence_penalty, penalty_last_n, seed)
        #: The C parameters in use (``_core.SamplerParams``), defaults filled in.
        self.params = params
        self.seed = params.seed
        self._h = _core.sampler_create(params, logit_bias_arg(logit_bias), n_vocab)
        #: The number of logits :meth:`sample` reads (the vocabulary size the C sampler was made for).
        self.n_vocab: int = _core.sampler_n_vocab(self._h)
        from . import grammar as _grammar
        constraint = _grammar.resolve(json_schema=json_schema, grammar=grammar, regex=regex, choices=choices)
        if constraint is not None:
            if isinstance(vocab, int):
                raise InvalidArgumentError("a grammar needs the Model (its vocabulary), not a vocabulary size")
            _core.sampler_set_grammar(self._h, vocab._handle, constraint._h)

    def sample(self, logits: Any) -> int:
        """The chosen token for ``logits`` (any float32 buffer or sequence of ``n_vocab`` values; read, not
        changed). It is not accepted into the penalty history: call :meth:`accept`."""
        n = len(logits)
        if n != self.n_vocab:
            raise ValueError(f"expected {self.n_vocab} logits, got {n}")
        return _core.sampler_sample_logits(self._h, logits)

    def accept(self, token: int) -> None:
        """Records ``token`` in the penalty history, and moves the constraint (if any) past it."""
        _core.sampler_accept(self._h, token_arg("token", token))

    def reset(self) -> None:
        """Clears the history and restarts the random generator from the seed."""
        _core.sampler_reset(self._h)
