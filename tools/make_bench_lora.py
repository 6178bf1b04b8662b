#!/usr/bin/env python3
"""A random LoRA adapter for a GGUF model, to measure what applying one costs (bench/plm_bench.c -a).

    python3 tools/make_bench_lora.py BASE.gguf OUT.gguf [--rank 16]

Targets every attention and FFN projection of every layer (attn_q, attn_k, attn_v, attn_output, ffn_gate,
ffn_up, ffn_down); A and B are F16 with small random values (speed does not depend on them). Needs numpy and gguf.
"""
import argparse
import re

import numpy as np


def main():
    import gguf

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base")
    ap.add_argument("out")
    ap.add_argument("--rank", type=int, default=16)
    args = ap.parse_args()
    r = gguf.GGUFReader(args.base)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(args.out, arch)
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(args.rank))
    rng = np.random.default_rng(0)
    pat = re.compile(r"^blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$")
    n = 0
    for t in r.tensors:
        if not pat.match(t.name):
            continue
        n_in, n_out = int(t.shape[0]), int(t.shape[1])
        w.add_tensor(t.name + ".lora_a", (rng.standard_normal((args.rank, n_in)) * 0.01).astype(np.float16))
        w.add_tensor(t.name + ".lora_b", (rng.standard_normal((n_out, args.rank)) * 0.01).astype(np.float16))
        n += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{args.out}: rank {args.rank} on {n} tensors")


if __name__ == "__main__":
    main()
