#!/usr/bin/env python3
"""Convert a Hugging Face causal LM (config.json + *.safetensors) to a GGUF that pocketlm loads.

A development tool (tools/make_tiny_models.py uses it). It writes the metadata keys
and tensor names llama.cpp's convert_hf_to_gguf.py writes, for these families:

    LlamaForCausalLM, MistralForCausalLM  -> llama   (Q/K rows permuted for interleaved RoPE;
                                                      llama3 RoPE scaling as rope_freqs.weight;
                                                      Mistral's sliding_window)
    Qwen2ForCausalLM                      -> qwen2   (Q/K/V biases)
    Qwen3ForCausalLM                      -> qwen3   (QK-norm)
    Phi3ForCausalLM                       -> phi3    (fused qkv_proj and gate_up_proj kept fused;
                                                      LongRoPE factors and attention factor)
    Gemma2ForCausalLM                     -> gemma2  (norm weights stored as 1 + w; soft-caps)
    Gemma3ForCausalLM (text)              -> gemma3  (norm weights stored as 1 + w)

Matrices are written as F16 (--outtype f16, default) or F32; norms, biases and RoPE
factors always as F32. The vocabulary is synthetic: a SentencePiece vocabulary of
<unk>, <s>, </s>, the 256 byte-fallback tokens and filler pieces up to vocab_size
(the random-weight test models have no tokenizer of their own).

    python3 tools/hf_to_gguf.py MODEL_DIR OUT.gguf [--outtype f16|f32]
"""
import argparse
import json
import math
import os
import sys

import numpy as np

ARCH = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Phi3ForCausalLM": "phi3",
    "Gemma2ForCausalLM": "gemma2",
    "Gemma3ForCausalLM": "gemma3",
}

# Hugging Face tensor name (within model.layers.N.) -> GGUF name (within blk.N.)
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.qkv_proj.weight": "attn_qkv.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",   # Gemma: post_attention_norm (below)
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.gate_up_proj.weight": "ffn_up.weight",            # Phi-3: gate rows, then up rows
    "mlp.down_proj.weight": "ffn_down.weight",
}


def rope_params(cfg):
    """transformers 5 keeps RoPE settings in rope_parameters (per layer type for Gemma 3)."""
    rp = cfg.get("rope_parameters") or {}
    if "full_attention" in rp:
        rp = rp["full_attention"]
    if not rp and cfg.get("rope_scaling"):
        rp = dict(cfg["rope_scaling"], rope_theta=cfg.get("rope_theta", 10000.0))
    return rp


def permute(w, n_head):
    """HF's rotate-half Q/K rows -> interleaved pairs, as llama.cpp's converter does for llama."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(rp, head_dim):
    """Per-frequency divisors of Llama 3.1's RoPE scaling (written as rope_freqs.weight)."""
    base = rp.get("rope_theta", 10000.0)
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factor = rp.get("factor", 8.0)
    low, high = rp.get("low_freq_factor", 1.0), rp.get("high_freq_factor", 4.0)
    old = rp.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def synthetic_vocab(n_vocab):
    """<unk>, <s>, </s>, <0x00>..<0xFF>, then filler pieces: (tokens, scores, types)."""
    import gguf

    T = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [T.UNKNOWN, T.CONTROL, T.CONTROL] + [T.BYTE] * 256
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    i = 0
    while len(tokens) < n_vocab:
        piece = "\u2581" + letters[i % 26] + (letters[(i // 26) % 26] if i >= 26 else "")
        tokens.append(piece)
        types.append(T.NORMAL)
        i += 1
    if len(tokens) > n_vocab:
        sys.exit(f"vocab_size {n_vocab} is smaller than the {len(tokens)} tokens of the synthetic vocabulary")
    scores = [0.0] * 259 + [-float(k) for k in range(1, n_vocab - 259 + 1)]
    return tokens, scores, [int(t) for t in types]


def load_tensors(model_dir):
    from safetensors.numpy import load_file

    tensors = {}
    for f in sorted(os.listdir(model_dir)):
        if f.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(model_dir, f)))
    if not tensors:
        sys.exit(f"{model_dir}: no .safetensors files")
    return tensors


def convert(model_dir, out_path, outtype="f16", name=None):
    import gguf

    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    archs = cfg.get("architectures") or []
    if not archs or archs[0] not in ARCH:
        sys.exit(f"{model_dir}: architecture {archs} is not one of {', '.join(ARCH)}")
    hf_arch = archs[0]
    arch = ARCH[hf_arch]
    gemma = arch.startswith("gemma")
    n_embd, n_head = cfg["hidden_size"], cfg["num_attention_heads"]
    n_head_kv = cfg.get("num_key_value_heads") or n_head
    head_dim = cfg.get("head_dim") or n_embd // n_head
    n_layer, n_vocab = cfg["num_hidden_layers"], cfg["vocab_size"]
    rp = rope_params(cfg)
    rope_type = rp.get("rope_type", rp.get("type", "default"))

    w = gguf.GGUFWriter(out_path, arch)
    w.add_name(name or os.path.basename(os.path.normpath(model_dir)))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32)
    w.add_context_length(cfg.get("max_position_embeddings", 2048))
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-6))
    w.add_rope_freq_base(rp.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    if head_dim != n_embd // n_head or gemma:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    n_rot = int(head_dim * rp.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0)))
    w.add_rope_dimension_count(n_rot)
    extra = {}
    if hf_arch == "MistralForCausalLM" and cfg.get("sliding_window"):
        w.add_sliding_window(cfg["sliding_window"])
    if arch == "llama" and rope_type == "llama3":
        extra["rope_freqs.weight"] = llama3_rope_factors(rp, head_dim)
    elif rope_type not in ("default", "longrope"):
        sys.exit(f"{model_dir}: RoPE type {rope_type} is not handled by this converter")
    if arch == "phi3":
        orig = rp.get("original_max_position_embeddings", cfg.get("original_max_position_embeddings"))
        max_pos = cfg["max_position_embeddings"]
        if orig:
            w.add_rope_scaling_orig_ctx_len(orig)
        w.add_sliding_window(cfg.get("sliding_window") or 0)
        if rope_type == "longrope":
            scale = max_pos / orig
            w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1.0 else 1.0)
            extra["rope_factors_long.weight"] = np.array(rp["long_factor"], dtype=np.float32)
            extra["rope_factors_short.weight"] = np.array(rp["short_factor"], dtype=np.float32)
    if gemma:
        if cfg.get("query_pre_attn_scalar", head_dim) != head_dim:
            print(f"note: query_pre_attn_scalar {cfg['query_pre_attn_scalar']} != head_dim {head_dim}; "
                  "llama.cpp (and pocketlm) scale q by 1/sqrt(head_dim)", file=sys.stderr)
        if cfg.get("sliding_window"):
            w.add_sliding_window(cfg["sliding_window"])
        if arch == "gemma2":
            w.add_attn_logit_softcapping(cfg.get("attn_logit_softcapping") or 0.0)
            w.add_final_logit_softcapping(cfg.get("final_logit_softcapping") or 0.0)
        elif cfg.get("final_logit_softcapping"):
            w.add_final_logit_softcapping(cfg["final_logit_softcapping"])

    tokens, scores, types = synthetic_vocab(n_vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    def put(name, arr):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim >= 2 and outtype == "f16":
            arr = arr.astype(np.float16)
        w.add_tensor(name, arr)

    src = load_tensors(model_dir)
    tied = cfg.get("tie_word_embeddings", False) or "lm_head.weight" not in src
    for name, arr in extra.items():
        put(name, arr)
    for name in sorted(src):
        arr = src[name].astype(np.float32)
        if name == "model.embed_tokens.weight":
            out = "token_embd.weight"
        elif name == "model.norm.weight":
            out = "output_norm.weight"
        elif name == "lm_head.weight":
            if tied:
                continue
            out = "output.weight"
        elif name.startswith("model.layers."):
            il, rest = name[len("model.layers."):].split(".", 1)
            if rest not in LAYER_NAMES:
                sys.exit(f"{model_dir}: no GGUF name for tensor {name}")
            sub = LAYER_NAMES[rest]
            if gemma and rest == "post_attention_layernorm.weight":
                sub = "post_attention_norm.weight"
            out = f"blk.{il}.{sub}"
            if arch == "llama" and rest == "self_attn.q_proj.weight":
                arr = permute(arr, n_head)
            if arch == "llama" and rest == "self_attn.k_proj.weight":
                arr = permute(arr, n_head_kv)
        elif "rotary_emb" in name:
            continue
        else:
            sys.exit(f"{model_dir}: no GGUF name for tensor {name}")
        if gemma and name.endswith("norm.weight"):
            arr = arr + 1.0  # Gemma's RMSNorm multiplies by (1 + w); llama.cpp's converter stores 1 + w
        put(out, arr)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--outtype", choices=["f16", "f32"], default="f16")
    args = ap.parse_args()
    convert(args.model_dir, args.out, args.outtype)


if __name__ == "__main__":
    main()
