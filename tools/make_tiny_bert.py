#!/usr/bin/env python3
"""Builds tests/data/tiny/bert.gguf, a tiny random-weight BERT with a real WordPiece vocabulary, and
tests/data/tiny/bert.txt, transformers' mean-pooled embeddings of a few texts with it.

A development tool, not a CI step (it needs transformers and the CPU build of torch, and the all-MiniLM-L6-v2
zip for its vocabulary). The vocabulary is a subset of all-MiniLM-L6-v2's: the five special tokens, every
single character and its ## continuation, and the first common words, so that WordPiece has real work to do
(accents, CJK, punctuation, continuations, [UNK]) in a file of about 200 KB that the fuzzer and the offline
tests can load. The model (hidden 32, 2 layers, 2 heads, FFN 64, 64 positions) gets random weights, is saved
with save_pretrained plus a sentence-transformers mean-pooling config, and is converted with
``python -m pocketlm.convert --type f16``; its matrices are rounded to F16 first, so transformers computes with
the numbers the GGUF holds.

bert.txt lines:  text <hex of UTF-8>  /  ids <ids>  /  emb <32 floats, mean-pooled, not normalized>

Usage: python3 tools/make_tiny_bert.py --zip PATH/all-MiniLM-L6-v2.model.zip
"""
import argparse
import json
import os
import sys
import tempfile
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["Hello, World! The quick brown fox.", "Café déjà vu: naïve résumé", "北京是中国的首都 and 東京",
         "unbelievably tokenized words ☃ xyzzy", "a"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zip", required=True)
    args = ap.parse_args()
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    full = json.loads(zipfile.ZipFile(args.zip).read("tokenizer.json"))["model"]["vocab"]
    by_id = sorted(full, key=full.get)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    singles = [t for t in by_id if len(t) == 1 and t not in special]
    conts = [t for t in by_id if t.startswith("##") and len(t) == 3]
    words = [t for t in by_id[1997:] if len(t) > 1 and not t.startswith("##")][:600]
    wsub = [t for t in by_id[1997:] if t.startswith("##") and len(t) > 3][:200]
    vocab = special + singles + conts + words + wsub
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "vocab.txt"), "w").write("\n".join(vocab) + "\n")
        tok = BertTokenizerFast(os.path.join(d, "vocab.txt"), do_lower_case=True)
        tok.save_pretrained(d)
        cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64, type_vocab_size=2)
        m = BertModel(cfg, add_pooling_layer=False).eval()
        with torch.no_grad():
            for name, p in m.named_parameters():
                if p.dim() >= 2 and "position" not in name and "token_type" not in name:
                    p.copy_(p.half().float())  # the GGUF stores these matrices as F16
                if name.endswith("position_embeddings.weight"):
                    p.copy_(p.half().float())
        m.save_pretrained(d, safe_serialization=True)
        os.makedirs(os.path.join(d, "1_Pooling"))
        json.dump({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True},
                  open(os.path.join(d, "1_Pooling", "config.json"), "w"))
        json.dump([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}],
                  open(os.path.join(d, "modules.json"), "w"))
        import importlib.util  # the converter alone: the package would need its built extension
        spec = importlib.util.spec_from_file_location("bert_convert", os.path.join(REPO, "python", "pocketlm",
                                                                                   "convert", "bert.py"))
        conv = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(conv)
        convert = conv.convert
        out = os.path.join(REPO, "tests", "data", "tiny", "bert.gguf")
        convert(d, out, "f16", name="tiny-bert")
        with open(os.path.join(REPO, "tests", "data", "tiny", "bert.txt"), "w") as f:
            f.write("# transformers' mean-pooled final hidden states of tiny bert.gguf (tools/make_tiny_bert.py)\n")
            for text in TEXTS:
                enc = tok(text, return_tensors="pt")
                with torch.no_grad():
                    h = m(**enc).last_hidden_state[0].mean(0)
                f.write(f"text {text.encode().hex()}\nids {' '.join(map(str, enc['input_ids'][0].tolist()))}\n")
                f.write("emb " + " ".join(f"{x:.7g}" for x in h.tolist()) + "\n")
        print(f"{out}: {os.path.getsize(out)} bytes, {len(vocab)} tokens", file=sys.stderr)


if __name__ == "__main__":
    main()
