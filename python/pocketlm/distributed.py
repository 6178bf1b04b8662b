"""Scale-out: pocketlm's jobs (classify, embed, generate) on Ray Data and Dask, over many processes and machines.

Each worker process loads the model once (memory-mapped, and kept as the file has it, ``repack=False``: worker
processes on one machine share one copy of the weights in the page cache) and runs whole batches of rows through
it. The input is a column of texts; the output
is the same rows with columns appended:

========== ================= ============================================================================
job        appended columns  values
========== ================= ============================================================================
classify   ``label``,        the best label; the probability of every label, in the order of ``labels``
           ``scores``        (or of the classification head's labels)
embed      ``vector``        the pooled embedding, float32, ``n_embd`` values
generate   ``text``          the continuation of the prompt (input column ``prompt``)
========== ================= ============================================================================

Ray Data: callable classes for ``map_batches`` (the model is loaded in ``__init__``, once per actor; any batch
format: numpy dicts, pandas, pyarrow)::

    import ray
    from pocketlm.distributed import RayClassifier
    ds = ray.data.from_items([{"text": t} for t in texts])
    out = ds.map_batches(RayClassifier, fn_constructor_kwargs={"labels": ["billing", "bug", "other"]},
                         compute=ray.data.ActorPoolStrategy(size=4), num_cpus=2, batch_size=64)

Dask: functions for ``map_partitions`` on a DataFrame (pandas partitions) or a Bag (partitions of strings or of
dicts with the text under ``column``); :func:`dask_classify`, :func:`dask_embed` and :func:`dask_generate` call
``map_partitions`` with the right ``meta``::

    import dask.dataframe as dd
    from dask.distributed import Client
    from pocketlm.distributed import dask_embed
    client = Client("scheduler:8786")
    out = dask_embed(dd.read_parquet("corpus/")).compute()

``n_threads`` (the C thread pool of each worker's model) defaults to the CPUs the engine gives the worker: the
actor's ``num_cpus`` on Ray, the worker's ``nthreads`` on Dask (a worker's tasks take turns on its model). The
model file is opened by path on every worker (``model_path=None``: the default model, found on each machine as
:class:`Model` finds it: ``$POCKETLM_MODEL``, else the cache, which ``python -m pocketlm download`` fills), so the
file must be readable at that path on every node. Results do not depend on the thread count or on how rows are batched: they equal
:meth:`Model.classify_many` and :meth:`Model.embed` in one process, value for value.

Importing this module imports neither Ray, Dask nor pandas.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .errors import InvalidArgumentError
from .model import Model

__all__ = ["load_model", "engine_cpus", "RayClassifier", "RayEmbedder", "RayGenerator", "classify_partition",
           "embed_partition", "generate_partition", "dask_classify", "dask_embed", "dask_generate",
           "generate_texts"]

PathLike = Union[str, "os.PathLike[str]", None]

_models: Dict[Tuple[Optional[str], Optional[int], Optional[int]], Model] = {}
_models_lock = threading.Lock()


def engine_cpus() -> Optional[int]:
    """The CPUs the distributed engine gives this process: the Ray task's or actor's ``CPU`` resource (at least 1),
    the Dask worker's ``nthreads``; None outside a worker of either."""
    if "ray" in sys.modules:
        ray = sys.modules["ray"]
        try:
            if ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
                cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
                if cpus:
                    return max(1, int(cpus))
        except Exception:   # an API that changed: fall back to the model's default
            pass
    if "distributed" in sys.modules:
        try:
            return int(sys.modules["distributed"].get_worker().state.nthreads)
        except Exception:   # not inside a Dask worker
            pass
    return None


def load_model(model_path: PathLike = None, *, n_threads: Optional[int] = None,
               n_ctx: Optional[int] = None, repack: bool = False) -> Model:
    """The Model at ``model_path`` (None: the default model), loaded once per process and kept for the next
    batches and tasks. ``n_threads=None``: :func:`engine_cpus`, else the Model's default. ``repack=False`` (unlike
    :class:`~pocketlm.Model`'s default): the weights stay in the file's mapped pages, which every worker process
    of a machine shares, instead of a rearranged private copy per worker (``Model(repack=True)`` decodes about
    20% faster with AVX-512, and takes the repacked weights' size again in each worker). The Model checks the
    arguments."""
    if n_threads is None:
        n_threads = engine_cpus()
    key = (None if model_path is None else os.fspath(model_path), n_threads, n_ctx, bool(repack))
    with _models_lock:
        model = _models.get(key)
        if model is None or model.closed:
            model = _models[key] = Model(key[0], n_threads=n_threads, n_ctx=n_ctx, repack=bool(repack))
        return model


def generate_texts(model: Model, prompts: Sequence[str], **options: Any) -> List[str]:
    """The continuation of each prompt: with the batch generator (``Model.generate_many``) where the Model has
    one, else one :meth:`Model.generate` after another. ``options`` are :meth:`Model.generate`'s."""
    many = getattr(model, "generate_many", None)
    if many is not None:
        return list(many(list(prompts), **options))
    return [model.generate(p, **options) for p in prompts]


# -- jobs: texts in, columns out -------------------------------------------------------------

class _Job:
    """What a worker does with a batch's texts; the output columns, in order."""

    input_column = "text"
    columns: Tuple[str, ...] = ()

    def __init__(self, model_path: PathLike, n_threads: Optional[int], n_ctx: Optional[int],
                 column: Optional[str]) -> None:
        self.model_path, self.n_threads, self.n_ctx = model_path, n_threads, n_ctx
        if column is not None:
            self.input_column = column

    def model(self) -> Model:
        return load_model(self.model_path, n_threads=self.n_threads, n_ctx=self.n_ctx)

    def run(self, texts: List[str]) -> Dict[str, Any]:
        """Column name -> a list (or a 2-D numpy array) with one value per text."""
        raise NotImplementedError


class _Classify(_Job):
    def __init__(self, labels: Optional[Sequence[str]], model_path: PathLike = None, *,
                 n_threads: Optional[int] = None, n_ctx: Optional[int] = None, column: Optional[str] = None,
                 label_column: str = "label", scores_column: str = "scores", **options: Any) -> None:
        super().__init__(model_path, n_threads, n_ctx, column)
        if isinstance(labels, (str, bytes)):
            raise InvalidArgumentError("labels must be a list of strings, not a single string")
        self.labels = None if labels is None else list(labels)
        self.columns = (label_column, scores_column)
        options.setdefault("progress", False)
        self.options = options

    def run(self, texts: List[str]) -> Dict[str, Any]:
        results = self.model().classify_many(texts, self.labels, **self.options)
        return {self.columns[0]: [r.label for r in results], self.columns[1]: [list(r.scores) for r in results]}


class _Embed(_Job):
    def __init__(self, model_path: PathLike = None, *, n_threads: Optional[int] = None, n_ctx: Optional[int] = None,
                 column: Optional[str] = None, vector_column: str = "vector", **options: Any) -> None:
        super().__init__(model_path, n_threads, n_ctx, column)
        self.columns = (vector_column,)
        self.options = options

    def run(self, texts: List[str]) -> Dict[str, Any]:
        import numpy as np

        m = self.model()
        out = np.empty((len(texts), m.info.n_embd), dtype=np.float32)
        if texts:
            m.embed(texts, out=out, **self.options)
        return {self.columns[0]: out}


class _Generate(_Job):
    input_column = "prompt"

    def __init__(self, model_path: PathLike = None, *, n_threads: Optional[int] = None, n_ctx: Optional[int] = None,
                 column: Optional[str] = None, text_column: str = "text", **options: Any) -> None:
        super().__init__(model_path, n_threads, n_ctx, column)
        if text_column == self.input_column:
            raise InvalidArgumentError(f"the output column {text_column!r} would replace the prompts' column")
        self.columns = (text_column,)
        self.options = options

    def run(self, texts: List[str]) -> Dict[str, Any]:
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidArgumentError(f"prompt {i} is a {type(t).__name__}, not a string")
        return {self.columns[0]: generate_texts(self.model(), texts, **self.options)}


# -- batches: numpy dicts, pandas, pyarrow, lists --------------------------------------------

def _is_pyarrow_table(batch: Any) -> bool:
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(batch, pa.Table)


def _is_pandas_frame(batch: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(batch, pd.DataFrame)


def _texts(batch: Any, column: str) -> List[Any]:
    if isinstance(batch, dict):
        values = batch.get(column)
        names = list(batch)
    elif _is_pyarrow_table(batch):
        names = batch.column_names
        values = batch.column(column).to_pylist() if column in names else None
    elif _is_pandas_frame(batch):
        names = list(batch.columns)
        values = batch[column].tolist() if column in names else None
    else:
        raise TypeError(f"a batch must be a dict of arrays, a pandas DataFrame or a pyarrow Table, "
                        f"not {type(batch).__name__}")
    if values is None:
        raise InvalidArgumentError(f"the batch has no column {column!r} (its columns: {', '.join(map(str, names))})")
    return [v.item() if hasattr(v, "item") and not isinstance(v, str) else v for v in values]


def _as_rows(values: Any) -> List[Any]:
    """A column's values one per row: the rows of a 2-D array, else the list itself."""
    return list(values) if getattr(values, "ndim", 1) == 2 else values


def _append(batch: Any, columns: Dict[str, Any]) -> Any:
    """``batch`` with ``columns`` added (or replaced), in the batch's own format."""
    if isinstance(batch, dict):
        import numpy as np

        out = dict(batch)
        for name, values in columns.items():
            out[name] = values if isinstance(values, np.ndarray) else np.asarray(values)
        return out
    if _is_pyarrow_table(batch):
        import pyarrow as pa

        for name, values in columns.items():
            if getattr(values, "ndim", 1) == 2:   # one fixed-size float32 list per row
                arr = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
            else:
                arr = pa.array(values)
            i = batch.column_names.index(name) if name in batch.column_names else -1
            batch = batch.set_column(i, name, arr) if i >= 0 else batch.append_column(name, arr)
        return batch
    import pandas as pd

    out = batch.copy(deep=False)
    for name, values in columns.items():   # objects (strings, lists, arrays), as the Dask meta says
        out[name] = pd.Series(_as_rows(values), index=out.index, dtype=object)
    return out


class _RayBatches:
    """A callable for Ray Data's ``map_batches``: the job, its model loaded when the actor starts."""

    def __init__(self, job: _Job) -> None:
        self.job = job
        self.model = job.model()

    def __call__(self, batch: Any) -> Any:
        return _append(batch, self.job.run(_texts(batch, self.job.input_column)))


class RayClassifier(_RayBatches):
    """Classifies the ``column`` of each batch, for Ray Data's ``map_batches``; appends ``label`` and ``scores``.

    ``labels``: the zero-shot labels, or None for a classification head's. The other keyword arguments are
    :meth:`Model.classify_many`'s (``template``, ``multi_label``, ``mode``, ``calibrate``, ``use_head``...), passed
    through ``fn_constructor_kwargs``::

        ds.map_batches(RayClassifier, fn_constructor_kwargs={"labels": ["spam", "ham"]}, concurrency=2,
                       num_cpus=1, batch_size=64)

    ``model_path``: a GGUF file every node can read (None: the default model); ``n_threads``: default the actor's
    ``num_cpus``.
    """

    def __init__(self, labels: Optional[Sequence[str]] = None, *, model_path: PathLike = None,
                 n_threads: Optional[int] = None, n_ctx: Optional[int] = None, column: str = "text",
                 label_column: str = "label", scores_column: str = "scores", **options: Any) -> None:
        super().__init__(_Classify(labels, model_path, n_threads=n_threads, n_ctx=n_ctx, column=column,
                                   label_column=label_column, scores_column=scores_column, **options))


class RayEmbedder(_RayBatches):
    """Embeds the ``column`` of each batch, for Ray Data's ``map_batches``; appends ``vector`` (float32,
    ``n_embd`` per row). Other keyword arguments are :meth:`Model.embed`'s (``pooling``, ``normalize``,
    ``batch_size``)."""

    def __init__(self, *, model_path: PathLike = None, n_threads: Optional[int] = None, n_ctx: Optional[int] = None,
                 column: str = "text", vector_column: str = "vector", **options: Any) -> None:
        super().__init__(_Embed(model_path, n_threads=n_threads, n_ctx=n_ctx, column=column,
                                vector_column=vector_column, **options))


class RayGenerator(_RayBatches):
    """Continues the prompts in ``column`` (default ``prompt``) of each batch, for Ray Data's ``map_batches``;
    appends ``text``. Other keyword arguments are :meth:`Model.generate`'s (``max_tokens``, ``temperature``,
    ``seed``, ``stop``...): pass ``temperature=0`` or a ``seed`` for results that a retried batch repeats."""

    def __init__(self, *, model_path: PathLike = None, n_threads: Optional[int] = None, n_ctx: Optional[int] = None,
                 column: str = "prompt", text_column: str = "text", **options: Any) -> None:
        super().__init__(_Generate(model_path, n_threads=n_threads, n_ctx=n_ctx, column=column,
                                   text_column=text_column, **options))


# -- Dask: partitions ----------------------------------------------------------------------

def _partition(part: Any, job: _Job) -> Any:
    """A pandas partition with the job's columns appended, or for a Bag a list of dicts (a string item becomes
    ``{column: item}``)."""
    if _is_pandas_frame(part):
        return _append(part, job.run(_texts(part, job.input_column)))
    col = job.input_column
    rows = [dict(item) if isinstance(item, dict) else {col: item} for item in part]
    for i, row in enumerate(rows):
        if col not in row:
            raise InvalidArgumentError(f"item {i} of the partition has no key {col!r}")
    columns = job.run([row[col] for row in rows])
    for name, values in columns.items():
        for row, v in zip(rows, _as_rows(values)):
            row[name] = v
    return rows


def classify_partition(part: Any, labels: Optional[Sequence[str]] = None, *, model_path: PathLike = None,
                       n_threads: Optional[int] = None, n_ctx: Optional[int] = None, column: str = "text",
                       label_column: str = "label", scores_column: str = "scores", **options: Any) -> Any:
    """Classifies one Dask partition (a pandas DataFrame, or a Bag partition of strings or dicts); appends
    ``label`` and ``scores``. Arguments as :class:`RayClassifier`; the model is cached in the worker process,
    ``n_threads`` defaults to the worker's ``nthreads``."""
    return _partition(part, _Classify(labels, model_path, n_threads=n_threads, n_ctx=n_ctx, column=column,
                                      label_column=label_column, scores_column=scores_column, **options))


def embed_partition(part: Any, *, model_path: PathLike = None, n_threads: Optional[int] = None,
                    n_ctx: Optional[int] = None, column: str = "text", vector_column: str = "vector",
                    **options: Any) -> Any:
    """Embeds one Dask partition; appends ``vector``. Arguments as :class:`RayEmbedder`."""
    return _partition(part, _Embed(model_path, n_threads=n_threads, n_ctx=n_ctx, column=column,
                                   vector_column=vector_column, **options))


def generate_partition(part: Any, *, model_path: PathLike = None, n_threads: Optional[int] = None,
                       n_ctx: Optional[int] = None, column: str = "prompt", text_column: str = "text",
                       **options: Any) -> Any:
    """Continues the prompts of one Dask partition; appends ``text``. Arguments as :class:`RayGenerator`."""
    return _partition(part, _Generate(model_path, n_threads=n_threads, n_ctx=n_ctx, column=column,
                                      text_column=text_column, **options))


def _dask_map(collection: Any, fn: Any, columns: Sequence[str], **kwargs: Any) -> Any:
    """``collection.map_partitions(fn, **kwargs)``; for a DataFrame with its meta (the new columns hold objects),
    so that Dask does not run the model on made-up rows to guess it."""
    meta = getattr(collection, "_meta", None)
    if not _is_pandas_frame(meta):
        return collection.map_partitions(fn, **kwargs)
    import pandas as pd

    meta = meta.copy(deep=False)
    for name in columns:
        meta[name] = pd.Series([], dtype=object, index=meta.index)
    return collection.map_partitions(fn, meta=meta, **kwargs)


def dask_classify(collection: Any, labels: Optional[Sequence[str]] = None, **kwargs: Any) -> Any:
    """``collection.map_partitions(classify_partition, labels, ...)`` for a Dask DataFrame or Bag."""
    cols = (kwargs.get("label_column", "label"), kwargs.get("scores_column", "scores"))
    return _dask_map(collection, classify_partition, cols, labels=labels, **kwargs)


def dask_embed(collection: Any, **kwargs: Any) -> Any:
    """``collection.map_partitions(embed_partition, ...)`` for a Dask DataFrame or Bag."""
    return _dask_map(collection, embed_partition, (kwargs.get("vector_column", "vector"),), **kwargs)


def dask_generate(collection: Any, **kwargs: Any) -> Any:
    """``collection.map_partitions(generate_partition, ...)`` for a Dask DataFrame or Bag."""
    return _dask_map(collection, generate_partition, (kwargs.get("text_column", "text"),), **kwargs)
