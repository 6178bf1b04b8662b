#!/usr/bin/env python3
"""Build tiny random-weight models of each family with transformers, convert them to GGUF,
and store transformers' own logits as fixtures for tests/c/test_families.c.

A development tool, not a CI step (it needs transformers and the CPU build of torch):

    python3 tools/make_tiny_models.py

For each family below it makes a config (hidden 32-64, 2-6 layers, a 288-token vocabulary),
a model with random weights of a useful size (norm weights around 1, logits of a few units,
soft-caps and sliding windows small enough to matter on 24 tokens), rounds the matrices to
the precision the GGUF stores them in (so transformers computes with the very numbers
pocketlm reads), saves it with save_pretrained, converts the saved directory with
tools/hf_to_gguf.py, and writes under tests/data/tiny/:

  <name>.gguf   the model (F16 matrices, llama in F32), each well under 300 KB
  <name>.txt    transformers' float32 logits (eager attention) for 3 token sequences, at
                every position, for a fixed random subset of COLS vocabulary columns:
                    # comments
                    family <name> <gguf>
                    cols <COLS vocabulary ids>
                    seq <name> <n_tokens> <n_ctx or 0>   (n_ctx: the context size that makes
                                                          pocketlm pick the same RoPE factors
                                                          as transformers, Phi-3 LongRoPE)
                    ids <n_tokens ids>
                    pos <i> <COLS logits>                (one line per position)
"""
import json
import math
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "tiny")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_to_gguf  # noqa: E402

N_VOCAB = 288
COLS = 48
SEQ_LENS = [("a", 24), ("b", 9), ("c", 16)]  # c starts with BOS

COMMON = dict(vocab_size=N_VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0, rms_norm_eps=1e-5,
              max_position_embeddings=64)

# name, transformers class, config class, config, GGUF matrix type
FAMILIES = [
    ("llama", "LlamaForCausalLM", "LlamaConfig",
     dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
          tie_word_embeddings=False,
          rope_parameters=dict(rope_type="llama3", rope_theta=10000.0, factor=4.0, low_freq_factor=1.0,
                               high_freq_factor=4.0, original_max_position_embeddings=16)), "f32"),
    ("mistral", "MistralForCausalLM", "MistralConfig",
     dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
          sliding_window=6, tie_word_embeddings=False, rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
     "f16"),
    ("qwen2", "Qwen2ForCausalLM", "Qwen2Config",
     dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
          tie_word_embeddings=True, rope_parameters=dict(rope_type="default", rope_theta=1000000.0)), "f16"),
    ("qwen3", "Qwen3ForCausalLM", "Qwen3Config",
     dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
          head_dim=32, tie_word_embeddings=False, rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
     "f16"),
    ("phi3", "Phi3ForCausalLM", "Phi3Config",
     dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
          tie_word_embeddings=False, original_max_position_embeddings=16,
          rope_parameters=dict(rope_type="longrope", rope_theta=10000.0, partial_rotary_factor=0.75, factor=4.0,
                               original_max_position_embeddings=16,
                               short_factor=[1.0, 1.3, 1.7, 2.2, 3.0, 4.0],
                               long_factor=[1.5, 2.5, 4.0, 6.0, 9.0, 14.0])), "f16"),
    ("gemma2", "Gemma2ForCausalLM", "Gemma2Config",
     dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
          head_dim=16, query_pre_attn_scalar=16, sliding_window=5, attn_logit_softcapping=3.0,
          final_logit_softcapping=5.0, hidden_activation="gelu_pytorch_tanh",
          rope_parameters=dict(rope_type="default", rope_theta=10000.0)), "f16"),
    ("gemma3", "Gemma3ForCausalLM", "Gemma3TextConfig",
     dict(hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=2, num_key_value_heads=1,
          head_dim=16, query_pre_attn_scalar=16, sliding_window=5, hidden_activation="gelu_pytorch_tanh",
          rope_parameters={"full_attention": dict(rope_type="default", rope_theta=1000.0),
                           "sliding_attention": dict(rope_type="default", rope_theta=10000.0)}), "f16"),
]


def randomize(model, gen, gemma, outtype):
    """Weights of a useful size: matrices N(0, 1/n_in) (the output head 3x that), embeddings
    N(0, 1), norm weights around 1 (Gemma stores w for 1 + w), biases N(0, 0.3); then rounded
    to the stored precision."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                v = torch.randn(p.shape, generator=gen) * 0.15
                p.copy_(v if gemma else 1.0 + v)
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                gain = 3.0 if "lm_head" in name else 1.0
                p.copy_(torch.randn(p.shape, generator=gen) * gain / math.sqrt(p.shape[1]))
            if outtype == "f16" and p.dim() >= 2:
                p.copy_(p.half().float())


def main():
    import torch
    import transformers

    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(1234)
    summary = []
    for fi, (name, cls_name, cfg_name, kw, outtype) in enumerate(FAMILIES):
        cfg = getattr(transformers, cfg_name)(**COMMON, **kw)
        cfg.architectures = [cls_name]
        cfg._attn_implementation = "eager"
        torch.manual_seed(fi)
        model = getattr(transformers, cls_name)(cfg).eval()
        randomize(model, torch.Generator().manual_seed(100 + fi), name.startswith("gemma"), outtype)
        gguf_path = os.path.join(OUT, f"{name}.gguf")
        with tempfile.TemporaryDirectory() as d:
            model.save_pretrained(d)
            with open(os.path.join(d, "config.json")) as fh:
                json.load(fh)  # the converter reads exactly this
            hf_to_gguf.convert(d, gguf_path, outtype, name=f"tiny-{name}")
            model = getattr(transformers, cls_name).from_pretrained(d, attn_implementation="eager",
                                                                   dtype=torch.float32).eval()
        if name == "phi3":
            want = model.model.rotary_emb.attention_scaling
            assert abs(want - math.sqrt(1 + math.log(64 / 16) / math.log(16))) < 1e-6, want

        cols = sorted(rng.choice(N_VOCAB, size=COLS, replace=False).tolist())
        lines = [f"# {cls_name} with random weights; transformers {transformers.__version__} float32 logits "
                 "(eager attention) at every position, for the vocabulary columns listed",
                 f"family {name} {name}.gguf", "cols " + " ".join(map(str, cols))]
        worst_margin = []
        for sname, n in SEQ_LENS:
            ids = rng.integers(3, N_VOCAB, size=n).tolist()
            if sname == "c":
                ids[0] = 1
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0].numpy()
            # Phi-3 LongRoPE: transformers uses the long factors when the sequence is longer than
            # original_max_position_embeddings; pocketlm (as llama.cpp) when the context is.
            n_ctx = 0
            if name == "phi3":
                n_ctx = 64 if n > 16 else 16
            lines.append(f"seq {sname} {n} {n_ctx}")
            lines.append("ids " + " ".join(map(str, ids)))
            for i in range(n):
                lines.append(f"pos {i} " + " ".join(f"{v:.6f}" for v in logits[i, cols]))
            top2 = np.sort(logits, axis=1)[:, -2:]
            worst_margin.append(float((top2[:, 1] - top2[:, 0]).min()))
        with open(os.path.join(OUT, f"{name}.txt"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
        size = os.path.getsize(gguf_path)
        summary.append(f"{name:8s} {size / 1024:6.1f} KB  logits std {float(np.std(logits)):.2f}")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
