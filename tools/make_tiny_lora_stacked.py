#!/usr/bin/env python3
"""The tiny llama's rank-4 adapter 1 (tests/data/tiny/llama_lora.gguf) as an equal adapter of rank 32, for
tests/c/test_lora.c.

    python3 tools/make_tiny_lora_stacked.py

A (4, n_in) becomes A stacked 8 times (32, n_in), B (n_out, 4) becomes B / 8 repeated 8 times along the rank
(n_out, 32), alpha 8 becomes 64, so that scale * B A is the same matrix (alpha / rank = 2, and the sum over the
eight copies of (B / 8) A is B A). Held in 8 bits as lora.c holds adapters, the two give the same bytes up to
powers of two (B's row scales divided by 8 exactly, A's rows the same Q8_0 rows, u = A x the same values eight
times), so a context gives bit-identical logits with either: the test compares them, which checks the rank-32
path (on AVX-512, A in the x16 layout and split by groups of 16 rows across threads) against the rank-4 one
(A row by row) that tools/make_tiny_lora.py checks against PEFT. Writes tests/data/tiny/llama_lora_r32.gguf.
Needs numpy and gguf.
"""
import os

import numpy as np

COPIES = 8
TINY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "tiny")


def main():
    import gguf

    r = gguf.GGUFReader(os.path.join(TINY, "llama_lora.gguf"))
    alpha = float(r.fields["adapter.lora.alpha"].contents())
    out = os.path.join(TINY, "llama_lora_r32.gguf")
    w = gguf.GGUFWriter(out, r.fields["general.architecture"].contents())
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", alpha * COPIES)
    for t in r.tensors:
        m = np.array(t.data, dtype=np.float32)
        if t.name.endswith(".lora_a"):  # (rank, n_in)
            w.add_tensor(t.name, np.concatenate([m] * COPIES, axis=0))
        elif t.name.endswith(".lora_b"):  # (n_out, rank)
            w.add_tensor(t.name, np.concatenate([m / COPIES] * COPIES, axis=1))
        else:
            raise SystemExit(f"unexpected tensor {t.name}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{out}: {len(r.tensors) // 2} pairs of rank {COPIES * 4}, alpha {alpha * COPIES}")


if __name__ == "__main__":
    main()
