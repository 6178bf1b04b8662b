"""Many generations at once: continuous batching on one context.

Decoding one token reads every weight of the model once, so sixteen sequences stepped together cost little more
than one. :meth:`Model.generate_many`, :meth:`Model.chat_many` and :meth:`Model.stream_many` run a list of
prompts that way: each step is one C call that evaluates the next token of every running prompt plus a chunk of
newly admitted ones, and a prompt is admitted as soon as another ends. With ``temperature=0`` or a fixed ``seed``
each output equals what :meth:`Model.generate` gives for that prompt alone.

    >>> import pocketlm
    >>> m = pocketlm.Model()
    >>> m.generate_many(["The capital of France is", "The capital of Italy is"], max_tokens=2, temperature=0)
    [' Paris.', ' Rome.']

:class:`Batch` is the step-wise form underneath (submit, step, take pieces, cancel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import _core
from . import errors as _errors
from . import grammar as _grammar
from .context import STOP_REASONS, Context, Tokens, _generate_params, _stop_list, as_tokens
from .sampling import sampler_params

if TYPE_CHECKING:
    from .model import Model

__all__ = ["Batch", "BatchResult"]

#: Options a request may set (the keyword arguments of :meth:`Model.generate`, less the logits processor).
GENERATE_OPTIONS = ("max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "frequency_penalty",
                    "presence_penalty", "penalty_last_n", "stop", "seed", "logit_bias", "ignore_eos", "add_special",
                    "parse_special", "json_schema", "grammar", "regex", "choices")

_DEFAULTS: Dict[str, Any] = {
    "max_tokens": 256, "temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.0,
    "frequency_penalty": 0.0, "presence_penalty": 0.0, "penalty_last_n": 64, "stop": None, "seed": None,
    "logit_bias": None, "ignore_eos": False, "add_special": True, "parse_special": True,
    "json_schema": None, "grammar": None, "regex": None, "choices": None,
}

_STATUS_ERRORS = {
    _core.ERR_IO: _errors.ModelFileError, _core.ERR_FORMAT: _errors.FormatError,
    _core.ERR_UNSUPPORTED: _errors.UnsupportedError, _core.ERR_OOM: _errors.OutOfMemoryError,
    _core.ERR_ARG: _errors.InvalidArgumentError, _core.ERR_CONTEXT_FULL: _errors.ContextFullError,
    _core.ERR_CANCELLED: _errors.CancelledError,
}

#: Most cells a batch context is given by default (KV cache: about 23 KB per cell on the default model).
_MAX_BATCH_CELLS = 32768


@dataclass
class BatchResult:
    """How one request of a :class:`Batch` ended. ``stop_reason``: ``None`` while it runs, else one of
    :data:`pocketlm.STOP_REASONS`' values (``"caller"`` when cancelled); ``error``: the exception of a request
    that could not run (its prompt can never fit, a bad parameter), else ``None``."""

    text: str
    stop_reason: Optional[str]
    n_prompt: int
    n_shared: int
    n_generated: int
    error: Optional[Exception]


def check_options(opts: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(opts) - set(GENERATE_OPTIONS))
    if unknown:
        raise TypeError(f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join(GENERATE_OPTIONS)}")


class Batch:
    """A batch generator on a context of its own: submit requests, then :meth:`step` until :attr:`n_left` is 0.

    ``parallel``: most requests running at once (sequences of the context); ``n_ctx``: cells of the context, shared
    by the running requests (a request waits until the cells it may need are free); ``n_ctx_seq``: most cells of one
    request, so that it ends as :meth:`Model.generate` would on a context of that size (default: the Model's context
    length); ``prefill_chunk``: most prompt tokens evaluated per step. The interpreter lock is released while a
    step computes; Ctrl-C interrupts a step (KeyboardInterrupt), leaving the requests as before it. Use it as a
    context manager, or call :meth:`close`.

        >>> import pocketlm
        >>> m = pocketlm.Model()
        >>> with pocketlm.Batch(m, parallel=2, n_ctx=256) as b:
        ...     ids = [b.submit("The capital of France is", max_tokens=2, temperature=0)]
        ...     while b.n_left:
        ...         events = b.step()
        ...     b.result(ids[0]).text
        ' Paris.'
    """

    def __init__(self, model: "Model", *, parallel: int = 16, n_ctx: Optional[int] = None,
                 n_ctx_seq: Optional[int] = None, prefill_chunk: int = 128, share_prefix: bool = True,
                 n_threads: Optional[int] = None) -> None:
        if not isinstance(parallel, int) or isinstance(parallel, bool) or not 1 <= parallel <= 64:
            raise ValueError(f"parallel must be an int in [1, 64], got {parallel!r}")
        if not isinstance(prefill_chunk, int) or prefill_chunk < 1:
            raise ValueError(f"prefill_chunk must be a positive int, got {prefill_chunk!r}")
        self.model = model
        seq_len = n_ctx_seq if n_ctx_seq is not None else model_context_length(model)
        if n_ctx is None:
            n_ctx = min(parallel * seq_len, max(_MAX_BATCH_CELLS, seq_len))
        self.context = Context(model, n_ctx=n_ctx, n_seq_max=parallel, n_threads=n_threads)
        self.n_ctx_seq = min(seq_len, self.context.n_ctx)
        self._h: Any = _core.batch_gen_create(self.context._h, parallel, prefill_chunk, self.n_ctx_seq,
                                              bool(share_prefix))
        setattr(self._h, "_context", self.context._h)   # the C context must outlive the C batch generator

    @property
    def _handle(self) -> Any:
        if self._h is None:
            raise ValueError("the Batch is closed")
        return self._h

    def submit(self, prompt: Union[str, Tokens], **options: Any) -> int:
        """Queues a prompt (text, or tokens) with the options of :meth:`Model.generate`; returns its id (0, 1, ...
        in submission order). A request that cannot run ends at once, with its error in :meth:`result`."""
        check_options(options, "submit")
        o = dict(_DEFAULTS, **options)
        if isinstance(prompt, str):
            tokens = self.model.tokenize(prompt, add_special=o["add_special"], parse_special=o["parse_special"])
        else:
            tokens = as_tokens(prompt)
        sp = sampler_params(o["temperature"], o["top_k"], o["top_p"], o["min_p"], o["repeat_penalty"],
                            o["frequency_penalty"], o["presence_penalty"], o["penalty_last_n"], o["seed"])
        gp = _generate_params(o["max_tokens"], o["ignore_eos"], sp)
        constraint = _grammar.resolve(json_schema=o["json_schema"], grammar=o["grammar"], regex=o["regex"],
                                      choices=o["choices"])
        if constraint is not None:   # the request takes its own reference in C
            _core.generate_params_set_grammar(gp, constraint._h)
        return int(_core.batch_gen_submit(self._handle, tokens, gp, _stop_list(o["stop"]), o["logit_bias"]))

    def step(self) -> List[Tuple[int, str]]:
        """Runs one step (one batched decode) and returns ``(id, text)`` for each request that got text; the
        pieces are whole UTF-8 characters and never part of a stop string, as :meth:`Model.stream`'s."""
        h = self._handle
        _core.batch_gen_step(h)
        events = []
        for i in _core.batch_gen_updated(h):
            piece = _core.batch_gen_take(h, i)
            if piece:
                events.append((int(i), piece.decode("utf-8", "replace")))
        return events

    @property
    def n_left(self) -> int:
        """Requests not ended yet."""
        return int(_core.batch_gen_n_left(self._handle))

    def __len__(self) -> int:
        return int(_core.batch_gen_n_requests(self._handle))

    def result(self, id: int) -> BatchResult:
        """What request ``id`` has produced so far and, once it ended, why."""
        h = self._handle
        reason, status, n_prompt, n_shared, n_gen = list(_core.batch_gen_result(h, int(id)))
        error: Optional[Exception] = None
        if status != _core.OK:
            msg = _core.batch_gen_error(h, int(id)).decode("utf-8", "replace")
            error = _STATUS_ERRORS.get(status, _errors.InternalError)(msg)
        text = _core.batch_gen_text(h, int(id)).decode("utf-8", "replace")
        return BatchResult(text=text, stop_reason=STOP_REASONS.get(reason) if reason else None, n_prompt=n_prompt,
                           n_shared=n_shared, n_generated=n_gen, error=error)

    def tokens(self, id: int) -> Any:
        """The tokens generated for request ``id`` (a :class:`pocketlm.Buffer` of int32)."""
        return _core.batch_gen_tokens(self._handle, int(id))

    def cancel(self, id: Optional[int] = None) -> None:
        """Ends request ``id`` (``None``: every request not ended yet); text held back is dropped."""
        _core.batch_gen_cancel(self._handle, -1 if id is None else int(id))

    def close(self) -> None:
        """Ends every request and frees the batch and its context."""
        if self._h is None:
            return
        h, self._h = self._h, None
        try:
            _core.batch_gen_cancel(h, -1)
        finally:
            del h
            self.context.close()

    @property
    def closed(self) -> bool:
        return self._h is None

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def model_context_length(model: "Model") -> int:
    """The n_ctx of the Model's own contexts: what :meth:`Model.generate` runs on."""
    if model.n_ctx:
        return int(model.n_ctx)
    return min(model.info.n_ctx_train, 4096) if model.info.n_ctx_train > 0 else 4096


def _split_item(item: Any, defaults: Mapping[str, Any], key: str, index: int) -> Tuple[Any, Dict[str, Any]]:
    """(prompt, options) of one item: the item itself, or a dict with ``key`` and per-item options."""
    if isinstance(item, Mapping):
        if key not in item:
            raise TypeError(f"item {index}: a dict item needs a {key!r} key")
        opts = {k: v for k, v in item.items() if k != key}
        check_options(opts, f"item {index}")
        return item[key], dict(defaults, **opts)
    return item, dict(defaults)


def _plan(model: "Model", prompts: Sequence[Any], options: Dict[str, Any], key: str,
          render: Any = None) -> List[Tuple[Any, Dict[str, Any]]]:
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise TypeError(f"expected a list of prompts, got {type(prompts).__name__}")
    check_options(options, "generate_many")
    items = []
    for i, item in enumerate(prompts):
        prompt, opts = _split_item(item, options, key, i)
        if render is not None:
            prompt, opts = render(prompt, opts)
        if isinstance(prompt, str):
            o = dict(_DEFAULTS, **opts)
            prompt = model.tokenize(prompt, add_special=o["add_special"], parse_special=o["parse_special"])
        elif isinstance(prompt, bytes):
            raise TypeError(f"item {i}: expected a str or tokens, got bytes")
        items.append((prompt, opts))
    return items


def _open(model: "Model", items: List[Tuple[Any, Dict[str, Any]]], parallel: Optional[int]) -> Batch:
    """A Batch sized for items: parallel sequences, cells for the largest ones that can run together."""
    if parallel is None:
        parallel = max(1, min(16, len(items)))
    if not isinstance(parallel, int) or isinstance(parallel, bool) or not 1 <= parallel <= 64:
        raise ValueError(f"parallel must be an int in [1, 64], got {parallel!r}")
    seq_len = model_context_length(model)
    needs = []
    for tokens, o in items:
        mt = o.get("max_tokens", _DEFAULTS["max_tokens"])
        mt = int(mt) if mt is not None else 0
        needs.append(min(len(tokens) + mt if mt > 0 else seq_len, seq_len))
    needs.sort(reverse=True)
    n_ctx = max(needs[0] if needs else 16, min(sum(needs[:parallel]) + 8, _MAX_BATCH_CELLS))
    return Batch(model, parallel=parallel, n_ctx=n_ctx, n_ctx_seq=seq_len)


def _progress(total: int, enabled: bool) -> Any:
    from .classify import _Progress
    return _Progress(total, "generate", enabled)


def stream_items(model: "Model", items: List[Tuple[Any, Dict[str, Any]]], parallel: Optional[int],
                 progress: bool, results: Optional[List[Optional[BatchResult]]] = None) -> Iterator[Tuple[int, str]]:
    """Runs items on a Batch, yielding (index, piece); fills results (by index) as requests end. The batch is
    closed (every request cancelled) when the iteration ends, is closed early or raises (Ctrl-C)."""
    b = _open(model, items, parallel)
    bar = _progress(len(items), progress)
    try:
        for tokens, o in items:
            b.submit(tokens, **o)
        recorded = [False] * len(items)

        def record(i: int) -> None:
            if recorded[i]:
                return
            r = b.result(i)
            if r.stop_reason is not None or r.error is not None:
                recorded[i] = True
                if results is not None:
                    results[i] = r
                bar.update(1)

        for i in range(len(items)):   # requests that could not even be queued end at submission
            record(i)
        while b.n_left:
            events = b.step()
            for i in _core.batch_gen_updated(b._handle):
                record(int(i))
            for i, piece in events:
                yield i, piece
    finally:
        bar.close()
        b.close()


def collect(model: "Model", items: List[Tuple[Any, Dict[str, Any]]], parallel: Optional[int], progress: bool,
            errors: str) -> List[Optional[str]]:
    if errors not in ("raise", "none"):
        raise ValueError(f"errors must be 'raise' or 'none', got {errors!r}")
    results: List[Optional[BatchResult]] = [None] * len(items)
    for _ in stream_items(model, items, parallel, progress, results):
        pass
    out: List[Optional[str]] = []
    first: Optional[Exception] = None
    for r in results:
        assert r is not None
        if r.error is not None:
            first = first or r.error
            out.append(None)
        else:
            out.append(r.text)
    if first is not None and errors == "raise":
        setattr(first, "results", out)
        raise first
    return out
