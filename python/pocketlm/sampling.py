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

import random
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Tuple, Union

from . import _core
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .model import Model

__all__ = ["Sampler", "LogitBias"]

#: ``{token: bias}`` or pairs ``(token, bias)``, added to the logits before sampling.
LogitBias = Union[Mapping[int, float], Iterable[Tuple[int, float]]]

#: Sampling defaults, the same as the C library's.
DEFAULTS = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0, frequency_penalty=0.0,
                presence_penalty=0.0, penalty_last_n=64)


def sampler_params(temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                   repeat_penalty: float = 1.0, frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                   penalty_last_n: int = 64, seed: Optional[int] = None) -> Any:
    """A filled ``_core.SamplerParams``; ``seed=None`` draws a fresh random seed."""
    p = _core.sampler_default_params()
    p.temperature = float(temperature)
    p.top_k = int(top_k)
    p.top_p = float(top_p)
    p.min_p = float(min_p)
    p.repeat_penalty = float(repeat_penalty)
    p.frequency_penalty = float(frequency_penalty)
    p.presence_penalty = float(presence_penalty)
    p.penalty_last_n = int(penalty_last_n)
    p.seed = random.getrandbits(64) if seed is None else int(seed) & 0xFFFFFFFFFFFFFFFF
    return p


class Sampler:
    """Picks tokens from logits: greedy (``temperature=0``) or temperature with top-k, top-p, min-p,
    repetition/frequency/presence penalties over the last ``penalty_last_n`` accepted tokens, and a logit bias.

    ``vocab`` is a :class:`Model` or a vocabulary size. ``seed=None`` draws a random seed; an int makes the
    choices reproducible. ``grammar``, ``json_schema``, ``regex`` or ``choices`` (with a Model) constrain the
    tokens drawn as in :meth:`Model.generate`; :meth:`accept` then advances the constraint (only tokens drawn
    after the prompt should be accepted).
    """

    def __init__(self, vocab: Union["Model", int], *, temperature: float = 0.8, top_k: int = 40,
                 top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0,
                 frequency_penalty: float = 0.0, presence_penalty: float = 0.0, penalty_last_n: int = 64,
                 seed: Optional[int] = None, logit_bias: Optional[LogitBias] = None, grammar: Any = None,
                 json_schema: Any = None, regex: Optional[str] = None, choices: Any = None) -> None:
        n_vocab = vocab if isinstance(vocab, int) else vocab.n_vocab
        params = sampler_params(temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty,
                                presence_penalty, penalty_last_n, seed)
        self.seed = params.seed
        self._h = _core.sampler_create(params, logit_bias, n_vocab)
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
        _core.sampler_accept(self._h, int(token))

    def reset(self) -> None:
        """Clears the history and restarts the random generator from the seed."""
        _core.sampler_reset(self._h)
