"""Model: a GGUF file loaded (memory-mapped) once, shared by any number of contexts and threads.

    >>> import pocketlm
    >>> model = pocketlm.Model()                       # the default model, SmolLM2-135M-Instruct Q4_1
    >>> model.info.arch, model.info.file_type
    ('llama', 'Q4_1')
    >>> model.generate("The capital of France is", max_tokens=5, temperature=0)
    ' Paris.\\n\\nThe'

``generate``, ``stream`` and ``chat`` run on a context the model keeps for them
(created on first use, reusing the cached prefix of consecutive prompts, so a
chat does not re-read its history); calls from several threads take turns on
it (a stream holds its turn until it is exhausted or closed). For parallel work,
give each thread its own :meth:`Model.context`.
"""

from __future__ import annotations

import json
import os
import threading
from array import array
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Literal, Optional, Sequence, Tuple, Union, overload

from . import _core
from .adapter import Adapter, AdapterSpec
from . import classify as _classify
from . import grammar as _grammar
from .chat import ChatFormat, Message, apply_model_template, detect_format, model_stops
from .classify import Classification
from ._args import int_arg, token_arg
from .context import Context, LogitsProcessor, Stream, Tokens, as_tokens, check_n_ctx, check_n_threads
from .errors import InvalidArgumentError
from .sampling import LogitBias

__all__ = ["Model", "ModelInfo", "default_model_path"]


def default_model_path() -> str:
    """Where the default model is looked for: ``$POCKETLM_MODEL``, else
    ``<cache>/SmolLM2-135M-Instruct.Q4_1.gguf`` (cache: ``$POCKETLM_CACHE``, ``$XDG_CACHE_HOME/pocketlm`` or
    ``~/.cache/pocketlm``). Raises :class:`ModelFileError` naming the paths tried if no file is there."""
    return os.fsdecode(_core.default_model_path())


@dataclass(frozen=True)
class ModelInfo:
    """What a model is: architecture, sizes, quantization, special tokens and chat template."""

    arch: str
    name: str
    file_type: str
    path: str
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    head_dim: int
    n_params: int
    n_bytes: int
    bos: int
    eos: int
    eot: int
    add_bos: bool
    n_cls_out: int
    chat_template: str = field(repr=False)
    n_repacked: int = 0  #: bytes of weights rearranged at load for the CPU's kernels (``Model(repack=...)``)


class Model:
    """A language model loaded from a GGUF file.

    ``path=None`` loads the default model (see :func:`default_model_path`). ``n_threads`` and ``n_ctx`` are the
    defaults for contexts made from this model (``None``: ``$POCKETLM_THREADS`` if set, else the number of
    physical cores; the model's context length, at most 4096; checked here: ``n_ctx`` in [0, 16777216],
    ``n_threads`` in [0, 512]). Raises :class:`ModelFileError` if the file cannot be read (for the default model:
    fetch it first with ``python -m pocketlm download`` or :func:`pocketlm.download`), :class:`FormatError` if it is
    malformed, :class:`UnsupportedError` for an architecture or tensor type pocketlm does not run.

    ``vocab_only=True`` loads the vocabulary and metadata alone (any architecture, no tensors read): tokenizing,
    :attr:`info`, :attr:`metadata` and chat templates work, anything that runs the model (contexts, generation,
    classification, embeddings) raises an error saying the model was loaded vocabulary-only. llama.cpp's
    ``ggml-vocab-*.gguf`` vocabulary files load this way.

    ``repack=True`` (the default) rearranges, once at load, the weights of the types this CPU's kernels multiply
    faster in their own row-group layout (Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 with AVX-512): the same values, so the
    same results, with prompts and batched generation faster. Those weights then live in this process's memory
    (the same size) rather than in the file's mapped pages, which processes loading the same file share (Ray or
    Dask workers on one machine): ``repack=False`` keeps them shared. ``info.n_repacked`` says how many bytes
    moved.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]", None] = None, *, n_threads: Optional[int] = None,
                 n_ctx: Optional[int] = None, use_mmap: bool = True, vocab_only: bool = False,
                 repack: bool = True) -> None:
        n_threads = check_n_threads(n_threads)
        n_ctx = check_n_ctx(n_ctx)
        params = _core.model_default_params()
        params.use_mmap = bool(use_mmap)
        params.vocab_only = bool(vocab_only)
        params.repack = bool(repack)
        self._h: Any = _core.model_load(None if path is None else os.fspath(path), params)
        self.info = ModelInfo(**_core.model_get_info(self._h))
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self._ctx: Optional[Context] = None
        self._task_ctx: Optional[Context] = None
        self._ctx_lock = threading.Lock()
        self._calibration: Dict[Any, List[float]] = {}
        self._metadata: Optional[Dict[str, str]] = None

    @property
    def _handle(self) -> Any:
        h = self._h
        if h is None:
            raise ValueError("the Model is closed")
        return h

    @property
    def n_vocab(self) -> int:
        """Number of tokens in the vocabulary (and of logits per position)."""
        return self.info.n_vocab

    @property
    def metadata(self) -> Dict[str, str]:
        """The GGUF metadata, each value rendered as text (arrays are summarized)."""
        if self._metadata is None:
            h = self._handle
            keys = [_core.model_meta_key(h, i) for i in range(_core.model_meta_count(h))]
            self._metadata = {k: _core.model_meta_str(h, k).decode("utf-8", "replace") for k in keys}
        return self._metadata

    # -- classification head ------------------------------------------------------------------

    @property
    def has_classifier_head(self) -> bool:
        """True when the file carries a sequence-classification head (llama.cpp's ``cls.*`` tensors), which
        :meth:`classify` then uses."""
        return self.info.n_cls_out > 0

    @property
    def classifier_labels(self) -> Tuple[str, ...]:
        """The labels of the classification head, in output order (from ``<arch>.classifier.output_labels``,
        else ``LABEL_0``, ``LABEL_1``...); empty without a head."""
        h = self._handle
        return tuple(_core.model_cls_label(h, i) for i in range(self.info.n_cls_out))

    @property
    def classifier_pooling(self) -> Optional[str]:
        """How the head pools a text's hidden states: ``"mean"``, ``"last"`` or ``"cls"`` (the first token);
        None without a head. A file's "rank" or missing pooling type means the last token."""
        if not self.has_classifier_head:
            return None
        p = _core.model_cls_pooling(self._handle)
        return {_core.POOL_MEAN: "mean", _core.POOL_LAST: "last", _core.POOL_CLS: "cls"}[p]

    # -- tokens ------------------------------------------------------------------------------

    def tokenize(self, text: Union[str, bytes], *, add_special: bool = True, parse_special: bool = False) -> Any:
        """The tokens of ``text`` as a :class:`pocketlm.Buffer` of int32 (zero-copy: it owns the array C
        wrote; ``list()``, ``memoryview`` and ``numpy.asarray`` work on it).

        ``add_special`` adds BOS/EOS as the model asks; ``parse_special`` turns texts such as
        ``<|im_start|>`` into their special tokens (otherwise they are plain text).

            >>> import pocketlm
            >>> list(pocketlm.Model().tokenize("Hello world"))
            [19556, 905]
        """
        if not isinstance(text, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"text must be a str or bytes, not {type(text).__name__}")
        return _core.tokenize(self._handle, text, bool(add_special), bool(parse_special))

    def detokenize(self, tokens: Tokens, *, special: bool = False) -> str:
        """The text of ``tokens`` (invalid UTF-8 is replaced); ``special`` also renders control tokens."""
        return self.detokenize_bytes(tokens, special=special).decode("utf-8", "replace")

    def detokenize_bytes(self, tokens: Tokens, *, special: bool = False) -> bytes:
        """The bytes of ``tokens``, exactly."""
        return _core.detokenize(self._handle, as_tokens(tokens), bool(special))

    def token_to_piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token (possibly part of a UTF-8 character)."""
        return _core.token_to_piece(self._handle, token_arg("token", token), bool(special))

    def is_eog(self, token: int) -> bool:
        """True for tokens that end a generation (EOS, EOT, ``<|im_end|>``...)."""
        return bool(_core.token_is_eog(self._handle, token_arg("token", token)))

    # -- contexts and generation -------------------------------------------------------------

    def load_adapter(self, path: Union[str, "os.PathLike[str]"]) -> Adapter:
        """Loads the GGUF LoRA adapter at ``path`` for this model (see :mod:`pocketlm.adapter`); apply it with
        ``model.context(adapters=[adapter])``, ``[(adapter, scale)]``, or ``generate(..., adapters=[adapter])``.
        Raises :class:`FormatError` if it is not an adapter for this model (the message names what differs)."""
        return Adapter(self, path)

    def context(self, *, n_ctx: Optional[int] = None, n_threads: Optional[int] = None,
                n_batch: Optional[int] = None, n_seq_max: Optional[int] = None,
                memory_budget: Optional[int] = None, adapters: Optional[Sequence[AdapterSpec]] = None) -> Context:
        """A new :class:`Context` on this model (defaults from the Model's ``n_ctx`` and ``n_threads``;
        ``n_seq_max``: sequences it can hold at once, default 8, which is how many labels or texts
        :meth:`classify` and :meth:`embed` put in one batched decode, less one for classification;
        ``memory_budget``: most bytes it may allocate, else :class:`OutOfMemoryError` before allocating,
        default the machine's memory; ``adapters``: LoRA adapters it applies, each an :class:`Adapter` or an
        ``(Adapter, scale)`` pair, see :meth:`Context.set_adapters`)."""
        return Context(self, n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch, n_seq_max=n_seq_max,
                       memory_budget=memory_budget, adapters=adapters)

    def _default_context(self) -> Context:
        with self._ctx_lock:
            if self._ctx is None or self._ctx.closed:
                self._ctx = Context(self)
            return self._ctx

    def _task_context(self) -> Context:
        """The context of classify() and embed(): apart from generation's, so that neither evicts the other's
        cached prefix; 16 sequences, so up to 15 labels or 16 texts share one batched decode."""
        with self._ctx_lock:
            if self._task_ctx is None or self._task_ctx.closed:
                self._task_ctx = Context(self, n_seq_max=16)
            return self._task_ctx

    def stream(self, prompt: Union[str, Tokens], *, max_tokens: Optional[int] = None,
               temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
               min_p: Optional[float] = None, repeat_penalty: Optional[float] = None,
               frequency_penalty: Optional[float] = None, presence_penalty: Optional[float] = None,
               penalty_last_n: Optional[int] = None,
               stop: Union[str, Sequence[str], None] = None, seed: Optional[int] = None,
               logit_bias: Optional[LogitBias] = None, logits_processor: Optional[LogitsProcessor] = None,
               ignore_eos: bool = False, add_special: bool = True, parse_special: bool = True,
               json_schema: Any = None, grammar: Any = None, regex: Optional[str] = None,
               choices: Optional[Sequence[str]] = None,
               adapters: Optional[Sequence[AdapterSpec]] = None) -> Stream:
        """Yields the continuation of ``prompt`` in pieces of text; see :meth:`Context.stream`.

            >>> import pocketlm
            >>> for piece in pocketlm.Model().stream("The capital of France is", max_tokens=5, temperature=0):
            ...     print(repr(piece))
            ' Paris'
            '.'
            '\\n'
            '\\n'
            'The'
        """
        ctx = self._default_context()
        ctx.set_adapters(adapters)
        return ctx.stream(
            prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            penalty_last_n=penalty_last_n, stop=stop, seed=seed, logit_bias=logit_bias,
            logits_processor=logits_processor, ignore_eos=ignore_eos, add_special=add_special,
            parse_special=parse_special, json_schema=json_schema, grammar=grammar, regex=regex, choices=choices)

    def generate(self, prompt: Union[str, Tokens], *, max_tokens: Optional[int] = None,
                 temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
                 min_p: Optional[float] = None, repeat_penalty: Optional[float] = None,
                 frequency_penalty: Optional[float] = None, presence_penalty: Optional[float] = None,
                 penalty_last_n: Optional[int] = None,
                 stop: Union[str, Sequence[str], None] = None, seed: Optional[int] = None,
                 logit_bias: Optional[LogitBias] = None, logits_processor: Optional[LogitsProcessor] = None,
                 ignore_eos: bool = False, add_special: bool = True, parse_special: bool = True,
                 json_schema: Any = None, grammar: Any = None, regex: Optional[str] = None,
                 choices: Optional[Sequence[str]] = None, adapters: Optional[Sequence[AdapterSpec]] = None) -> str:
        """The continuation of ``prompt`` as one string; see :meth:`Context.stream` for the arguments
        (``max_tokens``: default 256, ``<= 0`` until the context is full; None: the C library's defaults;
        ``adapters``: LoRA adapters to apply, :class:`Adapter` objects or ``(Adapter, scale)`` pairs, none by default).

            >>> import pocketlm
            >>> pocketlm.Model().generate("The capital of France is", max_tokens=5, temperature=0)
            ' Paris.\\n\\nThe'
        """
        ctx = self._default_context()
        ctx.set_adapters(adapters)
        return ctx.generate(
            prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            penalty_last_n=penalty_last_n, stop=stop, seed=seed, logit_bias=logit_bias,
            logits_processor=logits_processor, ignore_eos=ignore_eos, add_special=add_special,
            parse_special=parse_special, json_schema=json_schema, grammar=grammar, regex=regex, choices=choices)

    @property
    def chat_format(self) -> ChatFormat:
        """The chat family recognized in the template stored in the file by its markers (ChatML, Llama 3, Gemma or
        Phi-3; ChatML when none match): its end-of-turn markers are a chat's stop strings. The prompt itself comes
        from the stored template (see :meth:`apply_chat_template`)."""
        return detect_format(self.info.chat_template)

    def apply_chat_template(self, messages: Union[str, Sequence[Message]], *, template: Optional[str] = None,
                            add_generation_prompt: bool = True, tools: Optional[Sequence[Any]] = None,
                            chat_template_kwargs: Optional[Dict[str, Any]] = None,
                            chat_template: Optional[str] = None) -> str:
        """The prompt text for ``messages`` (dicts with ``role`` and ``content``; a string is one user message),
        rendered by the model's own Jinja chat template in C, as transformers' ``apply_chat_template`` renders it
        (without a BOS text at the very start: tokenizing the prompt adds BOS). Messages may carry ``tool_calls``,
        and the role ``tool`` gives a tool's result. ``tools`` (function definitions) and ``chat_template_kwargs``
        (such as ``{"enable_thinking": False}``) become template variables. ``template`` names a chat format
        (``chatml``, ``llama3``, ``gemma``, ``phi3``) to use instead; ``chat_template`` gives Jinja source instead.
        A file without a template is rendered as ChatML. A template that refuses the conversation
        (``raise_exception``) raises :class:`InvalidArgumentError`; one the interpreter cannot render raises
        :class:`UnsupportedError` naming the construct and its line.

            >>> import pocketlm
            >>> print(pocketlm.Model().apply_chat_template([{"role": "user", "content": "Hi"}]), end="")
            <|im_start|>system
            You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
            <|im_start|>user
            Hi<|im_end|>
            <|im_start|>assistant
        """
        return apply_model_template(self._handle, messages, add_generation_prompt=add_generation_prompt,
                                    template=template, chat_template=chat_template, tools=tools,
                                    chat_template_kwargs=chat_template_kwargs)

    def _chat_options(self, messages: Any, options: Dict[str, Any], template: Optional[str],
                      chat_template: Optional[str], tools: Optional[Sequence[Any]],
                      chat_template_kwargs: Optional[Dict[str, Any]]) -> Tuple[str, Dict[str, Any]]:
        """A chat's prompt and generation options: the template's stop strings added, special tokens parsed."""
        prompt = self.apply_chat_template(messages, template=template, chat_template=chat_template, tools=tools,
                                          chat_template_kwargs=chat_template_kwargs)
        stop = options.get("stop")
        stops: List[str] = list(model_stops(self._handle, template, chat_template))
        if stop is not None:
            stops += [stop] if isinstance(stop, str) else list(stop)
        options = dict(options, stop=stops)
        options.setdefault("add_special", True)
        options.setdefault("parse_special", True)
        return prompt, options

    @overload
    def chat(self, messages: Union[str, Sequence[Message]], *, stream: Literal[False] = ...,
             template: Optional[str] = ..., max_tokens: Optional[int] = ..., **kwargs: Any) -> str: ...

    @overload
    def chat(self, messages: Union[str, Sequence[Message]], *, stream: Literal[True], template: Optional[str] = ...,
             max_tokens: Optional[int] = ..., **kwargs: Any) -> Stream: ...

    def chat(self, messages: Union[str, Sequence[Message]], *, stream: bool = False, template: Optional[str] = None,
             max_tokens: Optional[int] = None, response_format: Any = None, tools: Optional[Sequence[Any]] = None,
             chat_template_kwargs: Optional[Dict[str, Any]] = None, chat_template: Optional[str] = None,
             adapters: Optional[Sequence[AdapterSpec]] = None, **kwargs: Any) -> Union[str, Stream]:
        """The assistant's reply to ``messages`` (dicts with ``role`` — ``system``, ``user``, ``assistant`` or
        ``tool`` — and ``content``, and ``tool_calls`` where the template reads them; a string is one user
        message), rendered by the model's chat template (see :meth:`apply_chat_template` for ``template``,
        ``chat_template``, ``tools`` and ``chat_template_kwargs``). With ``stream=True``, a :class:`Stream` of
        pieces. Other keyword arguments are those of :meth:`generate` (temperature, top_p, stop, seed,
        json_schema, grammar, regex, choices...); ``max_tokens`` too (default 256;
        ``<= 0``: until the context is full). ``response_format`` asks for JSON as llama-cpp-python (``{"type": "json_object", "schema": {...}}``)
        or OpenAI (``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}``) do; see
        :mod:`pocketlm.grammar`. ``adapters``: LoRA adapters to apply, as in :meth:`generate`.

            >>> import pocketlm
            >>> reply = pocketlm.Model().chat([{"role": "user", "content": "Say hi"}], max_tokens=8, temperature=0)
            >>> isinstance(reply, str) and len(reply) > 0
            True
        """
        schema = _grammar.from_response_format(response_format)
        if schema is not None:
            if kwargs.get("json_schema") is not None:
                raise InvalidArgumentError("give response_format or json_schema, not both")
            kwargs["json_schema"] = schema
        prompt, kwargs = self._chat_options(messages, kwargs, template, chat_template, tools, chat_template_kwargs)
        ctx = self._default_context()
        ctx.set_adapters(adapters)
        s = ctx.stream(prompt, max_tokens=max_tokens, **kwargs)
        if stream:
            return s
        with s:
            return "".join(s)

    # -- many sequences at once ------------------------------------------------------------------

    def generate_many(self, prompts: Sequence[Any], *, parallel: Optional[int] = None, progress: bool = True,
                      errors: str = "raise", **options: Any) -> List[Optional[str]]:
        """The continuations of many prompts, in input order, computed together (continuous batching: one
        batched decode per step, ``parallel`` prompts at a time — default up to 16 — a new one admitted as soon
        as another ends). ``options`` are those of :meth:`generate` (max_tokens, temperature, stop, seed...) for
        every prompt; an item may instead be a dict with ``"prompt"`` and its own options. With
        ``temperature=0`` or a fixed ``seed``, each text equals ``generate(prompt, ...)``. ``progress`` shows a
        bar on long lists. A prompt that cannot run (say, longer than the context) does not stop the others:
        with ``errors="raise"`` its exception is raised once they are done (with ``.results``, the list, None
        where a prompt failed); with ``errors="none"`` its place holds None. The interpreter lock is released
        while C computes; Ctrl-C cancels them all (KeyboardInterrupt) and leaves the model usable.

            >>> import pocketlm
            >>> pocketlm.Model().generate_many(["1, 2, 3,", "a, b, c,"], max_tokens=3, temperature=0, progress=False)
            [' 4,', ' d, e']
        """
        from . import batch as _batch
        items = _batch._plan(self, prompts, options, "prompt")
        return _batch.collect(self, items, parallel, progress, errors)

    def stream_many(self, prompts: Sequence[Any], *, parallel: Optional[int] = None, progress: bool = False,
                    **options: Any) -> Iterator[Tuple[int, str]]:
        """Yields ``(index, piece)`` as the prompts of :meth:`generate_many` produce text (pieces are whole
        UTF-8 characters, never part of a stop string). Closing the iterator early cancels the rest."""
        from . import batch as _batch
        items = _batch._plan(self, prompts, options, "prompt")
        return _batch.stream_items(self, items, parallel, progress)

    def chat_many(self, conversations: Sequence[Any], *, template: Optional[str] = None,
                  parallel: Optional[int] = None, progress: bool = True, errors: str = "raise",
                  tools: Optional[Sequence[Any]] = None, chat_template_kwargs: Optional[Dict[str, Any]] = None,
                  chat_template: Optional[str] = None, **options: Any) -> List[Optional[str]]:
        """The assistant's replies to many conversations (each as :meth:`chat` takes it: a list of messages or
        one user string; or a dict with ``"messages"`` and its own options), computed together as
        :meth:`generate_many` does; equal to ``[chat(c, ...) for c in conversations]`` with greedy or seeded
        sampling. Conversations that share a beginning (a system prompt) evaluate it once. ``template``,
        ``chat_template``, ``tools`` and ``chat_template_kwargs`` are :meth:`apply_chat_template`'s, for all."""
        from . import batch as _batch

        def render(messages: Any, opts: Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]:
            return self._chat_options(messages, opts, template, chat_template, tools, chat_template_kwargs)

        items = _batch._plan(self, conversations, options, "messages", render)
        return _batch.collect(self, items, parallel, progress, errors)

    def generate_json(self, prompt: Union[str, Sequence[Message]], schema: Any, *, max_tokens: int = 512,
                      **kwargs: Any) -> Any:
        """The JSON value the model writes for ``prompt`` under ``schema`` (a dict, JSON text, or a pydantic
        model class: then an instance of it is returned; pydantic itself is optional). A string prompt is
        continued as is; a list of messages goes through the chat template. Other keyword arguments are those
        of :meth:`generate`. Raises :class:`pocketlm.IncompleteOutputError` when generation stopped before the
        value was complete (``max_tokens``...), never returning half an object.

            >>> import pocketlm
            >>> ticket = pocketlm.Model().generate_json(
            ...     [{"role": "user", "content": "My blender broke after two days. I want a refund!"}],
            ...     {"type": "object", "properties": {"product": {"type": "string", "maxLength": 20},
            ...      "refund": {"type": "boolean"}}, "required": ["product", "refund"]}, temperature=0)
            >>> sorted(ticket), type(ticket["refund"]).__name__
            (['product', 'refund'], 'bool')
        """
        if isinstance(prompt, str):
            s = self.stream(prompt, max_tokens=max_tokens, json_schema=schema, **kwargs)
        else:
            s = self.chat(prompt, stream=True, max_tokens=max_tokens, json_schema=schema, **kwargs)
        with s:
            text = "".join(s)
        if s.stop_reason != "eog":
            raise _grammar.IncompleteOutputError(
                f"generation stopped ({s.stop_reason}) before the JSON value was complete: {text[:80]!r}"
                + ("..." if len(text) > 80 else ""), text, s.stop_reason)
        value = json.loads(text)
        if isinstance(schema, type) and hasattr(schema, "model_validate"):
            return schema.model_validate(value)
        if isinstance(schema, type) and hasattr(schema, "parse_obj"):
            return schema.parse_obj(value)
        return value

    # -- classification and embeddings ---------------------------------------------------------

    def classify(self, text: str, labels: Optional[Sequence[str]] = None, *, template: Optional[str] = None,
                 multi_label: bool = False, mode: str = "sum", calibrate: Union[bool, str, Sequence[str]] = False,
                 context: Optional[Context] = None, use_head: Optional[bool] = None) -> Classification:
        """Zero-shot classification of ``text`` into ``labels``, by the likelihood the model gives each label
        as the answer. Returns a :class:`Classification`: a mapping ``{label: probability}``, with ``.label``,
        ``.score`` and ``.as_pipeline()`` (``[{"label": ..., "score": ...}]``, best first).

        The prompt is evaluated once and all labels are scored in one batched decode (the interpreter lock is
        released meanwhile). ``template``: the prompt, with ``{text}``, ``{labels}`` and (multi-label)
        ``{label}`` placeholders; by default an instruction in the model's chat format (see
        :mod:`pocketlm.classify`). ``mode``: a label's score is the ``"sum"`` or the ``"mean"`` of its tokens'
        log-probabilities (the mean does not favour short labels). ``multi_label``: each label is judged on its
        own (yes/no), so the probabilities need not sum to 1. ``calibrate``: divide by the probabilities of a
        content-free input (``"N/A"``) and renormalize. ``context``: a :class:`Context` of your own (for
        threads), instead of the model's classification context.

        A model whose file carries a classification head (:attr:`has_classifier_head`) uses it when no
        ``template`` is given: one pass over the text, and the labels default to the head's
        (:attr:`classifier_labels`); ``labels`` may name a subset of them (the probabilities are then the softmax
        over those labels' scores, or with ``multi_label`` each label's sigmoid). ``use_head``: True insists on
        the head, False asks for zero-shot scoring; ``mode`` and ``template`` are for zero-shot scoring only.

            >>> import pocketlm
            >>> r = pocketlm.Model().classify("The food was cold and the waiter was rude.", ["positive", "negative"])
            >>> r.label, r.as_pipeline()[0]["label"]
            ('negative', 'negative')
        """
        return _classify.classify(self, text, labels, template=template, multi_label=multi_label, mode=mode,
                                  calibrate=calibrate, context=context, use_head=use_head)

    def classification_prompt(self, text: str, labels: Sequence[str], *, template: Optional[str] = None,
                              multi_label: bool = False) -> Tuple[array, List[array]]:
        """What :meth:`classify` scores: the prompt's tokens and each label's tokens after it (its
        continuation, or in multi-label mode its suffix, after which " yes" and " no" are compared)."""
        text = _classify._check_text(text)
        return _classify._Plan(self, template, _classify._check_labels(labels), bool(multi_label)).tokens(text)

    def classify_many(self, texts: Sequence[str], labels: Optional[Sequence[str]] = None, *,
                      template: Optional[str] = None, multi_label: bool = False, mode: str = "sum",
                      calibrate: Union[bool, str, Sequence[str]] = False, batch_size: int = 32,
                      progress: bool = True, context: Optional[Context] = None,
                      use_head: Optional[bool] = None) -> List[Classification]:
        """:meth:`classify` for each of ``texts``, as a list. The instruction before ``{text}`` is tokenized and
        evaluated once and stays cached from one text to the next: per text only the text, what follows it and
        the labels are evaluated. ``batch_size`` texts are classified per turn on the context (another thread
        using it waits in between); ``progress`` shows a bar (tqdm when installed, else a line on stderr).
        Results equal those of :meth:`classify` text by text. With a classification head (see :meth:`classify`),
        each batch of texts is one C call that evaluates them several at a time as separate sequences.
        """
        batch_size = int_arg("batch_size", batch_size, 1)
        return _classify.classify_many(self, texts, labels, template=template, multi_label=multi_label, mode=mode,
                                       calibrate=calibrate, batch_size=batch_size, progress=progress,
                                       context=context, use_head=use_head)

    @property
    def embed_pooling(self) -> str:
        """The pooling :meth:`embed` uses by default: the file's pooling type (``"mean"`` or ``"cls"``, as a
        sentence-transformers model was trained), else ``"mean"``."""
        p = _core.model_embed_pooling(self._handle)
        return {_core.POOL_MEAN: "mean", _core.POOL_LAST: "last", _core.POOL_CLS: "cls"}[p]

    @property
    def is_encoder(self) -> bool:
        """True for an encoder (a BERT sentence embedder): it gives embeddings, not text (generate and chat
        raise :class:`UnsupportedError`)."""
        return bool(_core.model_is_encoder(self._handle))

    def embed(self, texts: Union[str, Sequence[Any]], *, pooling: Optional[str] = None, normalize: bool = True,
              batch_size: int = 32, progress: bool = False, context: Optional[Context] = None,
              out: Any = None, truncate: Union[bool, int] = False) -> Any:
        """Embeddings of ``texts``: the model's final hidden states (after the output norm), pooled per text
        (``"mean"`` over its tokens, the ``"last"`` token's, or the first one's: ``"cls"``; by default the
        model file's pooling, see :attr:`embed_pooling`) and, with
        ``normalize``, scaled to unit length. A list of texts gives a numpy array of shape ``(n, n_embd)``
        that C writes into directly (no copy); one string gives one row. Items may also be token sequences.

        ``batch_size`` texts are handed to C per call, which evaluates them several at a time as separate
        sequences. ``out``: any writable C-contiguous float32 buffer of ``n * n_embd`` items to write into
        instead (returned). Without numpy and without ``out``, the rows come back as a list of
        ``array('f')``.

        A text longer than the model takes (an encoder's positions, 512 for MiniLM) raises
        :class:`ContextFullError` unless ``truncate`` asks to cut it: ``True`` to the model's trained length,
        an int to that many tokens (256 is what sentence-transformers does for MiniLM). The cut keeps the
        tokenizer's closing special token ([SEP]).

            >>> import pocketlm
            >>> e = pocketlm.Model().embed(["a cat", "a dog"])
            >>> e.shape, e.dtype.name
            ((2, 576), 'float32')
        """
        batch_size = int_arg("batch_size", batch_size, 1)
        if truncate is True:
            limit: Optional[int] = self.info.n_ctx_train
        elif truncate is False or truncate is None:
            limit = None
        else:
            limit = int_arg("truncate", truncate, 2, note=" (or True: the model's trained length)")
        if pooling is None:
            pooling = self.embed_pooling
        return _classify.embed(self, texts, pooling=pooling, normalize=normalize, batch_size=batch_size,
                               progress=progress, context=context, out=out, truncate=limit)

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Releases the model (and its generation and classification contexts). Contexts made from it keep the
        weights alive until they are gone."""
        with self._ctx_lock:
            for c in (self._ctx, self._task_ctx):
                if c is not None:
                    c.close()
            self._ctx = self._task_ctx = None
        self._h = None

    @property
    def closed(self) -> bool:
        return self._h is None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._h is None:
            return "<pocketlm.Model (closed)>"
        i = self.info
        return f"<pocketlm.Model {i.name or i.arch!r} {i.arch} {i.n_params / 1e6:.0f}M {i.file_type}>"
