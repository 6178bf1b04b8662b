#!/usr/bin/env python3
"""Random LoRA adapters for the tiny llama model, and PEFT's logits with them, for tests/c/test_lora.c.

A development tool, not a CI step (it needs torch, transformers, peft and gguf):

    python3 tools/make_tiny_lora.py

It rebuilds tests/data/tiny/llama.gguf as a transformers LlamaForCausalLM (the config of
tools/make_tiny_models.py, the weights read back from the GGUF with the Q/K row permutation
undone; checked against tests/data/tiny/llama.txt), gives it two random rank-4 PEFT adapters on
every projection (q, k, v, o, gate, up, down), rounds their matrices to the precision each file
stores them in, saves each with save_pretrained and converts it with
pocketlm.convert.lora (`python -m pocketlm.convert --lora`), and writes under tests/data/tiny/:

  llama_lora.gguf      adapter 1 (alpha 8), F32
  llama_lora_q8.gguf   adapter 2 (alpha 4), A in Q8_0 and B in F16
  llama_lora.txt       logits in llama.txt's format, one block per case:
                         case <name> <scale of adapter 1> <scale of adapter 2>
                         seq/ids/pos lines as in llama.txt (cols from llama.txt)
                       cases: "a1" (PEFT, adapter 1), "a2" (PEFT, adapter 2), "both" (adapter 1 at
                       scale 1 and adapter 2 at scale 0.5: the base matrices plus both deltas,
                       merged in torch, since PEFT mixes adapters only by merging them).
"""
import math
import os
import sys
import tempfile

import numpy as np


def convert_lora(adapter_dir, base, out, outtype):
    """pocketlm.convert.lora from the checkout, without the compiled core that the pocketlm package imports."""
    import importlib
    import types

    pkg = types.ModuleType("pocketlm")
    pkg.__path__ = [os.path.join(ROOT, "python", "pocketlm")]
    sys.modules.setdefault("pocketlm", pkg)
    importlib.import_module("pocketlm.convert.lora").convert_lora(adapter_dir, base, out, outtype)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "data", "tiny")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_models  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GGUF_OF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
           "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
           "mlp.down_proj": "ffn_down"}


def unpermute(w, n_head):
    """Interleaved RoPE pairs (the GGUF's Q/K rows) -> HF's rotate-half order."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_fixture(path):
    seqs, cols = [], None
    for line in open(path):
        f = line.split()
        if not f or f[0] == "#":
            continue
        if f[0] == "cols":
            cols = [int(x) for x in f[1:]]
        elif f[0] == "seq":
            seqs.append({"name": f[1], "n": int(f[2]), "rows": []})
        elif f[0] == "ids":
            seqs[-1]["ids"] = [int(x) for x in f[1:]]
        elif f[0] == "pos":
            seqs[-1]["rows"].append([float(x) for x in f[2:]])
    return cols, seqs


def load_base():
    import gguf
    import torch
    import transformers

    name, cls_name, cfg_name, kw, _ = make_tiny_models.FAMILIES[0]
    assert name == "llama"
    cfg = getattr(transformers, cfg_name)(**make_tiny_models.COMMON, **kw)
    cfg._attn_implementation = "eager"
    model = getattr(transformers, cls_name)(cfg).eval()
    r = gguf.GGUFReader(os.path.join(TINY, "llama.gguf"))
    t = {x.name: np.array(x.data, dtype=np.float32) for x in r.tensors}
    sd = {"model.embed_tokens.weight": t["token_embd.weight"], "model.norm.weight": t["output_norm.weight"],
          "lm_head.weight": t["output.weight"]}
    for il in range(cfg.num_hidden_layers):
        p = f"model.layers.{il}."
        sd[p + "input_layernorm.weight"] = t[f"blk.{il}.attn_norm.weight"]
        sd[p + "post_attention_layernorm.weight"] = t[f"blk.{il}.ffn_norm.weight"]
        for hf, g in GGUF_OF.items():
            w = t[f"blk.{il}.{g}.weight"]
            if g == "attn_q":
                w = unpermute(w, cfg.num_attention_heads)
            elif g == "attn_k":
                w = unpermute(w, cfg.num_key_value_heads)
            sd[p + hf + ".weight"] = w
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()},
                                                strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    return model


def logits_of(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def main():
    import torch
    from peft import LoraConfig, get_peft_model

    cols, seqs = read_fixture(os.path.join(TINY, "llama.txt"))
    base = load_base()
    for s in seqs:  # the rebuilt model is the one llama.txt was made from
        d = np.abs(logits_of(base, s["ids"])[:, cols] - np.array(s["rows"])).max()
        assert d < 1e-4, f"rebuilt tiny llama differs from llama.txt by {d}"

    specs = [("llama_lora.gguf", 8.0, "f32", 11), ("llama_lora_q8.gguf", 4.0, "q8_0", 12)]
    deltas, results = [], {}
    for fname, alpha, outtype, seed in specs:
        model = get_peft_model(load_base(), LoraConfig(r=4, lora_alpha=alpha, target_modules=TARGETS,
                                                       lora_dropout=0.0, init_lora_weights=False))
        gen = torch.Generator().manual_seed(seed)
        delta = {}
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" not in name:
                    continue
                v = torch.randn(p.shape, generator=gen) * (0.5 / math.sqrt(p.shape[1]))
                if outtype == "q8_0" and "lora_A" in name:
                    import gguf
                    q = gguf.quants.quantize(v.numpy(), gguf.GGMLQuantizationType.Q8_0)
                    v = torch.from_numpy(gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0).reshape(p.shape))
                elif outtype == "q8_0":
                    v = v.half().float()
                p.copy_(v)
        model.eval()
        for name, mod in model.named_modules():
            if hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {}):
                key = name[name.index("layers."):]
                delta[key] = (mod.lora_B["default"].weight @ mod.lora_A["default"].weight).detach() * (alpha / 4)
        deltas.append(delta)
        results[fname] = [logits_of(model, s["ids"]) for s in seqs]
        with tempfile.TemporaryDirectory() as d:
            model.save_pretrained(d)
            convert_lora(d, os.path.join(TINY, "llama.gguf"), os.path.join(TINY, fname), outtype)

    both = load_base()
    with torch.no_grad():
        for name, mod in both.named_modules():
            key = name[name.index("layers."):] if "layers." in name else None
            if key in deltas[0]:
                mod.weight += deltas[0][key] * 1.0 + deltas[1][key] * 0.5
    results["both"] = [logits_of(both, s["ids"]) for s in seqs]

    import transformers
    lines = [f"# the tiny llama with random LoRA adapters: transformers {transformers.__version__} + PEFT float32 "
             "logits (eager attention) at every position for llama.txt's columns; made by tools/make_tiny_lora.py",
             "cols " + " ".join(map(str, cols))]
    for case, key, s1, s2 in [("a1", "llama_lora.gguf", 1.0, 0.0), ("a2", "llama_lora_q8.gguf", 0.0, 1.0),
                              ("both", "both", 1.0, 0.5)]:
        lines.append(f"case {case} {s1} {s2}")
        for s, lg in zip(seqs, results[key]):
            lines.append(f"seq {s['name']} {s['n']} 0")
            lines.append("ids " + " ".join(map(str, s["ids"])))
            for i in range(s["n"]):
                lines.append(f"pos {i} " + " ".join(f"{v:.6f}" for v in lg[i, cols]))
        change = max(np.abs(lg[:, cols] - np.array(s["rows"])).max() for s, lg in zip(seqs, results[key]))
        print(f"{case}: logits move by up to {change:.3f} from the base")
    with open(os.path.join(TINY, "llama_lora.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
