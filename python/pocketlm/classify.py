"""Zero-shot classification by label likelihood, and text embeddings.

:meth:`Model.classify` asks the model which label continues a prompt best. The
prompt (by default an instruction in the model's chat format, with the text
after the fixed part) is evaluated once; every label is then scored in one
batched C call, each as its own sequence sharing the prompt's KV cache::

    >>> import pocketlm
    >>> model = pocketlm.Model()
    >>> r = model.classify("I waited two hours and nobody answered the phone.", ["positive", "negative"])
    >>> r.label
    'negative'
    >>> r.as_pipeline()[0]["label"], abs(sum(r.values()) - 1) < 1e-6
    ('negative', True)

:meth:`Model.classify_many` does the same for a list of texts, keeping the
instruction's tokens cached from one text to the next (only the text and what
follows it are evaluated per item). :meth:`Model.embed` returns pooled hidden
states, written by C straight into a numpy array.

Classification heads
--------------------
A GGUF may carry a sequence-classification head (llama.cpp's layout: ``cls.*``
tensors, the pooling type and the label names in the metadata; a Qwen3 reranker
converted by llama.cpp is one). Then :meth:`Model.classify` uses it by default
(when no ``template`` is given): the text is evaluated once, its final hidden
states are pooled and put through the head, and the labels are the head's
(:attr:`Model.classifier_labels`). ``labels`` may name a subset of them, in any
order: the probabilities are then the softmax over those labels' scores. With
``multi_label`` (or a head of one output) each label's probability is the
sigmoid of its score. ``use_head=False`` asks for zero-shot scoring instead.

Templates
---------
``template`` is the whole prompt, with placeholders: ``{text}`` (the text),
``{labels}`` (the labels joined by ", ") and, in multi-label mode, ``{label}``
(one label). The text and labels are inserted as plain text (special tokens in
them are not parsed); the rest of the template may use the model's special
tokens. Put ``{text}`` after the fixed instruction so that its tokens are
shared between texts. In single-label mode each label is scored as a
continuation of the prompt, with a space before it unless the prompt ends with
whitespace (any Unicode White_Space character: a no-break space or an
ideographic space counts, as in the tokenizer's pre-splitting). In multi-label
mode everything from ``{label}`` on is a suffix appended per label, and the
label's probability is P(" yes") / (P(" yes") + P(" no")) after that suffix.
Without ``template``, :data:`INSTRUCTION` (or :data:`MULTI_LABEL_INSTRUCTION`)
is put in a user turn of the model's chat format and the assistant's turn
starts with :data:`ANSWER`. The C library builds these tokens
(``plm_classify_prompt``) for this package and the Lua module alike, so a text
gets the same prompt and the same scores in both;
:meth:`Model.classification_prompt` shows them.

Calibration
-----------
``calibrate=True`` divides the probabilities by those the model gives a
content-free input (``"N/A"``) with the same template and labels, then
renormalizes (Zhao et al. 2021, "Calibrate Before Use"): it removes the model's
bias towards some labels whatever the text. ``calibrate`` may also be a string
or a list of content-free inputs (their probabilities are averaged).
"""

from __future__ import annotations

import sys
import time
from array import array
from collections.abc import Mapping
from typing import (TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union)

import math

from . import _core
from .errors import InvalidArgumentError, UnsupportedError

if TYPE_CHECKING:
    from .context import Context
    from .model import Model

__all__ = ["Classification", "INSTRUCTION", "MULTI_LABEL_INSTRUCTION", "ANSWER", "CONTENT_FREE"]

#: The default instruction (a user turn of the model's chat format); the text comes after the fixed part.
INSTRUCTION: str = _core.CLASSIFY_INSTRUCTION
#: The default multi-label question: everything from ``{label}`` on is appended per label.
MULTI_LABEL_INSTRUCTION: str = _core.CLASSIFY_MULTI_LABEL_INSTRUCTION
#: The start of the assistant's turn in the default templates; labels (or " yes"/" no") follow it.
ANSWER: str = _core.CLASSIFY_ANSWER
#: The content-free input of ``calibrate=True``.
CONTENT_FREE = ("N/A",)

class Classification(Mapping):
    """The result of :meth:`Model.classify`: a read-only mapping ``{label: probability}`` in the order the
    labels were given, with the best label first in :meth:`as_pipeline`.

    In single-label mode the probabilities sum to 1; in multi-label mode each is P(yes) for that label alone.
    :attr:`logprobs` holds the raw scores (the sum or mean of the label tokens' log-probabilities; in
    multi-label mode the log of P(yes)), before calibration. With a classification head, :attr:`logits` holds the
    head's raw scores of the labels and :attr:`logprobs` the log of their probabilities; otherwise
    :attr:`logits` is None.
    """

    __slots__ = ("text", "labels", "scores", "logprobs", "multi_label", "calibrated", "logits")

    def __init__(self, text: str, labels: Sequence[str], scores: Sequence[float], logprobs: Sequence[float],
                 multi_label: bool = False, calibrated: bool = False,
                 logits: Optional[Sequence[float]] = None) -> None:
        self.text = text
        self.labels: Tuple[str, ...] = tuple(labels)
        self.scores: Tuple[float, ...] = tuple(float(s) for s in scores)
        self.logprobs: Tuple[float, ...] = tuple(float(s) for s in logprobs)
        self.multi_label = multi_label
        self.calibrated = calibrated
        self.logits: Optional[Tuple[float, ...]] = None if logits is None else tuple(float(s) for s in logits)

    def __getitem__(self, label: str) -> float:
        try:
            return self.scores[self.labels.index(label)]
        except ValueError:
            raise KeyError(label) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def label(self) -> str:
        """The most probable label."""
        return self.labels[max(range(len(self.scores)), key=self.scores.__getitem__)]

    @property
    def score(self) -> float:
        """The probability of :attr:`label`."""
        return max(self.scores)

    def as_pipeline(self) -> List[Dict[str, Any]]:
        """The result in the shape of a Hugging Face classification pipeline: ``[{"label": ..., "score": ...}]``,
        best first."""
        order = sorted(range(len(self.labels)), key=lambda i: -self.scores[i])
        return [{"label": self.labels[i], "score": self.scores[i]} for i in order]

    def __repr__(self) -> str:
        items = ", ".join(f"{d['label']!r}: {d['score']:.4f}" for d in self.as_pipeline())
        return f"Classification({{{items}}})"


def _check_labels(labels: Sequence[str]) -> List[str]:
    if isinstance(labels, (str, bytes)):
        raise InvalidArgumentError("labels must be a list of strings, not a single string")
    labels = list(labels)
    if not labels:
        raise InvalidArgumentError("the label list is empty")
    for i, lab in enumerate(labels):
        if not isinstance(lab, str):
            raise InvalidArgumentError(f"label {i} is a {type(lab).__name__}, not a string")
        if not lab.strip():
            raise InvalidArgumentError(f"label {i} is empty")
    if len(set(labels)) != len(labels):
        raise InvalidArgumentError("the labels are not distinct")
    return labels


def _check_text(text: Any, i: Optional[int] = None) -> str:
    where = "the text" if i is None else f"text {i}"
    if not isinstance(text, str):
        raise InvalidArgumentError(f"{where} is a {type(text).__name__}, not a string")
    if not text.strip():
        raise InvalidArgumentError(f"{where} is empty")
    return text


class _Plan:
    """A template and labels; C builds what is scored for each text (``plm_classify_prompt``), so that the Lua
    module and C programs score exactly the same tokens: see :mod:`pocketlm.classify` for the template's rules."""

    def __init__(self, model: "Model", template: Optional[str], labels: List[str], multi_label: bool) -> None:
        if template is not None and not isinstance(template, str):
            raise TypeError("template must be a string")
        self.model = model
        self.template = template
        self.labels = labels
        self.multi_label = multi_label

    def tokens(self, text: str) -> Tuple[array, List[array]]:
        """The prompt's tokens for ``text``, and each label's tokens after it: its continuation, or in
        multi-label mode its suffix."""
        prompt, flat, lens = (_int32s(b) for b in _core.classify_prompt(
            self.model._handle, self.template, text, self.labels, self.multi_label))
        out, i = [], 0
        for n in lens:
            out.append(flat[i:i + n])
            i += n
        return prompt, out


def _int32s(buf: Any) -> array:
    out = array("i")
    out.frombytes(memoryview(buf).cast("B"))
    return out


def _content_free(calibrate: Union[bool, str, Sequence[str]]) -> Tuple[str, ...]:
    if calibrate is True:
        return CONTENT_FREE
    if isinstance(calibrate, str):
        return (calibrate,)
    cf = tuple(calibrate)
    if not cf or not all(isinstance(c, str) and c.strip() for c in cf):
        raise InvalidArgumentError("calibrate must be True, a content-free text, or a list of them")
    return cf


def _apply_calibration(probs: Sequence[float], cf: Sequence[float], multi_label: bool) -> List[float]:
    """p_i / cf_i, renormalized over the labels; in multi-label mode over (yes, no) for each label."""
    tiny = 1e-30
    if multi_label:
        out = []
        for p, c in zip(probs, cf):
            yes = p / max(c, tiny)
            no = (1.0 - p) / max(1.0 - c, tiny)
            out.append(yes / (yes + no) if yes + no > 0 else 0.5)
        return out
    q = [p / max(c, tiny) for p, c in zip(probs, cf)]
    z = sum(q)
    return [x / z for x in q] if z > 0 else [1.0 / len(q)] * len(q)


class _Progress:
    """tqdm when installed; otherwise a line on stderr at most every two seconds and at the end."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled and total > 0
        self.total, self.n, self.desc = total, 0, desc
        self.t0 = self.last = time.monotonic()
        if not self.enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, desc=desc, unit="text")

    def update(self, k: int) -> None:
        if not self.enabled:
            return
        self.n += k
        if self.bar is not None:
            self.bar.update(k)
            return
        now = time.monotonic()
        if now - self.last >= 2.0 or self.n >= self.total:
            self.last = now
            rate = self.n / max(now - self.t0, 1e-9)
            end = "\n" if self.n >= self.total else ""
            sys.stderr.write(f"\r{self.desc}: {self.n}/{self.total} ({rate:.1f} texts/s){end}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and 0 < self.n < self.total:
            sys.stderr.write("\n")


class _Classifier:
    """One classification job: the plan, the C parameters and the calibration, shared by every text."""

    def __init__(self, model: "Model", labels: Sequence[str], template: Optional[str], multi_label: bool,
                 mode: str, calibrate: Union[bool, str, Sequence[str]], context: Optional["Context"]) -> None:
        if mode not in ("sum", "mean"):
            raise InvalidArgumentError(f"mode must be 'sum' or 'mean', not {mode!r}")
        self.model = model
        self.labels = _check_labels(labels)
        self.multi_label = bool(multi_label)
        self.mode = mode
        self.ctx = context if context is not None else model._task_context()
        self.plan = _Plan(model, template, self.labels, self.multi_label)
        self.cf: Optional[List[float]] = None
        if calibrate is not False and calibrate is not None:
            inputs = _content_free(calibrate)
            key = (self.plan.template, tuple(self.labels), self.multi_label, mode, inputs)
            with model._ctx_lock:
                cached = model._calibration.get(key)
            if cached is None:
                rows = [self.raw(t)[1] for t in inputs]
                cached = [sum(col) / len(rows) for col in zip(*rows)]
                with model._ctx_lock:   # a few recent label sets are kept
                    if len(model._calibration) >= 64:
                        model._calibration.pop(next(iter(model._calibration)))
                    model._calibration[key] = cached
            self.cf = cached

    def raw(self, text: str) -> Tuple[List[float], List[float]]:
        prompt, labels = self.plan.tokens(text)
        return self.ctx.classify(prompt, labels, mode=self.mode, multi_label=self.multi_label, keep_cache=True)

    def __call__(self, text: str) -> Classification:
        logprobs, probs = self.raw(text)
        if self.cf is not None:
            probs = _apply_calibration(probs, self.cf, self.multi_label)
        return Classification(text, self.labels, probs, logprobs, self.multi_label, self.cf is not None)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _softmax(z: Sequence[float]) -> List[float]:
    m = max(z)
    e = [math.exp(v - m) for v in z]
    t = sum(e)
    return [v / t for v in e]


class _HeadClassifier:
    """classify() through the model's classification head: one pass per text, no prompt and no label tokens."""

    def __init__(self, model: "Model", labels: Optional[Sequence[str]], multi_label: bool,
                 calibrate: Union[bool, str, Sequence[str]], context: Optional["Context"]) -> None:
        head = model.classifier_labels
        if labels is None:
            self.labels = list(head)
        else:
            self.labels = _check_labels(labels)
            unknown = [lab for lab in self.labels if lab not in head]
            if unknown:
                raise InvalidArgumentError(
                    f"label(s) {', '.join(map(repr, unknown))} are not outputs of the model's classification head "
                    f"({', '.join(map(repr, head))}): pass those labels or a subset of them, labels=None for all, "
                    "or use_head=False for zero-shot classification")
        self.model = model
        self.index = [head.index(lab) for lab in self.labels]
        self.all = self.index == list(range(len(head)))
        # a head of one output is a yes/no judgement: its probability is the sigmoid of its score
        self.multi_label = bool(multi_label) or len(head) == 1
        self.ctx = context if context is not None else model._task_context()
        self.cf: Optional[List[float]] = None
        if calibrate is not False and calibrate is not None:
            rows = [r.scores for r in self.run(list(_content_free(calibrate)))]
            self.cf = [sum(col) / len(rows) for col in zip(*rows)]

    def run(self, texts: List[str]) -> List[Classification]:
        toks = [self.model.tokenize(t) for t in texts]
        scores, probs = self.ctx.classify_head(toks)
        out = []
        for text, z_all, p_all in zip(texts, scores, probs):
            z = [z_all[i] for i in self.index]
            if self.multi_label:
                p = [_sigmoid(v) for v in z]
            else:
                p = [p_all[i] for i in self.index] if self.all else _softmax(z)
            logp = [math.log(v) if v > 0 else -math.inf for v in p]
            if self.cf is not None:
                p = _apply_calibration(p, self.cf, self.multi_label)
            out.append(Classification(text, self.labels, p, logp, self.multi_label, self.cf is not None, logits=z))
        return out


def _use_head(model: "Model", use_head: Optional[bool], template: Optional[str]) -> bool:
    if use_head is None:
        return model.has_classifier_head and template is None
    if use_head and not model.has_classifier_head:
        raise UnsupportedError(f"{model.info.path}: the model has no classification head (no cls.weight or "
                               "cls.output.weight tensor); use zero-shot classification (use_head=False)")
    if use_head and template is not None:
        raise InvalidArgumentError("a template is for zero-shot classification; the classification head takes "
                                   "the text alone")
    return bool(use_head)


def _check_mode(mode: str) -> None:
    if mode not in ("sum", "mean"):
        raise InvalidArgumentError(f"mode must be 'sum' or 'mean', not {mode!r}")


def _zero_shot_labels(model: "Model", labels: Optional[Sequence[str]]) -> Sequence[str]:
    if labels is None:
        why = "" if model.has_classifier_head else " (the model has no classification head to take them from)"
        raise InvalidArgumentError("zero-shot classification needs labels" + why)
    return labels


def classify(model: "Model", text: str, labels: Optional[Sequence[str]] = None, *, template: Optional[str] = None,
             multi_label: bool = False, mode: str = "sum", calibrate: Union[bool, str, Sequence[str]] = False,
             context: Optional["Context"] = None, use_head: Optional[bool] = None) -> Classification:
    text = _check_text(text)
    _check_mode(mode)
    if _use_head(model, use_head, template):
        return _HeadClassifier(model, labels, multi_label, calibrate, context).run([text])[0]
    labels = _zero_shot_labels(model, labels)
    return _Classifier(model, labels, template, multi_label, mode, calibrate, context)(text)


def classify_many(model: "Model", texts: Sequence[str], labels: Optional[Sequence[str]] = None, *,
                  template: Optional[str] = None, multi_label: bool = False, mode: str = "sum",
                  calibrate: Union[bool, str, Sequence[str]] = False, batch_size: int = 32, progress: bool = True,
                  context: Optional["Context"] = None, use_head: Optional[bool] = None) -> List[Classification]:
    if isinstance(texts, str):
        raise InvalidArgumentError("texts must be a list of strings; for one text use classify()")
    texts = list(texts)
    for i, t in enumerate(texts):
        _check_text(t, i)
    if batch_size < 1:
        raise InvalidArgumentError("batch_size must be at least 1")
    _check_mode(mode)
    out: List[Classification] = []
    if _use_head(model, use_head, template):
        head = _HeadClassifier(model, labels, multi_label, calibrate, context)
        bar = _Progress(len(texts), "classify", progress)
        try:
            for i0 in range(0, len(texts), batch_size):
                # one C call per batch: the texts are evaluated several at a time, each its own sequence
                out.extend(head.run(texts[i0:i0 + batch_size]))
                bar.update(min(batch_size, len(texts) - i0))
        finally:
            bar.close()
        return out
    job = _Classifier(model, _zero_shot_labels(model, labels), template, multi_label, mode, calibrate, context)
    bar = _Progress(len(texts), "classify", progress)
    try:
        for i0 in range(0, len(texts), batch_size):
            # One turn on the context per batch: another thread cannot evict the cached instruction mid-batch.
            with job.ctx._using():
                for t in texts[i0:i0 + batch_size]:
                    out.append(job(t))
            bar.update(min(batch_size, len(texts) - i0))
    finally:
        bar.close()
    return out


def _closing_specials(model: "Model") -> list:
    """The special tokens the tokenizer puts after a text ([SEP] for BERT; none for most decoders)."""
    full, bare = list(model.tokenize("a")), list(model.tokenize("a", add_special=False))
    for h in range(len(full) - len(bare) + 1):
        if full[h:h + len(bare)] == bare:
            return full[h + len(bare):]
    return []


def embed(model: "Model", texts: Union[str, Sequence[Any]], *, pooling: str = "mean", normalize: bool = True,
          batch_size: int = 32, progress: bool = False, context: Optional["Context"] = None,
          out: Any = None, truncate: Optional[int] = None) -> Any:
    single = isinstance(texts, str)
    items = [texts] if single else list(texts)
    if batch_size < 1:
        raise InvalidArgumentError("batch_size must be at least 1")
    tail = _closing_specials(model) if truncate is not None else []
    toks = []
    for i, t in enumerate(items):
        if isinstance(t, str):
            _check_text(t, None if single else i)
            tt = model.tokenize(t)
            if truncate is not None and len(tt) > truncate:  # cut the text, keep the closing [SEP]
                tt = list(tt[:truncate - len(tail)]) + tail
            toks.append(tt)
        else:
            if len(t) == 0:
                raise InvalidArgumentError(f"text {i} has no tokens")
            toks.append(t if truncate is None or len(t) <= truncate else list(t[:truncate]))
    ctx = context if context is not None else model._task_context()
    d = model.info.n_embd
    n = len(toks)
    np: Any = None
    try:
        import numpy as np
    except ImportError:
        pass
    rows_out: Any = out
    if rows_out is None:
        rows_out = np.empty((n, d), dtype=np.float32) if np is not None else array("f", bytes(4 * n * d))
    flat = memoryview(rows_out).cast("B").cast("f") if not (np is not None and isinstance(rows_out, np.ndarray)) \
        else rows_out.reshape(-1)
    if len(flat) < n * d:
        raise InvalidArgumentError(f"out holds {len(flat)} floats; {n} texts need {n * d}")
    bar = _Progress(n, "embed", progress)
    try:
        for i0 in range(0, n, batch_size):
            i1 = min(n, i0 + batch_size)
            # a contiguous slice of the output: C writes the rows in place
            ctx.embed(toks[i0:i1], pooling=pooling, normalize=normalize, out=flat[i0 * d:i1 * d])
            bar.update(i1 - i0)
    finally:
        bar.close()
    if out is not None:
        return out
    if np is not None:
        return rows_out[0] if single else rows_out
    rows = [rows_out[i * d:(i + 1) * d] for i in range(n)]
    return rows[0] if single else rows
