"""BERT-family encoders (Hugging Face ``BertModel`` checkpoints, sentence-transformers embedders) to GGUF.

The file follows llama.cpp's layout for the architecture ``bert`` (its converter's tensor and key names), so
llama.cpp loads the same file:

* tensors ``token_embd``, ``token_types``, ``position_embd``, ``token_embd_norm`` (weight, bias), and per layer
  ``blk.N.attn_q/attn_k/attn_v/attn_output`` (weight, bias), ``attn_output_norm`` (LayerNorm weight, bias),
  ``ffn_up``, ``ffn_down`` (weight, bias), ``layer_output_norm``; the pooler and any MLM head are dropped;
* keys ``bert.context_length``, ``embedding_length``, ``feed_forward_length``, ``block_count``,
  ``attention.head_count``, ``attention.layer_norm_epsilon``, ``attention.causal`` (false) and ``pooling_type``
  (1 mean, 2 cls, from the sentence-transformers pooling config);
* the vocabulary as ``tokenizer.ggml.model = "bert"`` in llama.cpp's "phantom space" spelling: a word-initial
  piece is stored as U+2581 + piece, a continuation (``##piece``) without its ``##``, control tokens as they are;
  token types (1 normal, 3 control), ``tokenizer.ggml.token_type_count``, and the special ids ([CLS] as BOS,
  [SEP] as EOS and separator, [UNK], [PAD], [MASK]) with ``add_bos_token``/``add_eos_token`` true.

Two pocketlm keys that llama.cpp ignores record what its layout cannot say: ``pocketlm.embedding.normalize`` (the
sentence-transformers pipeline ends in a Normalize module) and ``tokenizer.wordpiece.lowercase`` /
``tokenizer.wordpiece.strip_accents`` / ``tokenizer.wordpiece.chinese_chars`` / ``tokenizer.wordpiece.max_word_chars``
(the BertNormalizer and WordPiece settings of tokenizer.json; llama.cpp always lower-cases).

Weights: matrices in the chosen type (f32, f16, q8_0; q8_0 falls back to f16 for a row length that is not a
multiple of 32), position and token-type embeddings in f32 (f16 for f16), vectors (norms, biases) always f32.
safetensors files are read with numpy alone; writing uses the ``gguf`` package.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["convert", "ConvertError"]

ARCH = "bert"
TOKEN_NORMAL, TOKEN_CONTROL = 1, 3
POOLING = {"mean": 1, "cls": 2}


class ConvertError(Exception):
    """The source is not a model this converter handles, or is damaged; the message says which file and what."""


# ------------------------------------------------------------------ reading the source

class _Source:
    """A model directory or a .zip of one (files may sit in one top-level folder of the zip)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.zip: Optional[zipfile.ZipFile] = None
        self.prefix = ""
        if os.path.isdir(path):
            return
        if not os.path.isfile(path):
            raise ConvertError(f"{path}: no such file or directory")
        try:
            self.zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise ConvertError(f"{path}: neither a directory nor a .zip file") from None
        names = self.zip.namelist()
        if "config.json" not in names:
            tops = [n[:-len("config.json")] for n in names if n.endswith("/config.json") and n.count("/") == 1]
            if len(tops) == 1:
                self.prefix = tops[0]

    def has(self, name: str) -> bool:
        if self.zip is None:
            return os.path.isfile(os.path.join(self.path, name))
        try:
            self.zip.getinfo(self.prefix + name)
            return True
        except KeyError:
            return False

    def read(self, name: str) -> bytes:
        if not self.has(name):
            raise ConvertError(f"{self.path}: {name} is missing")
        if self.zip is None:
            with open(os.path.join(self.path, name), "rb") as f:
                return f.read()
        return self.zip.read(self.prefix + name)

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConvertError(f"{self.path}: {name} is not valid JSON ({e})") from None

    def list(self) -> List[str]:
        if self.zip is None:
            return sorted(os.listdir(self.path))
        n = len(self.prefix)
        return sorted(x[n:] for x in self.zip.namelist() if x.startswith(self.prefix) and "/" not in x[n:])


def _read_safetensors(data: bytes, where: str) -> Dict[str, Any]:
    """Tensors of one safetensors file as float32 numpy arrays (F32, F16 and BF16 are read)."""
    import numpy as np

    if len(data) < 8:
        raise ConvertError(f"{where}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ConvertError(f"{where}: header length {n} is past the end of the file")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConvertError(f"{where}: the header is not JSON ({e})") from None
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (b0, b1) = info["dtype"], info["shape"], info["data_offsets"]
        if not 0 <= b0 <= b1 <= len(data) - base:
            raise ConvertError(f"{where}: tensor {name}: data [{b0}, {b1}) is outside the file")
        raw = data[base + b0:base + b1]
        count = 1
        for d in shape:
            count *= d
        if dtype == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dtype == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dtype == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype in ("I64", "I32"):
            continue  # position_ids buffers and the like
        else:
            raise ConvertError(f"{where}: tensor {name} has dtype {dtype} (F32, F16 and BF16 are read)")
        if arr.size != count:
            raise ConvertError(f"{where}: tensor {name}: {arr.size} values for shape {shape}")
        out[name] = arr.reshape(shape).astype(np.float32)
    return out


def _load_tensors(src: _Source) -> Dict[str, Any]:
    files = [f for f in src.list() if f.endswith(".safetensors")]
    if not files:
        raise ConvertError(f"{src.path}: no .safetensors file (PyTorch .bin checkpoints are not read)")
    tensors: Dict[str, Any] = {}
    for f in files:
        tensors.update(_read_safetensors(src.read(f), f"{src.path}: {f}"))
    return tensors


# ------------------------------------------------------------------ tokenizer

class _Vocab:
    def __init__(self) -> None:
        self.tokens: List[str] = []
        self.types: List[int] = []
        self.lowercase = True
        self.strip_accents = True
        self.chinese_chars = True
        self.max_word_chars = 100
        self.unk = "[UNK]"
        self.special: Dict[str, int] = {}


def _load_vocab(src: _Source, n_vocab: int) -> _Vocab:
    v = _Vocab()
    if src.has("tokenizer.json"):
        tj = src.json("tokenizer.json")
        model = tj.get("model") or {}
        if model.get("type") != "WordPiece":
            raise ConvertError(f"{src.path}: tokenizer.json has a {model.get('type')} model; a BERT encoder needs "
                               f"WordPiece")
        if model.get("continuing_subword_prefix", "##") != "##":
            raise ConvertError(f"{src.path}: tokenizer.json: continuing_subword_prefix "
                               f"{model['continuing_subword_prefix']!r} (only '##' is supported)")
        vocab = model.get("vocab") or {}
        v.unk = model.get("unk_token", "[UNK]")
        v.max_word_chars = int(model.get("max_input_chars_per_word", 100))
        norm = tj.get("normalizer") or {}
        if norm and norm.get("type") != "BertNormalizer":
            raise ConvertError(f"{src.path}: tokenizer.json: normalizer {norm.get('type')} (BertNormalizer is "
                               f"supported)")
        v.lowercase = bool(norm.get("lowercase", True))
        sa = norm.get("strip_accents")
        v.strip_accents = v.lowercase if sa is None else bool(sa)
        v.chinese_chars = bool(norm.get("handle_chinese_chars", True))
        added = {t["content"]: t for t in tj.get("added_tokens") or []}
        for t in added.values():
            vocab.setdefault(t["content"], t["id"])
    elif src.has("vocab.txt"):
        lines = src.read("vocab.txt").decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        vocab = {tok: i for i, tok in enumerate(lines)}
        cfg = src.json("tokenizer_config.json") if src.has("tokenizer_config.json") else {}
        v.lowercase = bool(cfg.get("do_lower_case", True))
        sa = cfg.get("strip_accents")
        v.strip_accents = v.lowercase if sa is None else bool(sa)
        v.chinese_chars = bool(cfg.get("tokenize_chinese_chars", True))
        added = {t: {"special": True} for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in vocab}
    else:
        raise ConvertError(f"{src.path}: neither tokenizer.json nor vocab.txt is present")
    if not vocab:
        raise ConvertError(f"{src.path}: the vocabulary is empty")
    by_id: Dict[int, str] = {}
    for tok, i in vocab.items():
        if not isinstance(i, int) or i < 0:
            raise ConvertError(f"{src.path}: token {tok!r} has id {i!r}")
        if i in by_id and by_id[i] != tok:
            raise ConvertError(f"{src.path}: tokens {by_id[i]!r} and {tok!r} both have id {i}")
        by_id[i] = tok
    size = max(max(by_id) + 1, n_vocab)
    if size > n_vocab:
        raise ConvertError(f"{src.path}: the tokenizer has ids up to {size - 1} but the model has {n_vocab} "
                           f"embeddings")
    for i in range(size):
        tok = by_id.get(i)
        if tok is None:  # a hole: llama.cpp's converter fills it with a padding token
            v.tokens.append(f"[PAD{i}]")
            v.types.append(TOKEN_CONTROL)
            continue
        ctrl = tok in added and added[tok].get("special", False)
        v.types.append(TOKEN_CONTROL if ctrl else TOKEN_NORMAL)
        # llama.cpp's phantom-space spelling (see the module's docstring)
        v.tokens.append(tok if ctrl else tok[2:] if tok.startswith("##") else "\u2581" + tok)
    for name in ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"):
        if name in vocab:
            v.special[name] = vocab[name]
    if v.unk not in vocab:
        raise ConvertError(f"{src.path}: the unknown token {v.unk!r} is not in the vocabulary")
    v.special["unk"] = vocab[v.unk]
    for need in ("[CLS]", "[SEP]"):
        if need not in v.special:
            raise ConvertError(f"{src.path}: the vocabulary has no {need} token")
    return v


# ------------------------------------------------------------------ pooling

def _pooling(src: _Source) -> Tuple[Optional[int], bool]:
    """(pooling type, normalize) from sentence-transformers' modules.json and pooling config."""
    if not src.has("modules.json"):
        return None, False
    mods = src.json("modules.json")
    pooling, normalize = None, False
    for m in mods:
        kind = str(m.get("type", ""))
        if kind.endswith("Pooling"):
            path = m.get("path") or ""
            cfg = src.json(f"{path}/config.json" if path else "config.json")
            if cfg.get("pooling_mode_mean_tokens"):
                pooling = POOLING["mean"]
            elif cfg.get("pooling_mode_cls_token"):
                pooling = POOLING["cls"]
            else:
                modes = [k for k, x in cfg.items() if k.startswith("pooling_mode") and x]
                raise ConvertError(f"{src.path}: {path}/config.json asks for pooling {modes}; mean and cls are "
                                   f"supported")
        elif kind.endswith("Normalize"):
            normalize = True
        elif not kind.endswith("Transformer"):
            raise ConvertError(f"{src.path}: modules.json has a {kind} module, which pocketlm does not run")
    return pooling, normalize


# ------------------------------------------------------------------ tensors

# Hugging Face name (after "bert." and "encoder.layer.N.") -> GGUF name
_GLOBAL = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}
_LAYER = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
_SKIP = ("pooler.", "cls.", "embeddings.position_ids")


def _gguf_name(name: str, n_layer: int) -> Optional[str]:
    for p in ("bert.", "model."):
        if name.startswith(p):
            name = name[len(p):]
    if name.startswith(_SKIP):
        return None
    if name in _GLOBAL:
        return _GLOBAL[name]
    if name.startswith("encoder.layer."):
        il, rest = name[len("encoder.layer."):].split(".", 1)
        stem, _, kind = rest.rpartition(".")
        if stem in _LAYER and kind in ("weight", "bias") and il.isdigit() and int(il) < n_layer:
            return f"blk.{int(il)}.{_LAYER[stem]}.{kind}"
    raise ConvertError(f"tensor {name}: no GGUF name for it (is this a BERT model?)")


def _cfg_int(cfg: Dict[str, Any], key: str, where: str) -> int:
    x = cfg.get(key)
    if not isinstance(x, int) or x <= 0:
        raise ConvertError(f"{where}: config.json: {key} is {x!r}, expected a positive integer")
    return x


def convert(src_path: str, out_path: str, out_type: str = "f16", *, name: Optional[str] = None) -> str:
    """Converts the BERT model at ``src_path`` (directory or .zip) into the GGUF file ``out_path`` with matrices of
    ``out_type`` (``"f32"``, ``"f16"`` or ``"q8_0"``); returns ``out_path``. The file is written under a temporary
    name and renamed, so ``out_path`` never holds a partial file. Raises :class:`ConvertError`."""
    try:
        import gguf
        import numpy as np
    except ImportError as e:
        raise ConvertError(f"the converter needs numpy and gguf: pip install 'pocketlm[convert]' ({e})") from None
    if out_type not in ("f32", "f16", "q8_0"):
        raise ConvertError(f"--type {out_type!r}: f32, f16 or q8_0")
    src = _Source(src_path)
    cfg = src.json("config.json")
    archs = cfg.get("architectures") or ["BertModel"]
    if cfg.get("model_type", "bert") != "bert" or not any(a.startswith("Bert") for a in archs):
        raise ConvertError(f"{src_path}: model_type {cfg.get('model_type')!r} / architectures {archs}: only BERT "
                           f"models are converted")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ConvertError(f"{src_path}: position_embedding_type {cfg['position_embedding_type']!r} (absolute only)")
    act = cfg.get("hidden_act", "gelu")
    if act != "gelu":
        raise ConvertError(f"{src_path}: hidden_act {act!r} (gelu only)")
    E, F = _cfg_int(cfg, "hidden_size", src_path), _cfg_int(cfg, "intermediate_size", src_path)
    n_layer, n_head = _cfg_int(cfg, "num_hidden_layers", src_path), _cfg_int(cfg, "num_attention_heads", src_path)
    n_ctx, n_vocab = _cfg_int(cfg, "max_position_embeddings", src_path), _cfg_int(cfg, "vocab_size", src_path)
    if E % n_head:
        raise ConvertError(f"{src_path}: hidden_size {E} is not a multiple of num_attention_heads {n_head}")
    eps = float(cfg.get("layer_norm_eps", 1e-12))

    vocab = _load_vocab(src, n_vocab)
    pooling, normalize = _pooling(src)
    tensors = _load_tensors(src)

    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[out_type]
    tmp = f"{out_path}.{os.getpid()}.part"
    w = gguf.GGUFWriter(tmp, ARCH)
    try:
        if name is None:
            base = os.path.basename(os.path.normpath(src_path))
            name = cfg.get("_name_or_path") if base in ("model.zip", "") else os.path.splitext(base)[0]
        w.add_name(str(name or "bert"))
        w.add_file_type(ftype)
        w.add_context_length(n_ctx)
        w.add_embedding_length(E)
        w.add_feed_forward_length(F)
        w.add_block_count(n_layer)
        w.add_head_count(n_head)
        w.add_layer_norm_eps(eps)
        w.add_causal_attention(False)
        if pooling is not None:
            w.add_pooling_type(gguf.PoolingType(pooling))
        w.add_bool("pocketlm.embedding.normalize", normalize)

        w.add_token_type_count(int(cfg.get("type_vocab_size", 2)))
        w.add_tokenizer_model("bert")
        w.add_tokenizer_pre("default")
        w.add_token_list(vocab.tokens)
        w.add_token_types(vocab.types)
        sp = vocab.special
        w.add_unk_token_id(sp["unk"])
        w.add_bos_token_id(sp["[CLS]"])
        w.add_eos_token_id(sp["[SEP]"])
        w.add_sep_token_id(sp["[SEP]"])
        if "[PAD]" in sp:
            w.add_pad_token_id(sp["[PAD]"])
        if "[MASK]" in sp:
            w.add_mask_token_id(sp["[MASK]"])
        w.add_add_bos_token(True)
        w.add_add_eos_token(True)
        w.add_bool("tokenizer.wordpiece.lowercase", vocab.lowercase)
        w.add_bool("tokenizer.wordpiece.strip_accents", vocab.strip_accents)
        w.add_bool("tokenizer.wordpiece.chinese_chars", vocab.chinese_chars)
        w.add_uint32("tokenizer.wordpiece.max_word_chars", vocab.max_word_chars)

        seen = set()
        for hf in sorted(tensors):
            gname = _gguf_name(hf, n_layer)
            if gname is None:
                continue
            if gname in seen:
                raise ConvertError(f"{src_path}: two tensors map to {gname}")
            seen.add(gname)
            arr = np.ascontiguousarray(tensors[hf], dtype=np.float32)
            if not np.isfinite(arr).all():
                raise ConvertError(f"{src_path}: tensor {hf} has NaN or infinite values")
            if arr.ndim == 1:
                w.add_tensor(gname, arr)
            elif gname in ("position_embd.weight", "token_types.weight") or out_type == "f32":
                w.add_tensor(gname, arr.astype(np.float16) if out_type == "f16" and gname.startswith("position")
                             else arr)
            elif out_type == "q8_0" and arr.shape[-1] % 32 == 0:
                q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
                w.add_tensor(gname, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            else:
                w.add_tensor(gname, arr.astype(np.float16))
        need = ["token_embd.weight", "position_embd.weight", "token_embd_norm.weight", "token_embd_norm.bias"]
        for il in range(n_layer):
            need += [f"blk.{il}.{t}.{k}" for t in _LAYER.values() for k in ("weight", "bias")]
        missing = [n for n in need if n not in seen]
        if missing:
            raise ConvertError(f"{src_path}: tensors missing for {', '.join(missing[:4])}"
                               f"{' ...' if len(missing) > 4 else ''}")
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out_path)
    except BaseException:
        try:
            w.close()
        except Exception:
            pass
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out_path
