"""Every C status becomes an exception of its own class, carrying the C message; bad files never crash."""

import struct

import pytest

import pocketlm


def _s(b: bytes) -> bytes:
    return struct.pack("<Q", len(b)) + b


def _gguf(version=3, n_tensors=0, kvs=(), tail=b""):
    """A GGUF header with string metadata."""
    body = b"".join(_s(k.encode()) + struct.pack("<I", 8) + _s(v.encode()) for k, v in kvs)
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(kvs)) + body + tail


def _truncated_model(model_path, n):
    with open(model_path, "rb") as f:
        return f.read(n)


@pytest.mark.parametrize("name, data, cls, words", [
    ("empty", lambda p: b"", pocketlm.FormatError, "empty"),
    ("bad_magic", lambda p: b"NOTAGGUF" * 8, pocketlm.FormatError, "magic"),
    ("truncated_header", lambda p: _truncated_model(p, 2000), pocketlm.FormatError, "tensors"),
    ("truncated_data", lambda p: _truncated_model(p, 4 << 20), pocketlm.FormatError, ""),
    ("huge_string", lambda p: b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 1 << 60), pocketlm.FormatError, ""),
    ("bad_version", lambda p: _gguf(version=99), pocketlm.UnsupportedError, "version"),
    ("unknown_arch", lambda p: _gguf(kvs=[("general.architecture", "mamba")]), pocketlm.UnsupportedError, "mamba"),
])
def test_malformed_gguf_raises(tmp_path, model_path, name, data, cls, words):
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(data(model_path))
    with pytest.raises(cls) as info:
        pocketlm.Model(path)
    e = info.value
    assert isinstance(e, pocketlm.Error)
    assert e.status == cls.status and e.status_name.startswith("PLM_ERR_")
    assert str(path) in str(e)                 # the C message names the file...
    assert words in str(e)                     # ...and what is wrong with it


def test_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(pocketlm.ModelFileError) as info:
        pocketlm.Model(tmp_path / "nope.gguf")
    assert isinstance(info.value, OSError)
    assert "nope.gguf" in str(info.value)
    with pytest.raises(pocketlm.ModelFileError):
        pocketlm.Model(tmp_path)               # a directory


def test_invalid_arguments_are_valueerrors(model, ctx):
    with pytest.raises(pocketlm.InvalidArgumentError) as info:
        ctx.eval([model.n_vocab])
    assert isinstance(info.value, ValueError)
    assert "outside the vocabulary" in str(info.value)
    assert ctx.n_tokens == 0
    with pytest.raises(pocketlm.InvalidArgumentError):
        model.context(n_batch=-1)
    with pytest.raises(ValueError):
        ctx.eval([])
    with pytest.raises(pocketlm.InvalidArgumentError):
        ctx.logits                              # nothing evaluated yet: no logits
    with pytest.raises(pocketlm.InvalidArgumentError):
        ctx.generate("", max_tokens=1)          # an empty prompt (SmolLM2 adds no BOS)
    with pytest.raises(ValueError):
        model.generate("x", stop=["a\0b"])


def test_context_full_leaves_the_cache_unchanged(model):
    with model.context(n_ctx=16) as c:
        c.eval(list(range(100, 110)))
        with pytest.raises(pocketlm.ContextFullError) as info:
            c.eval(list(range(200, 210)))
        assert "context full" in str(info.value)
        assert c.n_tokens == 10 and list(c.tokens) == list(range(100, 110))
        c.eval([300])                            # still usable
        with pytest.raises(pocketlm.ContextFullError):
            c.generate(list(range(1000, 1020)), max_tokens=1)


def test_generation_stops_when_the_context_fills(model):
    with model.context(n_ctx=32) as c:
        s = c.stream("Once upon a time", max_tokens=0, ignore_eos=True, temperature=0)
        text = "".join(s)
        assert s.stop_reason == "context_full" and text
        assert c.n_tokens <= 32


def test_exception_hierarchy():
    assert issubclass(pocketlm.ModelFileError, OSError)
    assert issubclass(pocketlm.InvalidArgumentError, ValueError)
    assert issubclass(pocketlm.OutOfMemoryError, MemoryError)
    for cls in (pocketlm.FormatError, pocketlm.UnsupportedError, pocketlm.ContextFullError,
                pocketlm.CancelledError, pocketlm.InternalError, pocketlm.ModelFileError):
        assert issubclass(cls, pocketlm.Error)
    statuses = {cls.status for cls in (pocketlm.ModelFileError, pocketlm.FormatError, pocketlm.UnsupportedError,
                                       pocketlm.OutOfMemoryError, pocketlm.InvalidArgumentError,
                                       pocketlm.ContextFullError, pocketlm.CancelledError, pocketlm.InternalError)}
    assert len(statuses) == 8
