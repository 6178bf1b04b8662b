"""python -m pocketlm.convert --lora: a PEFT directory to a GGUF adapter in llama.cpp's layout.

tests/data/tiny/llama_lora.gguf was converted from PEFT's own save_pretrained output and checked against transformers
+ PEFT (tools/make_tiny_lora.py, tests/c/test_lora.c). Here its matrices are written back as a PEFT directory
(lora_B of q and k with the RoPE row permutation undone, as PEFT holds them) and converted again: the result must
be the same tensors, and bad directories must be refused naming the problem.
"""
import json
import os
import struct

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from pocketlm.convert import ConvertError, convert_lora  # noqa: E402
from pocketlm.convert.__main__ import main as convert_main  # noqa: E402

TINY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "tiny")
BASE = os.path.join(TINY, "llama.gguf")
FIXTURE = os.path.join(TINY, "llama_lora.gguf")
N_HEAD, N_HEAD_KV = 4, 2
MODULES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
           "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
           "ffn_down": "mlp.down_proj"}


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def fixture_tensors():
    r = gguf.GGUFReader(FIXTURE)
    alpha = float(r.fields["adapter.lora.alpha"].contents())
    return alpha, {t.name: np.array(t.data, dtype=np.float32) for t in r.tensors}


def write_peft(d, tensors, config):
    """A PEFT adapter directory: adapter_config.json and adapter_model.safetensors (F32)."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(config, f)
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    with open(os.path.join(d, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def peft_from_fixture():
    alpha, t = fixture_tensors()
    out = {}
    for name, arr in t.items():
        _, il, what, _, ab = name.split(".")
        if ab == "lora_b" and what == "attn_q":
            arr = unpermute(arr, N_HEAD)
        elif ab == "lora_b" and what == "attn_k":
            arr = unpermute(arr, N_HEAD_KV)
        key = f"base_model.model.model.layers.{il}.{MODULES[what]}.lora_{'A' if ab == 'lora_a' else 'B'}.weight"
        out[key] = arr
    return alpha, t, out


def test_peft_directory_converts_to_the_checked_fixture(tmp_path):
    alpha, want, peft = peft_from_fixture()
    d = str(tmp_path / "adapter")
    write_peft(d, peft, {"peft_type": "LORA", "r": 4, "lora_alpha": alpha,
                         "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]})
    out = str(tmp_path / "out.gguf")
    assert convert_main(["--lora", d, "--base", BASE, "-o", out, "--type", "f32"]) == 0
    r = gguf.GGUFReader(out)
    assert r.fields["general.type"].contents() == "adapter"
    assert r.fields["adapter.type"].contents() == "lora"
    assert r.fields["general.architecture"].contents() == "llama"
    assert float(r.fields["adapter.lora.alpha"].contents()) == alpha
    got = {t.name: np.array(t.data, dtype=np.float32) for t in r.tensors}
    assert sorted(got) == sorted(want)
    for name in want:
        assert np.array_equal(got[name], want[name]), name


def test_rslora_alpha(tmp_path):
    alpha, _, peft = peft_from_fixture()
    d = str(tmp_path / "adapter")
    write_peft(d, peft, {"r": 4, "lora_alpha": alpha, "use_rslora": True})
    out = convert_lora(d, BASE, str(tmp_path / "out.gguf"), "f16")
    assert float(gguf.GGUFReader(out).fields["adapter.lora.alpha"].contents()) == pytest.approx(alpha * 2.0)


@pytest.mark.parametrize("change, message", [
    (lambda t, c: t.pop(next(k for k in t if "lora_B" in k)), "without its partner"),
    (lambda t, c: t.update({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((4, 31))}),
     "do not fit"),
    (lambda t, c: t.update({"base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight": np.zeros((4, 32)),
                            "base_model.model.model.layers.9.self_attn.q_proj.lora_B.weight": np.zeros((32, 4))}),
     "does not have"),
    (lambda t, c: t.update({"base_model.model.lm_head.lora_A.weight": np.zeros((4, 32))}), "not a LoRA matrix"),
    (lambda t, c: c.update({"use_dora": True}), "use_dora"),
    (lambda t, c: c.update({"rank_pattern": {"q_proj": 8}}), "rank_pattern"),
])
def test_bad_directories_are_refused(tmp_path, change, message):
    alpha, _, peft = peft_from_fixture()
    config = {"r": 4, "lora_alpha": alpha}
    change(peft, config)
    d = str(tmp_path / "adapter")
    write_peft(d, peft, config)
    out = str(tmp_path / "out.gguf")
    with pytest.raises(ConvertError, match=message):
        convert_lora(d, BASE, out)
    assert not os.path.exists(out)


def test_command_line_needs_base(capsys):
    with pytest.raises(SystemExit):
        convert_main(["--lora", "somewhere", "-o", "x.gguf"])
    assert "--base" in capsys.readouterr().err
