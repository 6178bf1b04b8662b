#!/usr/bin/env python3
"""Give tiny models a sequence-classification head, and store transformers' scores as fixtures.

A development tool, not a CI step (it needs the `gguf` package, transformers and the CPU
build of torch):

    python3 tools/make_cls_model.py

It reads two of the tiny models tools/make_tiny_models.py made (tests/data/tiny/), copies
every metadata key and tensor with gguf.GGUFReader / GGUFWriter, and adds a head in
llama.cpp's layout (cls.weight, cls.bias, cls.output.weight, cls.output.bias, the keys
<arch>.pooling_type and <arch>.classifier.output_labels):

  qwen3_cls.gguf   a Qwen3 reranker as llama.cpp's converter writes one: pooling "rank",
                   labels ["yes", "no"], cls.output.weight = the output matrix's rows of two
                   tokens, no bias, nothing else
  qwen2_cls.gguf   a full head: cls.weight (64 x 64, F16) + cls.bias, then cls.output.weight
                   (3 x 64, F32) + cls.output.bias; pooling "mean", three labels

The expected scores come from transformers, independently of pocketlm: the model is rebuilt
from the GGUF's own tensors (so it computes with the very numbers pocketlm reads) as
Qwen3ForSequenceClassification (whose `score` layer is cls.output.weight, applied to the last
token's final-norm hidden state: exactly the reranker's computation) and as Qwen2Model, whose
final-norm hidden states are pooled (mean, last and first token) and put through
tanh(cls x + b) and cls.output in float64 numpy. Written to tests/data/tiny/cls.txt:

    # comments
    model <gguf> <n_out> <pooling the file stores>
    label <name>                               (n_out lines)
    seq <name> <n_tokens>
    ids <n_tokens ids>
    scores <pooling> <n_out scores>            (mean, last, cls: one line each, or only last)

`write_with_head()` is the helper: any tiny GGUF (F32/F16 tensors) plus a head.
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "data", "tiny")

SEQ_LENS = [("a", 24), ("b", 9), ("c", 16), ("d", 1)]  # c starts with BOS; d is a single token
POOLINGS = {"mean": 1, "cls": 2, "last": 3, "rank": 4}


def write_with_head(src, dst, tensors, pooling=None, labels=None):
    """Copies the GGUF src to dst and adds `tensors` ({name: numpy array, rows first, float32 or
    float16}), the pooling type (a name of POOLINGS or None) and the label names (or None)."""
    import gguf

    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, f.contents(), vtype, sub_type=sub)
    if pooling is not None:
        w.add_pooling_type(gguf.PoolingType(POOLINGS[pooling]))
    if labels is not None:
        w.add_classifier_output_labels(list(labels))
    for t in r.tensors:
        if t.tensor_type not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            sys.exit(f"{src}: tensor {t.name} is {t.tensor_type.name}; only F32 and F16 are copied")
        w.add_tensor(t.name, np.array(t.data))
    for name, arr in tensors.items():
        w.add_tensor(name, np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_tensors(path):
    """{name: float32 array (rows first)} and a metadata getter of a GGUF."""
    import gguf

    r = gguf.GGUFReader(path)
    tensors = {t.name: np.array(t.data, dtype=np.float32).reshape([int(x) for x in reversed(t.shape)])
               for t in r.tensors}

    def get(key, default=None):
        f = r.fields.get(key)
        return default if f is None else f.contents()
    return tensors, get


# GGUF name (within blk.N.) -> transformers name (within model.layers.N.), Qwen2 / Qwen3
QWEN_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def hf_from_gguf(path, cls_name, num_labels=None):
    """A transformers Qwen2/Qwen3 model (class cls_name) holding the GGUF's tensors. Qwen files
    need no un-permuting (their RoPE is NEOX-style, which is transformers' rotate-half)."""
    import torch
    import transformers

    tensors, get = gguf_tensors(path)
    arch = get("general.architecture")
    cfg_cls = {"qwen2": transformers.Qwen2Config, "qwen3": transformers.Qwen3Config}[arch]
    E, n_head = int(get(f"{arch}.embedding_length")), int(get(f"{arch}.attention.head_count"))
    kw = dict(vocab_size=tensors["token_embd.weight"].shape[0], hidden_size=E,
              intermediate_size=int(get(f"{arch}.feed_forward_length")),
              num_hidden_layers=int(get(f"{arch}.block_count")), num_attention_heads=n_head,
              num_key_value_heads=int(get(f"{arch}.attention.head_count_kv", n_head)),
              rms_norm_eps=float(get(f"{arch}.attention.layer_norm_rms_epsilon")),
              max_position_embeddings=int(get(f"{arch}.context_length")),
              rope_parameters=dict(rope_type="default", rope_theta=float(get(f"{arch}.rope.freq_base"))),
              tie_word_embeddings="output.weight" not in tensors, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if arch == "qwen3":
        kw["head_dim"] = int(get(f"{arch}.attention.key_length", E // n_head))
    if num_labels is not None:
        kw["num_labels"] = num_labels
    cfg = cfg_cls(**kw)
    cfg._attn_implementation = "eager"
    model = getattr(transformers, cls_name)(cfg).eval()
    sd = {"model.embed_tokens.weight": tensors["token_embd.weight"], "model.norm.weight": tensors["output_norm.weight"]}
    for name, arr in tensors.items():
        if name.startswith("blk."):
            _, il, rest = name.split(".", 2)
            sd[f"model.layers.{il}.{QWEN_LAYER[rest]}"] = arr
        elif name == "cls.output.weight" and num_labels is not None:
            sd["score.weight"] = arr
    if cls_name.endswith("ForCausalLM"):
        sd["lm_head.weight"] = tensors.get("output.weight", tensors["token_embd.weight"])
    if cls_name.endswith("Model"):  # the bare model: no "model." prefix
        sd = {k[len("model."):]: v for k, v in sd.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in sd and "rotary_emb" not in k]
    extra = [k for k in sd if k not in own]
    if missing or extra:
        sys.exit(f"{path}: tensors missing {missing}, unexpected {extra}")
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, strict=False)
    return model, tensors


def hidden_states(path, ids):
    """transformers' final-norm hidden states (n, E) of one sequence, float64."""
    import torch

    model, _ = hf_from_gguf(path, {"qwen2": "Qwen2Model", "qwen3": "Qwen3Model"}[arch_of(path)])
    with torch.no_grad():
        return model(torch.tensor([ids])).last_hidden_state[0].double().numpy()


def arch_of(path):
    _, get = gguf_tensors(path)
    return get("general.architecture")


def head_scores(h, head):
    """pooled h (E) -> scores, float64: tanh(cls h + b) if cls, then cls.output (+ b) if present."""
    y = h
    if "cls.weight" in head:
        y = np.tanh(head["cls.weight"].astype(np.float64) @ y + head.get("cls.bias", 0.0))
    if "cls.output.weight" in head:
        y = head["cls.output.weight"].astype(np.float64) @ y + head.get("cls.output.bias", 0.0)
    return y


def pool(hs, how):
    return {"mean": hs.mean(axis=0), "last": hs[-1], "cls": hs[0]}[how]


def main():
    import torch
    import transformers

    rng = np.random.default_rng(4321)
    n_vocab = 288
    seqs = []
    for name, n in SEQ_LENS:
        ids = rng.integers(3, n_vocab, size=n).tolist()
        if name == "c":
            ids[0] = 1
        seqs.append((name, ids))
    lines = [f"# Classification heads on tiny models (tools/make_cls_model.py); expected scores from "
             f"transformers {transformers.__version__} (float32 forward, float64 head)"]

    # 1. A Qwen3 reranker: cls.output.weight = two rows of the output matrix, pooling rank.
    base = os.path.join(TINY, "qwen3.gguf")
    out_w = gguf_tensors(base)[0]["output.weight"]
    yes, no = 100, 101
    head = {"cls.output.weight": np.stack([out_w[yes], out_w[no]]).astype(np.float32)}
    path = os.path.join(TINY, "qwen3_cls.gguf")
    write_with_head(base, path, head, pooling="rank", labels=["yes", "no"])
    model, _ = hf_from_gguf(path, "Qwen3ForSequenceClassification", num_labels=2)
    lm, _ = hf_from_gguf(base, "Qwen3ForCausalLM")
    lines += [f"model qwen3_cls.gguf 2 rank", "label yes", "label no"]
    for name, ids in seqs:
        with torch.no_grad():
            s = model(torch.tensor([ids])).logits[0].double().numpy()
            lm_logits = lm(torch.tensor([ids])).logits[0, -1].double().numpy()
        # the reranker's scores are the causal LM's logits of the two tokens at the last position
        assert np.allclose(s, lm_logits[[yes, no]], atol=1e-4), (s, lm_logits[[yes, no]])
        ref = head_scores(pool(hidden_states(path, ids), "last"), head)
        assert np.allclose(s, ref, atol=1e-4), (s, ref)
        lines += [f"seq {name} {len(ids)}", "ids " + " ".join(map(str, ids)),
                  "scores last " + " ".join(f"{v:.6f}" for v in s)]
    summary = [f"qwen3_cls.gguf {os.path.getsize(path) / 1024:.1f} KB"]

    # 2. A full head on Qwen2: dense (F16) + tanh + output (F32), pooling mean, three labels.
    base = os.path.join(TINY, "qwen2.gguf")
    E = gguf_tensors(base)[0]["token_embd.weight"].shape[1]
    labels = ["billing", "technical", "other"]
    head = {
        "cls.weight": (rng.standard_normal((E, E)) * 2.0 / np.sqrt(E)).astype(np.float16),
        "cls.bias": (rng.standard_normal(E) * 0.3).astype(np.float32),
        "cls.output.weight": (rng.standard_normal((len(labels), E)) * 3.0 / np.sqrt(E)).astype(np.float32),
        "cls.output.bias": (rng.standard_normal(len(labels)) * 0.5).astype(np.float32),
    }
    path = os.path.join(TINY, "qwen2_cls.gguf")
    write_with_head(base, path, head, pooling="mean", labels=labels)
    head = {k: v.astype(np.float32) for k, v in head.items()}   # the values the file holds
    lines += [f"model qwen2_cls.gguf {len(labels)} mean"] + [f"label {x}" for x in labels]
    spread = []
    for name, ids in seqs:
        hs = hidden_states(path, ids)
        lines += [f"seq {name} {len(ids)}", "ids " + " ".join(map(str, ids))]
        for how in ("mean", "last", "cls"):
            s = head_scores(pool(hs, how), head)
            spread.append(float(s.max() - s.min()))
            lines.append(f"scores {how} " + " ".join(f"{v:.6f}" for v in s))
    summary.append(f"qwen2_cls.gguf {os.path.getsize(path) / 1024:.1f} KB, score spread {min(spread):.2f}.."
                   f"{max(spread):.2f}")
    with open(os.path.join(TINY, "cls.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
