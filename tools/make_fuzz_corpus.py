#!/usr/bin/env python3
"""Write the fuzzers' seed corpus under tests/fuzz/corpus (a development tool).

gguf/      tiny valid GGUF models (a 2-layer llama with a byte-level BPE vocabulary,
           in F32, Q8_0 and Q4_0) that load and decode, so mutations reach every stage
tokenizer/ texts: code, emoji, CJK, whitespace runs, special-token text, invalid UTF-8
sampler/   parameter blocks (see tests/fuzz/fuzz_sampler.c for the layout)
"""
import os
import struct

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def byte_tokens():
    # GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest above 255.
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return [table[b] for b in range(256)]


def tiny_llama(path, qtype):
    rng = np.random.default_rng(0)
    n_embd, n_ff, n_layer, n_head, n_kv = 32, 64, 2, 4, 2
    toks = byte_tokens() + ["Ġt", "he", "Ġthe", "<|endoftext|>"]
    merges = ["Ġ t", "h e", "Ġt he"]
    w = GGUFWriter(path, "llama")
    w.add_block_count(n_layer)
    w.add_context_length(64)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_types([1] * (len(toks) - 1) + [3])
    w.add_token_merges(merges)
    w.add_bos_token_id(len(toks) - 1)
    w.add_eos_token_id(len(toks) - 1)

    def mat(name, rows, cols):
        a = (rng.standard_normal((rows, cols)) * 0.1).astype(np.float32)
        if qtype == GGMLQuantizationType.F32:
            w.add_tensor(name, a)
        else:
            w.add_tensor(name, quantize(a, qtype), raw_dtype=qtype)

    def vec(name, n):
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    hd = n_embd // n_head
    mat("token_embd.weight", len(toks), n_embd)
    vec("output_norm.weight", n_embd)
    for i in range(n_layer):
        vec(f"blk.{i}.attn_norm.weight", n_embd)
        mat(f"blk.{i}.attn_q.weight", n_head * hd, n_embd)
        mat(f"blk.{i}.attn_k.weight", n_kv * hd, n_embd)
        mat(f"blk.{i}.attn_v.weight", n_kv * hd, n_embd)
        mat(f"blk.{i}.attn_output.weight", n_embd, n_head * hd)
        vec(f"blk.{i}.ffn_norm.weight", n_embd)
        mat(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        mat(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        mat(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    for d in ("gguf", "tokenizer", "sampler"):
        os.makedirs(os.path.join(CORPUS, d), exist_ok=True)
    for name, q in (("tiny_f32", GGMLQuantizationType.F32), ("tiny_q8_0", GGMLQuantizationType.Q8_0),
                    ("tiny_q4_0", GGMLQuantizationType.Q4_0)):
        tiny_llama(os.path.join(CORPUS, "gguf", name + ".gguf"), q)
    texts = {
        "english": b"\x00The quick brown fox jumps over the lazy dog.",
        "code": b"\x00def f(x):\n\treturn x ** 2  # square\n",
        "emoji": "\x00Hi 👋🏽 family: 👨‍👩‍👧 flags 🇫🇷".encode(),
        "cjk": "\x00我喜欢在公园里散步。日本語のテキスト。".encode(),
        "spaces": b"\x00a    b\n\n\n\t\tc   ",
        "special": b"\x03<|im_start|>user\nhi<|im_end|>\n",
        "invalid": b"\x00\xff\xfe\xc3(\xe2\x82\xf0\x9f\x98abc\x80",
        "digits": b"\x001234567890 3.14159 1,000,000",
    }
    for name, t in texts.items():
        open(os.path.join(CORPUS, "tokenizer", name), "wb").write(t)
    # temperature, top_k, top_p, min_p, repeat, frequency, presence, last_n, seed, n_bias,
    # 16 (token, bias) pairs, 64 logits: the layout fuzz_sampler.c reads
    head = "<fifffffiQB"
    logits = np.linspace(-3, 3, 64, dtype=np.float32).tobytes()
    seeds = {
        "default": struct.pack(head, 0.8, 40, 0.95, 0.05, 1.0, 0.0, 0.0, 64, 0x5EED, 0) + bytes(128) + logits,
        "greedy": struct.pack(head, 0.0, 0, 1.0, 0.0, 1.1, 0.1, 0.1, 8, 7, 2)
        + struct.pack("<ifif", 3, float("-inf"), 9, 2.5) + bytes(112) + logits,
    }
    for name, b in seeds.items():
        open(os.path.join(CORPUS, "sampler", name), "wb").write(b)

if __name__ == "__main__":
    main()
