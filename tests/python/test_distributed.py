"""pocketlm.distributed on real local clusters: Ray Data (two actor processes) and Dask (two worker processes).

The results must equal, value for value, what Model.classify_many and Model.embed give in this process; a worker
killed with SIGKILL in the middle of a job must cost neither a row nor a duplicate. The tests skip (saying so) only
when Ray or Dask is not installed: `pip install "pocketlm[ray,dask]"`.
"""

import importlib.util
import os
import re
import signal
import subprocess
import sys

import pytest

import pocketlm
import pocketlm.distributed as pdist

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LABELS = ["billing", "technical problem", "shipping"]
_WHO = ["My", "Our", "The", "A customer's", "This"]
_WHAT = ["invoice", "laptop", "parcel", "refund", "router", "password", "delivery", "card", "app", "order"]
_HOW = ["is wrong", "will not start", "never arrived", "was charged twice", "keeps crashing", "is late",
        "got lost", "shows an error", "was damaged", "needs a change"]
#: 500 distinct short support tickets.
TEXTS = [f"{w} {x} {h} (#{i})" for i, (w, x, h) in
         enumerate((w, x, h) for w in _WHO for x in _WHAT for h in _HOW)]
N_EMBED = 200


def _import_or_skip(name):
    return pytest.importorskip(name, reason=f"{name} is not installed (pip install 'pocketlm[ray,dask]')")


@pytest.fixture(scope="module")
def expected_classes(model):
    return model.classify_many(TEXTS, LABELS, progress=False)


@pytest.fixture(scope="module")
def expected_vectors(model):
    return model.embed(TEXTS[:N_EMBED])


def _send_by_value():
    """Functions and classes of this module travel to the workers by value (the workers cannot import it)."""
    import cloudpickle   # Ray and Dask both depend on it

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def ray_cluster():
    ray = _import_or_skip("ray")
    _import_or_skip("ray.data")
    _send_by_value()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 << 20, log_to_driver=False,
             configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def dask_client():
    _import_or_skip("dask.dataframe")
    distributed = _import_or_skip("distributed")
    _send_by_value()
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _actors(ray, n):
    return ray.data.ActorPoolStrategy(size=n)


def _check_classes(rows, expected):
    """rows: (id, label, scores) in any order; each id exactly once, each result exactly the expected one."""
    ids = sorted(r[0] for r in rows)
    assert ids == list(range(len(expected)))
    for i, label, scores in rows:
        assert label == expected[i].label, i
        assert list(scores) == list(expected[i].scores), i


class _Traced(pdist.RayClassifier):
    """RayClassifier that appends the actor's pid and thread count, and kills its own process (SIGKILL) on its
    second batch if it is the first actor to get there and a ``kill_marker`` path is given."""

    def __init__(self, labels, kill_marker=None, **kwargs):
        super().__init__(labels, **kwargs)
        self.kill_marker = kill_marker
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        if self.kill_marker and self.calls == 2:
            try:
                fd = os.open(self.kill_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        import numpy as np

        out = super().__call__(batch)
        out["pid"] = np.full(len(out["label"]), os.getpid())
        out["n_threads"] = np.full(len(out["label"]), self.model.n_threads)
        return out


def test_importing_pocketlm_imports_no_engine():
    code = ("import sys, pocketlm, pocketlm.distributed; "
            "print(sorted(m for m in ('ray', 'dask', 'distributed', 'pandas', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bad_input_is_named(model_path):
    pd = _import_or_skip("pandas")

    with pytest.raises(pocketlm.InvalidArgumentError, match="no column 'text'.*its columns: body"):
        pdist.classify_partition(pd.DataFrame({"body": ["hello"]}), LABELS, model_path=model_path, n_threads=1)
    with pytest.raises(pocketlm.InvalidArgumentError, match="a single string"):
        pdist.classify_partition([], "spam", model_path=model_path)
    with pytest.raises(pocketlm.InvalidArgumentError, match="text 1 is a NoneType"):
        pdist.classify_partition(["fine", None], LABELS, model_path=model_path, n_threads=1)
    with pytest.raises(TypeError, match="not set"):
        pdist.RayEmbedder(model_path=model_path, n_threads=1)({"text", "x"})


def test_ray_classify_equals_classify_many(ray_cluster, model_path, expected_classes):
    ds = ray_cluster.data.from_items([{"id": i, "text": t} for i, t in enumerate(TEXTS)])
    out = ds.map_batches(_Traced, fn_constructor_kwargs={"labels": LABELS, "model_path": model_path},
                         compute=_actors(ray_cluster, 2), num_cpus=1, batch_size=25, batch_format="pandas").take_all()
    _check_classes([(r["id"], r["label"], r["scores"]) for r in out], expected_classes)
    assert all(r["text"] == TEXTS[r["id"]] for r in out)
    # two actor processes (more if Ray restarted one: its memory monitor may, on a loaded machine)
    assert len({r["pid"] for r in out}) >= 2
    assert {r["n_threads"] for r in out} == {1}, "n_threads follows the actor's num_cpus"


def test_ray_embed_equals_embed(ray_cluster, model_path, expected_vectors):
    import numpy as np

    ds = ray_cluster.data.from_items([{"id": i, "text": t} for i, t in enumerate(TEXTS[:N_EMBED])])
    out = ds.map_batches(pdist.RayEmbedder, fn_constructor_kwargs={"model_path": model_path},
                         compute=_actors(ray_cluster, 2), num_cpus=1, batch_size=20, batch_format="pyarrow").take_all()
    assert sorted(r["id"] for r in out) == list(range(N_EMBED))
    # rows come back as lists of Python floats: exact images of the float32 values
    got = np.array([r["vector"] for r in sorted(out, key=lambda r: r["id"])], dtype=np.float64)
    assert got.shape == expected_vectors.shape
    np.testing.assert_array_equal(got, expected_vectors.astype(np.float64))


def test_ray_killed_actor_loses_and_duplicates_nothing(ray_cluster, model_path, expected_classes, tmp_path):
    n = 80
    marker = str(tmp_path / "killed")
    ds = ray_cluster.data.from_items([{"id": i, "text": t} for i, t in enumerate(TEXTS[:n])])
    out = ds.map_batches(_Traced, fn_constructor_kwargs={"labels": LABELS, "model_path": model_path,
                                                         "kill_marker": marker},
                         compute=_actors(ray_cluster, 2), num_cpus=1,
                         batch_size=10).take_all()   # Ray Data restarts its actors by default (max_restarts=-1)
    killed = int(open(marker).read())
    _check_classes([(r["id"], r["label"], r["scores"]) for r in out], expected_classes[:n])
    # the killed process had returned its first batch; a restarted actor (a third process) took over
    assert len({r["pid"] for r in out} - {killed}) >= 2


def test_dask_dataframe_classify_equals_classify_many(dask_client, model_path, expected_classes):
    import dask.dataframe as dd
    import pandas as pd

    df = dd.from_pandas(pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS}), npartitions=10)
    out = pdist.dask_classify(df, LABELS, model_path=model_path).compute()
    _check_classes(list(zip(out["id"], out["label"], out["scores"])), expected_classes)
    assert list(out["text"]) == [TEXTS[i] for i in out["id"]]
    threads = [dask_client.submit(lambda: (os.getpid(), pdist.load_model(model_path).n_threads), workers=[w],
                                  pure=False).result() for w in dask_client.scheduler_info()["workers"]]
    assert len({pid for pid, _ in threads}) == 2
    assert [n for _, n in threads] == [1, 1], "n_threads follows the worker's nthreads"


def test_dask_bag_embed_equals_embed(dask_client, model_path, expected_vectors):
    import dask.bag as db
    import numpy as np

    bag = db.from_sequence(TEXTS[:N_EMBED], npartitions=8)
    out = pdist.dask_embed(bag, model_path=model_path).compute()
    assert [r["text"] for r in out] == TEXTS[:N_EMBED]
    np.testing.assert_array_equal(np.stack([r["vector"] for r in out]), expected_vectors)


def _classify_or_die(part, marker, **kwargs):
    """classify_partition, but the first task to get here kills its worker process (SIGKILL) first."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return pdist.classify_partition(part, **kwargs)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def test_dask_killed_worker_loses_and_duplicates_nothing(dask_client, model_path, expected_classes, tmp_path):
    import dask.dataframe as dd
    import pandas as pd

    n = 80
    marker = str(tmp_path / "killed")
    df = dd.from_pandas(pd.DataFrame({"id": range(n), "text": TEXTS[:n]}), npartitions=6)
    meta = pdist.dask_classify(df, LABELS)._meta
    out = df.map_partitions(_classify_or_die, marker, labels=LABELS, model_path=model_path, meta=meta).compute()
    assert os.path.exists(marker), "a worker was killed"
    _check_classes(list(zip(out["id"], out["label"], out["scores"])), expected_classes[:n])


def _load_example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ray_classify_example(ray_cluster, model):
    """The example, run as a user would against a running cluster (this module's, by its address)."""
    ex = _load_example("ray_classify")
    address = ray_cluster.get_runtime_context().gcs_address
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "ray_classify.py"), "--address", address,
                        "--workers", "2"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = re.findall(r"^\[\s*(.+?) (\d\.\d\d)\] (.*)$", r.stdout, re.M)
    expected = model.classify_many(ex.SAMPLE_TICKETS, ex.LABELS, progress=False)
    assert rows == [(e.label, f"{e.score:.2f}", t) for e, t in zip(expected, ex.SAMPLE_TICKETS)]
    assert re.search(r"classified 8 texts on 2 Ray workers x 1 threads in [\d.]+ s", r.stdout)


def test_dask_embed_example(dask_client, model):
    """The example as a user runs it first: it starts its own local cluster (under its __main__ guard)."""
    import numpy as np

    ex = _load_example("dask_embed")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "dask_embed.py")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    sims = model.embed(ex.SAMPLE_CORPUS) @ model.embed("I want a refund")
    best = [f"  {sims[i]:.3f}  {ex.SAMPLE_CORPUS[i]}" for i in np.argsort(-sims, kind="stable")[:3]]
    assert r.stdout.splitlines()[-4:] == ["nearest to 'I want a refund':"] + best
    assert re.search(r"embedded 10 texts \(576 dimensions\) on 2 Dask workers", r.stdout)


PROMPTS = ["The capital of France is", "Water boils at", "One, two, three,", "The opposite of hot is"]


def test_generate_texts_takes_the_batch_generator_when_there_is_one(model):
    class Batched:
        def __init__(self):
            self.calls = []

        def generate_many(self, prompts, **kw):
            self.calls.append((prompts, kw))
            return [p.upper() for p in prompts]

    b = Batched()
    assert pdist.generate_texts(b, ("a", "b"), max_tokens=3) == ["A", "B"]
    assert b.calls == [(["a", "b"], {"max_tokens": 3})]
    if not hasattr(model, "generate_many"):   # one generate() per prompt meanwhile
        assert pdist.generate_texts(model, PROMPTS[:2], max_tokens=4, temperature=0) == \
            [model.generate(p, max_tokens=4, temperature=0) for p in PROMPTS[:2]]


def test_ray_generate(ray_cluster, model_path, model):
    ds = ray_cluster.data.from_items([{"prompt": p} for p in PROMPTS])
    out = ds.map_batches(pdist.RayGenerator, fn_constructor_kwargs={"model_path": model_path, "max_tokens": 8,
                                                                     "temperature": 0},
                         compute=_actors(ray_cluster, 2), num_cpus=1, batch_size=2).take_all()
    got = {r["prompt"]: r["text"] for r in out}
    assert len(out) == len(PROMPTS)
    assert got == {p: model.generate(p, max_tokens=8, temperature=0) for p in PROMPTS}


def test_dask_generate(dask_client, model_path, model):
    import dask.bag as db

    out = pdist.dask_generate(db.from_sequence([{"prompt": p, "n": i} for i, p in enumerate(PROMPTS)],
                                               npartitions=2),
                              model_path=model_path, max_tokens=8, temperature=0).compute()
    assert out == [{"prompt": p, "n": i, "text": model.generate(p, max_tokens=8, temperature=0)}
                   for i, p in enumerate(PROMPTS)]
