"""Context: a KV cache over a model, with zero-copy logits, and the token loop as an iterator.

A :class:`Context` holds one sequence: :meth:`Context.eval` appends tokens to it
and leaves the logits of the last one in :attr:`Context.logits`, a view of the C
memory (nothing is copied; numpy is optional)::

    >>> import numpy as np, pocketlm
    >>> model = pocketlm.Model()
    >>> with model.context() as ctx:
    ...     ctx.eval(model.tokenize("The capital of France is"))
    ...     logits = np.asarray(ctx.logits)          # shares the C buffer
    ...     model.token_to_piece(int(logits.argmax()))
    b' Paris'

:meth:`Context.stream` runs the C generation loop one token per step, with the
interpreter lock released while C computes, and yields text pieces that are
whole UTF-8 characters.

Threads: a Model may be shared by any number of Contexts in any threads; they
run in parallel. A Context is serialized: a call from a second thread waits
until the first one's call (or live stream) is over. Within one thread, starting
something new on a Context ends a stream left unfinished on it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from array import array
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Optional, Sequence, Union

from . import _core
from . import _args
from ._args import int_arg, token_arg
from . import grammar as _grammar
from .errors import InvalidArgumentError
from .sampling import LogitBias, Sampler, logit_bias_arg, sampler_params

if TYPE_CHECKING:
    from .model import Model

__all__ = ["Context", "Stream", "State", "Tokens", "LogitsProcessor", "STOP_REASONS", "SCORE_MODES", "POOLINGS"]

#: Tokens in: any C-contiguous int32 buffer (numpy int32 array, ``array('i')``, :class:`pocketlm.Buffer`) is
#: read in place; other integer sequences (lists, int64 arrays) are converted.
Tokens = Union[Sequence[int], Any]

#: ``fn(tokens, logits)``: called before each token is sampled, with ``tokens`` (an ``array('i')`` of the prompt
#: and the tokens generated so far) and ``logits`` (a writable zero-copy :class:`pocketlm.Buffer`, float32, one
#: value per vocabulary entry). Edit ``logits`` in place, or return new values (any float sequence or array).
LogitsProcessor = Callable[[array, Any], Any]

#: Why a stream ended, as :attr:`Stream.stop_reason` reports it.
STOP_REASONS = {
    _core.STOP_LENGTH: "length",        # max_tokens reached
    _core.STOP_EOG: "eog",              # the model ended its turn (end-of-generation token)
    _core.STOP_STRING: "stop",          # a stop string matched (it is not part of the text)
    _core.STOP_CALLER: "caller",
    _core.STOP_CONTEXT: "context_full",  # the KV cache is full
}


def as_tokens(tokens: Tokens, name: str = "tokens") -> Union[memoryview, array]:
    """``tokens`` as a 1-D int32 buffer: a memoryview of it if it already is one, else a converted copy (each
    item checked: an int, not a bool or float, within int32; ``name`` is the parameter the errors name)."""
    if isinstance(tokens, (str, bytes, bytearray)):
        raise TypeError(f"{name}: expected tokens (a sequence of ints), got {type(tokens).__name__}; "
                        f"tokenize text first")
    if isinstance(tokens, int):
        raise TypeError(f"{name}: expected a sequence of tokens, got an int (wrap it in a list)")
    try:
        mv = memoryview(tokens)  # type: ignore[arg-type]  # any buffer exporter
    except TypeError:
        items = tokens if isinstance(tokens, list) else list(tokens)
    else:
        if mv.ndim == 1 and mv.itemsize == 4 and mv.c_contiguous and mv.format.lstrip("@=<") in ("i", "l"):
            return mv
        if mv.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D sequence of tokens, got {mv.ndim} dimensions")
        items = mv.tolist()
    try:
        arr = array("i", items)
        if not isinstance(items, list) or not any(isinstance(t, bool) for t in items):
            return arr
    except (TypeError, OverflowError):
        pass
    try:
        return array("i", [int_arg(f"{name}[{k}]", t) for k, t in enumerate(items)])
    except TypeError as e:
        if f"{name}[" in str(e):
            raise
        raise TypeError(f"{name} must be a sequence of ints, not {type(tokens).__name__}") from None


class State:
    """A saved Context: its KV cache (keys and values of every cached token), its tokens, and the logits of the
    last evaluation, as one block of bytes written by the C library.

    Picklable; :meth:`Context.load_state` restores it into any Context of the same model that can hold it
    (``n_ctx`` at least ``len(state)``), with no re-evaluation.
    """

    __slots__ = ("tokens", "data", "n_logits", "last_batch")

    def __init__(self, tokens: array, data: Union[bytes, bytearray], n_logits: int = 0, last_batch: int = 0) -> None:
        #: The tokens of the sequence, in order (``array('i')``).
        self.tokens = tokens
        #: The C state (a bytes-like object); checked when loaded, so a damaged one raises FormatError.
        self.data = data
        self.n_logits = n_logits
        self.last_batch = last_batch

    def __getstate__(self):
        return (self.tokens, self.data, self.n_logits, self.last_batch)

    def __setstate__(self, st):
        self.tokens, self.data, self.n_logits, self.last_batch = st

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def nbytes(self) -> int:
        """Size of the saved state in bytes."""
        return len(self.data)

    def __repr__(self) -> str:
        return f"pocketlm.State({len(self.tokens)} tokens, {len(self.data)} bytes)"


#: Score modes of :meth:`Context.classify`: a label's score is the sum or the mean of its tokens' log-probabilities.
SCORE_MODES = {"sum": _core.SCORE_SUM, "mean": _core.SCORE_MEAN}

#: Pooling of :meth:`Context.embed`: the mean of the token states, the last token's, or the first token's.
POOLINGS = {"mean": _core.POOL_MEAN, "last": _core.POOL_LAST, "cls": _core.POOL_CLS}


def _concat(seqs: Sequence[Any]) -> "tuple[array, array]":
    """Token sequences as one int32 array and their lengths."""
    flat, lens = array("i"), array("i")
    for t in seqs:
        t = as_tokens(t)
        flat.frombytes(t.cast("B") if isinstance(t, memoryview) else t.tobytes())
        lens.append(len(t))
    return flat, lens


#: What ``max_tokens <= 0`` means, everywhere (C, Python, Lua, both command lines).
MAX_TOKENS_NOTE = "<= 0: until the context is full"


def _generate_params(max_tokens: Optional[int], ignore_eos: bool, sampling: Any) -> Any:
    gp = _core.generate_default_params()
    if max_tokens is not None:
        gp.max_tokens = int_arg("max_tokens", max_tokens, note=f" ({MAX_TOKENS_NOTE})")
    gp.ignore_eos = bool(ignore_eos)
    gp.keep_cache = True
    gp.seq_id = 0
    gp.sampling = sampling
    return gp


def _stop_list(stop: Union[str, Sequence[str], None]) -> Optional[List[str]]:
    if stop is None:
        return None
    if isinstance(stop, (str, bytes)):
        return [stop]
    return list(stop)


def check_n_ctx(n_ctx: Any) -> Optional[int]:
    """``n_ctx`` of a Context (or of a Model's contexts): None or 0 (the model's, at most 4096) to PLM_N_CTX_MAX."""
    return int_arg("n_ctx", n_ctx, *_args.N_CTX, none=True, note=" (0: the model's context length, at most 4096)")


def check_n_threads(n_threads: Any) -> Optional[int]:
    """``n_threads``: None (the default), or 0 (one per physical core) to PLM_N_THREADS_MAX."""
    return int_arg("n_threads", n_threads, *_args.N_THREADS, none=True, note=" (0: one per physical core)")


def env_threads() -> Optional[int]:
    """``$POCKETLM_THREADS`` as a thread count (None if unset or empty)."""
    v = os.environ.get("POCKETLM_THREADS")
    if not v:
        return None
    try:
        n = int(v)
    except ValueError:
        raise InvalidArgumentError(f"POCKETLM_THREADS must be an integer, got {v!r}") from None
    return int_arg("POCKETLM_THREADS", n, *_args.N_THREADS, note=" (0: one per physical core)")


class Context:
    """A KV cache, scratch buffers and a thread pool over a :class:`Model`; one sequence of tokens.

    ``n_ctx``: tokens it can hold (default: the model's, at most 4096); ``n_threads``: worker threads (default:
    the Model's setting, else ``$POCKETLM_THREADS``, else the number of physical cores); ``n_batch``: most
    tokens per forward micro-batch; ``memory_budget``: most bytes the context may allocate (KV cache, scratch,
    logits), checked before anything is allocated: a larger context raises :class:`OutOfMemoryError` naming
    both figures (default: the machine's memory).

    Use it as a context manager, or call :meth:`close`. The C memory is freed once the Context is closed
    *and* no logits view of it is alive.

    One Context used from two threads is serialized, not an error: a call waits until the other thread's
    call is over, or, for a :class:`Stream`, until that stream is exhausted or closed. For parallel work give
    each thread its own Context (they may share one Model).
    """

    def __init__(self, model: "Model", *, n_ctx: Optional[int] = None, n_threads: Optional[int] = None,
                 n_batch: Optional[int] = None, n_seq_max: Optional[int] = None,
                 memory_budget: Optional[int] = None, adapters: Optional[Sequence[Any]] = None) -> None:
        p = _core.context_default_params()
        n_ctx = check_n_ctx(n_ctx)
        n_threads = check_n_threads(n_threads)
        n_batch = int_arg("n_batch", n_batch, *_args.N_BATCH, none=True)
        n_seq_max = int_arg("n_seq_max", n_seq_max, *_args.N_SEQ_MAX, none=True)
        memory_budget = int_arg("memory_budget", memory_budget, 0, _args.SIZE_MAX, none=True,
                                note=" bytes (0: the machine's memory)")
        n_ctx = model.n_ctx if n_ctx is None else n_ctx
        n_threads = model.n_threads if n_threads is None else n_threads
        if n_threads is None:
            n_threads = env_threads()
        if n_ctx is not None:
            p.n_ctx = n_ctx
        if n_threads is not None:
            p.n_threads = n_threads
        if n_batch is not None:
            p.n_batch = n_batch
        if n_seq_max is not None:
            p.n_seq_max = n_seq_max
        if memory_budget is not None:
            p.memory_budget = memory_budget
        h = _core.context_create(model._handle, p)
        # The C model must outlive the C context, which may outlive this object through logits views.
        setattr(h, "_model", model._handle)
        _core.context_watch_signals(h, True)
        self._h: Any = h
        self.model = model
        self._n_seq_max = p.n_seq_max
        self._cond = threading.Condition()
        self._owner: Optional[int] = None   # thread using the context, or owning its live stream
        self._depth = 0
        self._stream: Optional[weakref.ref] = None
        self._epoch = 0                     # counts the streams that have owned the context
        self._history = array("i")          # tokens cached for sequence 0, in order
        self._views: List[weakref.ref] = []   # logits views handed out (Buffers are unhashable: no WeakSet)
        self._rows = 0                      # logits rows the C buffer is known to hold (a lower bound)
        self._last_batch = 0
        self._adapters: List[Any] = []      # (Adapter, scale) pairs the C context applies (kept alive here)
        if adapters:
            self.set_adapters(adapters)

    # -- serialization between threads -------------------------------------------------

    def _acquire(self, stream: Optional["Stream"] = None, supersede: bool = True) -> None:
        me = threading.get_ident()
        while True:
            with self._cond:
                while self._owner is not None and self._owner != me:
                    self._cond.wait()
                old = self._stream() if self._stream is not None else None
                if self._stream is not None and old is None:
                    # Being collected, its close not run yet: the context moves on without it.
                    self._stream = None
                    self._epoch += 1
                if old is None or not supersede:
                    if self._h is None:
                        raise ValueError("the Context is closed")
                    self._owner = me
                    if stream is not None:
                        self._stream = weakref.ref(stream)
                        self._epoch += 1
                        stream._epoch = self._epoch
                    else:
                        self._depth += 1
                    return
            old._close(superseded=True)

    def _owned_by(self, stream: "Stream") -> bool:
        with self._cond:
            return self._epoch == stream._epoch

    def _release(self, stream: Optional["Stream"] = None) -> None:
        with self._cond:
            if stream is not None:
                if self._epoch != stream._epoch:
                    return   # the context has moved on (see _acquire)
                self._stream = None
            else:
                self._depth -= 1
            if self._depth == 0 and self._stream is None:
                self._owner = None
                self._cond.notify_all()

    @contextlib.contextmanager
    def _using(self, supersede: bool = True) -> Iterator[Any]:
        self._acquire(supersede=supersede)
        try:
            yield self._h
        finally:
            self._release()

    # -- state ---------------------------------------------------------------------------

    def _add_view(self, view: Any) -> Any:
        if len(self._views) >= 32:
            self._views = [r for r in self._views if r() is not None]
        self._views.append(weakref.ref(view))
        return view

    def _live_views(self) -> int:
        self._views = [r for r in self._views if r() is not None]
        return len(self._views)

    def _reserve_rows(self, rows: int) -> None:
        """C reallocates the logits buffer when a decode asks for more rows than it holds; views of the old
        buffer would dangle, so that is refused while any view is alive."""
        if rows > self._rows and self._live_views() > 0:
            raise BufferError(
                f"this evaluation needs {rows} rows of logits but the C buffer is known to hold {self._rows}, "
                f"and {len(self._views)} logits view(s) of it are alive; release them (del, or copy with "
                f"numpy.array(view)) first")

    def _read_history(self) -> None:
        """Takes the tokens of sequence 0 from the C cache (after a call that changed it in ways Python does not
        follow step by step: classification, embedding, a state load)."""
        self._history = array("i")
        self._history.frombytes(memoryview(_core.kv_seq_tokens(self._h, 0)).cast("B"))

    def _sync_history(self, candidate: Iterable[int]) -> None:
        """After a generation: sequence 0 holds a prefix of ``candidate``; find how much from the cache."""
        n = _core.kv_seq_pos_max(self._h, 0) + 1
        hist = array("i", candidate)
        del hist[n:]
        self._history = hist

    @property
    def n_ctx(self) -> int:
        """Tokens the context can hold."""
        return _core.context_n_ctx(self._handle)

    @property
    def n_threads(self) -> int:
        """Worker threads used for computation (settable)."""
        return _core.context_n_threads(self._handle)

    @n_threads.setter
    def n_threads(self, n: int) -> None:
        with self._using(supersede=False) as h:
            _core.context_set_threads(h, int_arg("n_threads", n, *_args.N_THREADS, note=" (0: one per physical core)"))

    @property
    def tokens(self) -> array:
        """A copy of the tokens held in the cache, in order (``array('i')``)."""
        with self._using(supersede=False):
            return array("i", self._history)

    @property
    def n_tokens(self) -> int:
        """Number of tokens held in the cache."""
        return len(self._history)

    @property
    def _handle(self) -> Any:
        h = self._h
        if h is None:
            raise ValueError("the Context is closed")
        return h

    def eval(self, tokens: Tokens, *, logits_all: bool = False) -> None:
        """Appends ``tokens`` to the sequence and computes their logits (of the last token only, unless
        ``logits_all``: then :meth:`logits_at` reads each one).

        The interpreter lock is released while C computes; Ctrl-C interrupts it between layers, leaving the
        cache as it was. Raises :class:`ContextFullError` if the tokens do not fit, leaving the cache as it was.
        """
        toks = as_tokens(tokens)
        n = len(toks)
        if n == 0:
            raise ValueError("no tokens to evaluate")
        rows = n if logits_all else 1
        with self._using() as h:
            self._reserve_rows(rows)
            try:
                _core.decode(h, toks, 0, bool(logits_all))
            except BaseException:
                if rows > self._rows:
                    self._rows = 0   # the C buffer may have been reallocated or dropped
                raise
            self._rows = max(self._rows, rows)
            self._history.frombytes(toks.cast("B") if isinstance(toks, memoryview) else toks.tobytes())
            self._last_batch = n

    @property
    def logits(self) -> Any:
        """Logits of the last evaluated token: a writable zero-copy :class:`pocketlm.Buffer` of ``n_vocab``
        float32 values over the C memory (``memoryview(ctx.logits)``, ``numpy.asarray(ctx.logits)``).

        It keeps the context's memory alive. Its contents are those of the last evaluation: after the next
        :meth:`eval`, read ``ctx.logits`` again (cheap: nothing is copied).
        """
        with self._using(supersede=False) as h:
            v = _core.context_logits_view(h, -1)
        return self._add_view(v)

    def logits_at(self, i: int) -> Any:
        """Logits of token ``i`` of the last :meth:`eval` (which needs ``logits_all=True`` for any token but the
        last); negative ``i`` counts from the end. A zero-copy view like :attr:`logits`."""
        i = int_arg("i", i)
        if i < 0 and self._last_batch:
            i += self._last_batch
            if i < 0:
                raise IndexError("logits index out of range")
        with self._using(supersede=False) as h:
            v = _core.context_logits_view(h, i)
        return self._add_view(v)

    def sample(self, *, temperature: Optional[float] = None, top_k: Optional[int] = None,
               top_p: Optional[float] = None, min_p: Optional[float] = None, repeat_penalty: Optional[float] = None,
               frequency_penalty: Optional[float] = None, presence_penalty: Optional[float] = None,
               penalty_last_n: Optional[int] = None, seed: Optional[int] = None,
               logit_bias: Optional[LogitBias] = None, sampler: Optional[Sampler] = None) -> int:
        """A token drawn from the current :attr:`logits` (as edited in place, if they were).

        The sampling arguments are those of :class:`Sampler` (None: the C library's defaults). Penalties apply to
        the last ``penalty_last_n`` tokens of the context. Pass a :class:`Sampler` to keep state (seed sequence,
        history) across calls instead of the other arguments.
        """
        if sampler is None:
            sampler = Sampler(self.model, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                              repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                              presence_penalty=presence_penalty, penalty_last_n=penalty_last_n, seed=seed,
                              logit_bias=logit_bias)
            sp = sampler.params
            if sp.repeat_penalty != 1.0 or sp.frequency_penalty or sp.presence_penalty:
                last_n = sp.penalty_last_n
                recent = self._history if last_n < 0 else self._history[len(self._history) - last_n:]
                for t in recent:
                    sampler.accept(t)
        return sampler.sample(self.logits)

    def reset(self) -> None:
        """Empties the cache (the logits buffer keeps its last values)."""
        with self._using() as h:
            _core.kv_clear(h)
            self._history = array("i")
            self._last_batch = 0

    @property
    def adapters(self) -> List[Any]:
        """The LoRA adapters this context applies, as (:class:`~pocketlm.Adapter`, scale) pairs."""
        return list(self._adapters)

    def set_adapters(self, adapters: Optional[Sequence[Any]]) -> None:
        """Applies ``adapters`` from now on: :class:`~pocketlm.Adapter` objects (scale 1) or (adapter, scale)
        pairs, loaded for this context's model (:meth:`pocketlm.Model.load_adapter`); ``None`` or ``[]``: none.
        When the set changes, the cache is emptied, since what it holds was computed with the former set.
        Raises :class:`InvalidArgumentError` for another model's adapter, a scale that is not a finite number or
        more than 16 adapters; the context's set is then unchanged."""
        from .adapter import check_adapters

        pairs = check_adapters(self.model, adapters)
        same = [(id(a), s) for a, s in pairs] == [(id(a), s) for a, s in self._adapters]
        if same:
            return
        with self._using() as h:
            _core.context_clear_adapters(h)
            try:
                for a, scale in pairs:
                    _core.context_add_adapter(h, a._handle, scale)
            except BaseException:
                _core.context_clear_adapters(h)
                for a, scale in self._adapters:
                    _core.context_add_adapter(h, a._handle, scale)
                raise
            self._adapters = pairs
            _core.kv_clear(h)
            self._history = array("i")
            self._last_batch = 0

    def save_state(self) -> State:
        """A snapshot of the context for :meth:`load_state`: the KV cache of its tokens and the current logits
        (copied out of C memory into a :class:`State`; its size is :attr:`State.nbytes`)."""
        with self._using(supersede=False) as h:
            data = bytearray(_core.context_state_size(h))
            _core.context_state_save(h, data)
            return State(array("i", self._history), data, _core.context_n_logits(h), self._last_batch)

    def load_state(self, state: State) -> None:
        """Makes the context hold ``state``: its cache (nothing is re-evaluated) and its logits. The state may
        come from another Context of the same model with the same adapters. Raises :class:`FormatError` for a
        damaged state, one of another model or one computed with other adapters, :class:`ContextFullError` if it
        does not fit; the context is then unchanged."""
        if not isinstance(state, State):
            raise TypeError(f"expected a pocketlm.State, got {type(state).__name__}")
        rows = int(state.n_logits)
        with self._using() as h:
            self._reserve_rows(rows)
            try:
                _core.context_state_load(h, state.data)
            except BaseException:
                if rows > self._rows:
                    self._rows = 0   # the C buffer may have been reallocated
                raise
            self._rows = max(self._rows, rows)
            self._read_history()
            self._last_batch = int(state.last_batch)

    # -- classification and embeddings -------------------------------------------------------

    def _classify_rows(self, n_prompt: int, lens: array, multi_label: bool) -> int:
        """Most logits rows one C decode of plm_classify asks for: labels go in groups of n_seq_max - 1 (fewer
        when the cache is short), each label wanting one row per token but the last (or one, in multi-label)."""
        n_ctx = _core.context_n_ctx(self._h)
        group, rows, g0 = self._n_seq_max - 1, 1, 0
        while g0 < len(lens):
            g1, total, want = g0, 0, 0
            while g1 < len(lens) and g1 - g0 < group and n_prompt + total + lens[g1] <= n_ctx:
                total += lens[g1]
                want += 1 if multi_label else max(lens[g1] - 1, 0)
                g1 += 1
            if g1 == g0:
                break   # C reports that the label does not fit
            rows = max(rows, want)
            g0 = g1
        return rows

    def classify(self, prompt: Tokens, labels: Sequence[Tokens], *, mode: str = "sum", multi_label: bool = False,
                 keep_cache: bool = True, yes_token: Optional[int] = None,
                 no_token: Optional[int] = None) -> "tuple[List[float], List[float]]":
        """Scores label continuations of ``prompt`` (all tokens): returns ``(scores, probabilities)``, one each
        per label.

        The prompt is evaluated once (reusing the part of it the cache already holds, unless ``keep_cache`` is
        false); all labels are then scored in one batched decode, each as its own sequence sharing the prompt's
        cache. A label's score is the sum (``mode="sum"``) or mean (``"mean"``) of its tokens' log-probabilities;
        probabilities are their softmax over the labels. With ``multi_label``, each label is a suffix of the
        prompt and its probability is P(yes) / (P(yes) + P(no)) after it (``yes_token``/``no_token``, default
        the tokens of " yes" and " no"), independently of the others.

        Afterwards the cache holds the prompt, so a following call whose prompt starts the same way evaluates
        only the rest. The interpreter lock is released while C computes.
        """
        toks = as_tokens(prompt)
        if isinstance(labels, (str, bytes)):
            raise TypeError("labels must be a list of token sequences")
        flat, lens = _concat(labels)
        try:
            mode_id = SCORE_MODES[mode]
        except KeyError:
            raise ValueError(f"mode must be one of {', '.join(SCORE_MODES)}, not {mode!r}") from None
        params = _core.classify_default_params()
        params.mode = mode_id
        params.multi_label = bool(multi_label)
        params.keep_cache = bool(keep_cache)
        yes_token = token_arg("yes_token", yes_token) if yes_token is not None else None
        no_token = token_arg("no_token", no_token) if no_token is not None else None
        if yes_token is not None:
            params.yes_token = yes_token
        if no_token is not None:
            params.no_token = no_token
        n = len(lens)
        out = array("f", bytes(8 * n))
        with self._using() as h:
            rows = self._classify_rows(len(toks), lens, bool(multi_label))
            self._reserve_rows(rows)
            try:
                _core.classify(h, toks, flat, lens, params, out)
            except BaseException:
                if rows > self._rows:
                    self._rows = 0
                raise
            finally:
                self._read_history()
                self._last_batch = 0
            self._rows = max(self._rows, rows)
        return out[:n].tolist(), out[n:].tolist()

    def classify_head(self, texts: Sequence[Tokens]) -> "tuple[List[List[float]], List[List[float]]]":
        """Runs the model's classification head (see :attr:`Model.has_classifier_head`) on several token
        sequences: returns ``(scores, probabilities)``, one list of ``n_cls_out`` floats per text, in the order of
        :attr:`Model.classifier_labels`. Each text's final hidden states are pooled as the file says and put
        through the head; the probabilities are the softmax of the scores (the sigmoid for a one-output head).
        The texts are evaluated several at a time as separate sequences; the cache is empty afterwards. Raises
        :class:`UnsupportedError` if the model has no head. The interpreter lock is released while C computes.
        """
        if isinstance(texts, (str, bytes)):
            raise TypeError("texts must be a list of token sequences")
        flat, lens = _concat(texts)
        k = self.model.info.n_cls_out
        out = array("f", bytes(8 * max(k, 1) * len(lens)))
        with self._using() as h:
            try:
                _core.classify_head(h, flat, lens, out)
            finally:
                self._read_history()
                self._last_batch = 0
        n = len(lens) * k
        rows = [out[i * k:(i + 1) * k].tolist() for i in range(len(lens))]
        prob_rows = [out[n + i * k:n + (i + 1) * k].tolist() for i in range(len(lens))]
        return rows, prob_rows

    def embed(self, texts: Sequence[Tokens], *, pooling: str = "mean", normalize: bool = True,
              out: Any = None) -> Any:
        """Pooled final hidden states of several token sequences, one row of ``n_embd`` floats each.

        ``pooling``: ``"mean"`` of the token states, the ``"last"`` token's or the first (``"cls"``) token's;
        ``normalize`` scales each row to unit L2 norm. The rows are written by C straight into ``out``, any
        writable C-contiguous float32 buffer of ``len(texts) * n_embd`` items (a numpy array of shape
        ``(n, n_embd)``, an ``array('f')``); by default a new numpy array, or an ``array('f')`` without numpy.
        Returns ``out``. The texts are evaluated several at a time as separate sequences; the cache is empty
        afterwards.
        """
        if isinstance(texts, (str, bytes)):
            raise TypeError("texts must be a list of token sequences")
        try:
            pool_id = POOLINGS[pooling]
        except KeyError:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}") from None
        flat, lens = _concat(texts)
        d = self.model.info.n_embd
        if out is None:
            try:
                import numpy as np
                out = np.empty((len(lens), d), dtype=np.float32)
            except ImportError:
                out = array("f", bytes(4 * d * len(lens)))
        with self._using() as h:
            try:
                _core.embed(h, flat, lens, pool_id, bool(normalize), out)
            finally:
                self._read_history()
                self._last_batch = 0
        return out

    # -- generation ------------------------------------------------------------------------

    def stream(self, prompt: Union[str, Tokens], *, max_tokens: Optional[int] = None,
               temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
               min_p: Optional[float] = None, repeat_penalty: Optional[float] = None,
               frequency_penalty: Optional[float] = None, presence_penalty: Optional[float] = None,
               penalty_last_n: Optional[int] = None,
               stop: Union[str, Sequence[str], None] = None, seed: Optional[int] = None,
               logit_bias: Optional[LogitBias] = None, logits_processor: Optional[LogitsProcessor] = None,
               ignore_eos: bool = False, add_special: bool = True, parse_special: bool = True,
               json_schema: Any = None, grammar: Any = None, regex: Optional[str] = None,
               choices: Optional[Sequence[str]] = None) -> "Stream":
        """Generates a continuation of ``prompt`` and yields it in pieces of text (whole UTF-8 characters).

        The prompt (text, or tokens) is the whole sequence: the longest prefix already in the cache is
        reused, the rest evaluated. ``temperature=0`` is greedy; ``seed=None`` draws a random seed.
        Generation ends at an end-of-generation token, after ``max_tokens`` tokens (default 256; ``max_tokens
        <= 0``, -1 say: until the context is full), or before any of the ``stop`` strings (never emitted, even in
        part). ``logits_processor`` edits the logits before each token is sampled (see :data:`LogitsProcessor`).
        The sampling arguments are those of :class:`Sampler`; None takes the C library's default (temperature
        0.8, top_k 40, top_p 0.95, min_p 0.05, penalties off, penalty_last_n 64).

        A parameter of the wrong type raises ``TypeError``, one out of range :class:`InvalidArgumentError` (a
        ``ValueError``), both naming it, before anything is evaluated.

        Structured output (at most one of): ``json_schema`` (a dict, JSON text or a pydantic model class),
        ``grammar`` (GBNF text or a :class:`pocketlm.Grammar`), ``regex`` (the whole output matches it),
        ``choices`` (the output is one of these strings). The output is then constrained token by token in C and
        ends where the structure is complete (stop reason ``"eog"``); ``"length"`` means ``max_tokens`` cut it
        short. See :mod:`pocketlm.grammar`.

        Ctrl-C raises KeyboardInterrupt within one token; the context stays usable.
        """
        constraint = _grammar.resolve(json_schema=json_schema, grammar=grammar, regex=regex, choices=choices)
        sp = sampler_params(temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty,
                            presence_penalty, penalty_last_n, seed)
        gp = _generate_params(max_tokens, ignore_eos, sp)
        if constraint is not None:
            _core.generate_params_set_grammar(gp, constraint._h)   # referenced here until the C generator holds it
        bias = logit_bias_arg(logit_bias)
        if isinstance(prompt, str):
            tokens = self.model.tokenize(prompt, add_special=add_special, parse_special=parse_special)
        else:
            tokens = as_tokens(prompt, "prompt")
        return Stream(self, tokens, gp, _stop_list(stop), bias, logits_processor)

    def generate(self, prompt: Union[str, Tokens], *, max_tokens: Optional[int] = None,
                 temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
                 min_p: Optional[float] = None, repeat_penalty: Optional[float] = None,
                 frequency_penalty: Optional[float] = None, presence_penalty: Optional[float] = None,
                 penalty_last_n: Optional[int] = None,
                 stop: Union[str, Sequence[str], None] = None, seed: Optional[int] = None,
                 logit_bias: Optional[LogitBias] = None, logits_processor: Optional[LogitsProcessor] = None,
                 ignore_eos: bool = False, add_special: bool = True, parse_special: bool = True,
                 json_schema: Any = None, grammar: Any = None, regex: Optional[str] = None,
                 choices: Optional[Sequence[str]] = None) -> str:
        """The whole continuation of ``prompt`` as one string; arguments as for :meth:`stream`."""
        with self.stream(prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                         min_p=min_p, repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                         presence_penalty=presence_penalty, penalty_last_n=penalty_last_n, stop=stop, seed=seed,
                         logit_bias=logit_bias, logits_processor=logits_processor, ignore_eos=ignore_eos,
                         add_special=add_special, parse_special=parse_special, json_schema=json_schema,
                         grammar=grammar, regex=regex, choices=choices) as s:
            return "".join(s)

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Releases the context (waiting for another thread's call to end). Views of its logits stay valid:
        the C memory goes with the last of them. Further calls raise ValueError."""
        if self._h is None:
            return
        try:
            self._acquire()
        except ValueError:
            return
        try:
            self._h = None
        finally:
            self._release()

    @property
    def closed(self) -> bool:
        return self._h is None

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._h is None:
            return "<pocketlm.Context (closed)>"
        return f"<pocketlm.Context {len(self._history)}/{self.n_ctx} tokens>"


class Stream(Iterator[str]):
    """The pieces of text of one generation, produced on demand: one C call per token, lock released.

    Iterate it (``for piece in stream``), or use it as a context manager to end it early. After it ends,
    :attr:`stop_reason` says why (see :data:`STOP_REASONS`) and :attr:`tokens` holds the generated tokens.
    """

    def __init__(self, ctx: Context, tokens: Any, params: Any, stop: Optional[List[str]],
                 logit_bias: Optional[LogitBias], processor: Optional[LogitsProcessor]) -> None:
        self.context = ctx
        self.prompt_tokens = array("i", tokens if isinstance(tokens, array) else memoryview(tokens).tolist())
        self.stop_reason: Optional[str] = None
        self.tokens: Any = None
        self.n_prompt = 0
        self._epoch = -1
        self._gen: Any = None
        self._superseded = False
        self._processor = processor
        self._seen: Optional[array] = array("i", self.prompt_tokens) if processor else None
        self._n_gen_seen = 0
        ctx._acquire(stream=self)
        try:
            ctx._reserve_rows(1)
            gen = _core.generator_create(ctx._h, tokens, params, stop, logit_bias)
            setattr(gen, "_context", ctx._h)   # the C context must outlive the C generator
        except BaseException:
            try:
                ctx._sync_history(self.prompt_tokens)
            finally:
                ctx._release(stream=self)
            raise
        ctx._rows = max(ctx._rows, 1)
        ctx._last_batch = 0
        self.n_prompt = _core.generator_n_prompt(gen)
        self._gen = gen

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> str:
        return self._next_piece().decode("utf-8", "replace")

    def iter_bytes(self) -> Iterator[bytes]:
        """The pieces as the bytes C produced (the same generation as iterating the stream, with invalid UTF-8
        kept as it is instead of replaced); a stream is consumed once, either way."""
        while True:
            try:
                yield self._next_piece()
            except StopIteration:
                return

    def _next_piece(self) -> bytes:
        while True:
            gen = self._gen
            if gen is None:
                if self._superseded:
                    raise RuntimeError("this stream was ended because its Context was used for something else")
                raise StopIteration
            try:
                if self._processor is not None:
                    self._run_processor(gen)
                piece, reason = _core.generator_next(gen)
            except BaseException:
                self._close()
                raise
            if reason != _core.STOP_NONE:
                self.stop_reason = STOP_REASONS.get(reason, str(reason))
                self._close()
                if piece:
                    return piece
                raise StopIteration
            if piece:
                return piece

    def _run_processor(self, gen: Any) -> None:
        assert self._seen is not None and self._processor is not None
        generated = _core.generator_tokens(gen)
        if len(generated) > self._n_gen_seen:
            self._seen.frombytes(memoryview(generated)[self._n_gen_seen:].cast("B"))
            self._n_gen_seen = len(generated)
        ctx = self.context
        view = ctx._add_view(_core.context_logits_view(ctx._h, -1))
        out = self._processor(self._seen, view)
        if out is not None and out is not view:
            try:
                memoryview(view)[:] = memoryview(out).cast("B").cast("f")
            except (TypeError, ValueError):
                view[:] = list(out)

    def _close(self, superseded: bool = False) -> None:
        gen, self._gen = self._gen, None
        if gen is None:
            return
        self._superseded = superseded
        ctx = self.context
        try:
            self.tokens = _core.generator_tokens(gen)
            if ctx._owned_by(self):
                ctx._sync_history(self.prompt_tokens + array("i", memoryview(self.tokens)))
        finally:
            del gen   # frees the C generator before the context is handed on
            ctx._release(stream=self)

    def close(self) -> None:
        """Ends the generation (the tokens evaluated so far stay in the cache)."""
        self._close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close()

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:
            pass
