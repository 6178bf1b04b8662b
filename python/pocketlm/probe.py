"""LinearProbe: a few-shot classifier trained on a model's pooled embeddings, in numpy.

A handful of labeled examples per class is often enough for a linear classifier
on top of a language model's hidden states. :class:`LinearProbe` embeds the
texts with :meth:`Model.embed`, standardizes the features, and fits an
L2-regularized multinomial logistic regression by L-BFGS (numpy only; no
scikit-learn)::

    >>> import pocketlm
    >>> model = pocketlm.Model()
    >>> probe = pocketlm.LinearProbe.fit(model, ["I love it", "great, thanks", "this is awful", "I hate it"],
    ...                                  ["pos", "pos", "neg", "neg"])
    >>> probe.predict(["what a wonderful day", "terrible service"])
    ['pos', 'neg']

``save(path)`` writes the weights and settings to ``.npz`` (or ``.json``);
``LinearProbe.load(path, model)`` reads them back.
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any, Dict, Hashable, List, Optional, Sequence, Tuple, Union

from ._args import float_arg, int_arg
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .model import Model

__all__ = ["LinearProbe"]

_FORMAT = "pocketlm.LinearProbe"
_VERSION = 1


def _np() -> Any:
    try:
        import numpy
    except ImportError:
        raise ImportError("pocketlm.LinearProbe needs numpy: pip install numpy") from None
    return numpy


def _check_fit(l2: Any, max_iter: Any, tol: Any) -> Tuple[Optional[float], int, float]:
    return (float_arg("l2", l2, 0.0, none=True), int_arg("max_iter", max_iter, 1),
            float_arg("tol", tol, 0.0))


def _softmax(z: Any) -> Any:
    np = _np()
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _lbfgs(fun: Any, x0: Any, max_iter: int, tol: float, m: int = 10) -> Any:
    """Minimizes a smooth convex ``fun(x) -> (value, gradient)`` by L-BFGS with a backtracking (Armijo) line
    search. Stops when the gradient's largest component is below ``tol`` or after ``max_iter`` iterations."""
    np = _np()
    x = x0.copy()
    f, g = fun(x)
    s_hist: List[Any] = []
    y_hist: List[Any] = []
    for _ in range(max_iter):
        if np.max(np.abs(g)) < tol:
            break
        # two-loop recursion: d = -H g
        q = g.copy()
        alphas = []
        for s, y in zip(reversed(s_hist), reversed(y_hist)):
            a = s.dot(q) / y.dot(s)
            alphas.append(a)
            q -= a * y
        if s_hist:
            q *= s_hist[-1].dot(y_hist[-1]) / y_hist[-1].dot(y_hist[-1])
        for (s, y), a in zip(zip(s_hist, y_hist), reversed(alphas)):
            q += (a - y.dot(q) / y.dot(s)) * s
        d = -q
        slope = g.dot(d)
        if slope >= 0:   # not a descent direction: restart from the gradient
            s_hist.clear()
            y_hist.clear()
            d, slope = -g, -g.dot(g)
        step = 1.0 if s_hist else min(1.0, 1.0 / max(np.sqrt(g.dot(g)), 1e-12))
        while True:
            x_new = x + step * d
            f_new, g_new = fun(x_new)
            if f_new <= f + 1e-4 * step * slope or step < 1e-12:
                break
            step *= 0.5
        s, y = x_new - x, g_new - g
        x, f_old, f, g = x_new, f, f_new, g_new
        if y.dot(s) > 1e-12:
            s_hist.append(s)
            y_hist.append(y)
            if len(s_hist) > m:
                s_hist.pop(0)
                y_hist.pop(0)
        if abs(f_old - f) <= 1e-12 * max(1.0, abs(f)):
            break
    return x


class LinearProbe:
    """A linear classifier over pooled embeddings: ``P(class | text) = softmax(W z + b)``, where ``z`` is the
    text's embedding standardized with the training set's mean and spread.

    Make one with :meth:`fit` (texts) or :meth:`fit_embeddings` (precomputed embeddings), or :meth:`load` one.
    ``classes`` lists the labels in the order of the probability columns.
    """

    def __init__(self, classes: Sequence[Hashable], weights: Any, bias: Any, mean: Any, scale: Any, *,
                 pooling: str = "mean", normalize: bool = True, l2: float = 0.0,
                 model: Optional["Model"] = None, model_info: Optional[Dict[str, Any]] = None) -> None:
        np = _np()
        self.classes: List[Hashable] = list(classes)
        self.weights = np.asarray(weights, dtype=np.float64)   # (n_classes, n_embd)
        self.bias = np.asarray(bias, dtype=np.float64)         # (n_classes,)
        self.mean = np.asarray(mean, dtype=np.float64)         # (n_embd,)
        self.scale = np.asarray(scale, dtype=np.float64)       # (n_embd,)
        k, d = self.weights.shape
        if k != len(self.classes) or self.bias.shape != (k,) or self.mean.shape != (d,) or self.scale.shape != (d,):
            raise InvalidArgumentError("LinearProbe: the shapes of the classes, weights, bias and scaling disagree")
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.l2 = float(l2)
        self.model = model
        self.model_info = dict(model_info or (_describe(model) if model is not None else {}))

    # -- training -------------------------------------------------------------------------------

    @classmethod
    def fit(cls, model: "Model", texts: Sequence[str], labels: Sequence[Hashable], *, pooling: str = "mean",
            normalize: bool = True, l2: Optional[float] = None, max_iter: int = 500, tol: float = 1e-5,
            batch_size: int = 32, progress: bool = False) -> "LinearProbe":
        """Embeds ``texts`` with ``model`` (``pooling``, ``normalize`` as in :meth:`Model.embed`) and fits a
        classifier to ``labels`` (any hashable values, one per text). ``l2`` is the weight of the penalty
        ``l2/2 * |W|^2`` added to the mean cross-entropy (default ``1/n``, as scikit-learn's ``C=1``)."""
        _check_fit(l2, max_iter, tol)
        texts = list(texts)
        labels = list(labels)
        if len(texts) != len(labels):
            raise InvalidArgumentError(f"{len(texts)} texts but {len(labels)} labels")
        x = model.embed(texts, pooling=pooling, normalize=normalize, batch_size=batch_size, progress=progress)
        return cls.fit_embeddings(x, labels, l2=l2, max_iter=max_iter, tol=tol, pooling=pooling,
                                  normalize=normalize, model=model)

    @classmethod
    def fit_embeddings(cls, x: Any, labels: Sequence[Hashable], *, l2: Optional[float] = None, max_iter: int = 500,
                       tol: float = 1e-5, pooling: str = "mean", normalize: bool = True,
                       model: Optional["Model"] = None) -> "LinearProbe":
        """Fits on embeddings already computed (``x``: shape ``(n, n_embd)``) and their ``labels``; ``pooling``
        and ``normalize`` record how ``x`` was made, for :meth:`predict` on texts."""
        l2, max_iter, tol = _check_fit(l2, max_iter, tol)
        np = _np()
        x = np.asarray(x, dtype=np.float64)
        labels = list(labels)
        if x.ndim != 2 or x.shape[0] != len(labels):
            raise InvalidArgumentError(f"expected embeddings of shape (n, d) for {len(labels)} labels, got {x.shape}")
        if len(labels) == 0:
            raise InvalidArgumentError("no training examples")
        try:
            classes = sorted(set(labels))
        except TypeError:
            classes = list(dict.fromkeys(labels))
        if len(classes) < 2:
            raise InvalidArgumentError("a classifier needs at least two classes")
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[v] for v in labels])
        n, d = x.shape
        k = len(classes)
        lam = 1.0 / n if l2 is None else float(l2)
        if lam < 0 or not math.isfinite(lam):
            raise InvalidArgumentError("l2 must be a finite number >= 0")
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-8] = 1.0
        z = (x - mean) / scale
        onehot = np.zeros((n, k))
        onehot[np.arange(n), y] = 1.0

        def loss(theta: Any) -> Any:
            w = theta[:k * d].reshape(k, d)
            b = theta[k * d:]
            logits = z @ w.T + b
            logits -= logits.max(axis=1, keepdims=True)
            logz = np.log(np.exp(logits).sum(axis=1))
            f = float(np.mean(logz - logits[np.arange(n), y])) + 0.5 * lam * float(np.sum(w * w))
            p = np.exp(logits - logz[:, None])
            r = (p - onehot) / n
            gw = r.T @ z + lam * w
            gb = r.sum(axis=0)
            return f, np.concatenate([gw.ravel(), gb])

        theta = _lbfgs(loss, np.zeros(k * d + k), max_iter=max_iter, tol=tol)
        return cls(classes, theta[:k * d].reshape(k, d), theta[k * d:], mean, scale, pooling=pooling,
                   normalize=normalize, l2=lam, model=model)

    # -- prediction -----------------------------------------------------------------------------

    def _features(self, data: Any) -> Any:
        np = _np()
        if isinstance(data, np.ndarray) and data.ndim == 2:
            x = data
        else:
            if isinstance(data, str):
                raise InvalidArgumentError("expected a list of texts (or an array of embeddings), not one string")
            if self.model is None:
                raise InvalidArgumentError("this LinearProbe has no model to embed texts with: pass model= to "
                                           "LinearProbe.load, or give embeddings")
            x = self.model.embed(list(data), pooling=self.pooling, normalize=self.normalize)
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise InvalidArgumentError(f"expected embeddings with {self.mean.shape[0]} columns, got shape {x.shape}")
        return (x - self.mean) / self.scale

    def decision_function(self, data: Any) -> Any:
        """The logits ``W z + b`` (shape ``(n, n_classes)``) for texts or embeddings."""
        return self._features(data) @ self.weights.T + self.bias

    def predict_proba(self, data: Any) -> Any:
        """Class probabilities, shape ``(n, n_classes)`` (columns in the order of :attr:`classes`), for a list
        of texts or an array of embeddings."""
        return _softmax(self.decision_function(data))

    def predict(self, data: Any) -> List[Hashable]:
        """The most probable class of each text (or embedding row)."""
        return [self.classes[i] for i in self.decision_function(data).argmax(axis=1)]

    def score(self, data: Any, labels: Sequence[Hashable]) -> float:
        """Accuracy on texts (or embeddings) and their true labels."""
        pred = self.predict(data)
        labels = list(labels)
        if len(pred) != len(labels):
            raise InvalidArgumentError(f"{len(pred)} items but {len(labels)} labels")
        return sum(p == t for p, t in zip(pred, labels)) / max(len(labels), 1)

    # -- files ----------------------------------------------------------------------------------

    def _meta(self) -> Dict[str, Any]:
        return {"format": _FORMAT, "version": _VERSION, "classes": self.classes, "pooling": self.pooling,
                "normalize": self.normalize, "l2": self.l2, "model": self.model_info}

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes the probe to ``path``: a numpy ``.npz`` archive, or JSON if the name ends with ``.json``.
        The classes must be JSON values (strings, numbers, booleans)."""
        np = _np()
        path = os.fspath(path)
        try:
            meta = json.dumps(self._meta())
        except TypeError as e:
            raise InvalidArgumentError(f"LinearProbe.save: the classes must be JSON values ({e})") from None
        if path.endswith(".json"):
            doc = dict(json.loads(meta), weights=self.weights.tolist(), bias=self.bias.tolist(),
                       mean=self.mean.tolist(), scale=self.scale.tolist())
            with open(path, "w", encoding="utf-8") as f:
                json.dump(doc, f)
            return
        with open(path, "wb") as f:   # a file object: numpy would append ".npz" to a name without it
            np.savez(f, meta=np.array(meta), weights=self.weights, bias=self.bias, mean=self.mean, scale=self.scale)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"], model: Optional["Model"] = None) -> "LinearProbe":
        """Reads a probe written by :meth:`save`. ``model`` (the one it was trained with) is needed to
        classify texts; without it, :meth:`predict` takes embeddings."""
        np = _np()
        path = os.fspath(path)
        with open(path, "rb") as f:
            zipped = f.read(2) == b"PK"
        if zipped:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in ("weights", "bias", "mean", "scale")}
        else:
            with open(path, encoding="utf-8") as f:
                meta = json.load(f)
            arrays = {k: np.asarray(meta[k], dtype=np.float64) for k in ("weights", "bias", "mean", "scale")}
        if meta.get("format") != _FORMAT:
            raise InvalidArgumentError(f"{path} is not a saved pocketlm.LinearProbe")
        if meta.get("version", 0) > _VERSION:
            raise InvalidArgumentError(f"{path} was saved by a newer pocketlm (format version {meta['version']})")
        info = meta.get("model") or {}
        if model is not None and info.get("n_embd") not in (None, model.info.n_embd):
            raise InvalidArgumentError(f"{path} was trained on embeddings of size {info['n_embd']}; this model's "
                                       f"are of size {model.info.n_embd}")
        return cls(meta["classes"], arrays["weights"], arrays["bias"], arrays["mean"], arrays["scale"],
                   pooling=meta.get("pooling", "mean"), normalize=meta.get("normalize", True),
                   l2=meta.get("l2", 0.0), model=model, model_info=info)

    def __repr__(self) -> str:
        return (f"<pocketlm.LinearProbe {len(self.classes)} classes over {self.mean.shape[0]} features, "
                f"pooling={self.pooling!r}>")


def _describe(model: "Model") -> Dict[str, Any]:
    i = model.info
    return {"name": i.name, "arch": i.arch, "file_type": i.file_type, "n_embd": i.n_embd}
