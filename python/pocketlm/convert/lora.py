"""PEFT LoRA adapters (``adapter_config.json`` + ``adapter_model.safetensors``) to GGUF adapters.

    python -m pocketlm.convert --lora ADAPTER_DIR --base BASE.gguf -o OUT.gguf [--type f32|f16|q8_0]

The file follows llama.cpp's adapter layout, so llama.cpp loads it too: ``general.type = "adapter"``,
``adapter.type = "lora"``, ``adapter.lora.alpha``, ``general.architecture`` of the base, and for each target a pair
``<base tensor>.lora_a`` (PEFT's ``lora_A``: rank rows of n_in) and ``<base tensor>.lora_b`` (``lora_B``: n_out rows of
rank), where ``<base tensor>`` is the base GGUF's name of the projection (``blk.N.attn_q.weight`` for
``model.layers.N.self_attn.q_proj``; likewise k, v, o, and ``mlp.gate_proj/up_proj/down_proj`` as ffn_gate/up/down).
Every pair is checked against the base file: the tensor exists, lora_a's rows are as long as its rows, lora_b has as
many rows as it. For the ``llama`` architecture the converter of the base permuted the rows of Q and K (interleaved
RoPE pairs); the rows of their lora_b are permuted the same way.

Scale: PEFT multiplies B A by ``lora_alpha / r``; the file's alpha is ``lora_alpha`` (``lora_alpha * sqrt(r)`` for
rsLoRA, whose scale is ``lora_alpha / sqrt(r)``), and pocketlm and llama.cpp scale by ``alpha / rank``. DoRA,
``fan_in_fan_out`` and per-module rank or alpha patterns are refused.

Types: ``f16`` (default), ``f32``, or ``q8_0`` for matrices whose rows are whole 32-element blocks (the others f16).
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Dict, Optional, Tuple

from .bert import ConvertError, _load_tensors, _Source

_MODULES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
            "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
            "mlp.down_proj": "ffn_down"}
_ARCHS = ("llama", "qwen2", "qwen3", "gemma2", "gemma3")
_NAME = re.compile(r"^(?:base_model\.model\.)?(?:model\.)?layers\.(\d+)\.([a-z_]+\.[a-z_]+)\.lora_([AB])"
                   r"(?:\.[A-Za-z0-9_]+)?\.weight$")


def _permute(w: Any, n_head: int) -> Any:
    """HF's rotate-half Q/K rows -> interleaved pairs, as the base's converter did for llama."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _base_info(path: str) -> Tuple[str, Dict[str, Tuple[int, int]], int, int]:
    """The base GGUF's architecture, its 2-D tensors' (n_in, n_out), and its head counts."""
    import gguf

    try:
        r = gguf.GGUFReader(path)
    except (OSError, ValueError) as e:
        raise ConvertError(f"{path}: cannot read the base GGUF ({e})") from None

    def field(key: str) -> Optional[Any]:
        f = r.fields.get(key)
        return None if f is None else f.contents()

    arch = field("general.architecture")
    if not isinstance(arch, str):
        raise ConvertError(f"{path}: no general.architecture")
    shapes = {t.name: (int(t.shape[0]), int(t.shape[1])) for t in r.tensors if len(t.shape) >= 2}
    n_head = field(f"{arch}.attention.head_count")
    n_head_kv = field(f"{arch}.attention.head_count_kv") or n_head
    return arch, shapes, int(n_head or 0), int(n_head_kv or 0)


def convert_lora(adapter_dir: str, base_path: str, out_path: str, out_type: str = "f16") -> str:
    """Converts the PEFT adapter directory ``adapter_dir`` for the model ``base_path`` (a GGUF) into the GGUF adapter
    ``out_path``; returns ``out_path``. Written under a temporary name and renamed. Raises :class:`ConvertError`."""
    try:
        import gguf
        import numpy as np
    except ImportError as e:
        raise ConvertError(f"the converter needs numpy and gguf: pip install 'pocketlm[convert]' ({e})") from None
    if out_type not in ("f32", "f16", "q8_0"):
        raise ConvertError(f"--type {out_type!r}: f32, f16 or q8_0")
    src = _Source(adapter_dir)
    cfg = src.json("adapter_config.json")
    where = f"{adapter_dir}: adapter_config.json"
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ConvertError(f"{where}: peft_type {cfg.get('peft_type')!r}; only LORA adapters are converted")
    for key in ("use_dora", "fan_in_fan_out"):
        if cfg.get(key):
            raise ConvertError(f"{where}: {key} is set, which pocketlm does not apply")
    for key in ("rank_pattern", "alpha_pattern"):
        if cfg.get(key):
            raise ConvertError(f"{where}: {key} gives modules their own rank or alpha, which is not supported")
    try:
        r, alpha = int(cfg["r"]), float(cfg.get("lora_alpha", cfg["r"]))
    except (KeyError, TypeError, ValueError):
        raise ConvertError(f"{where}: needs an integer r and a number lora_alpha") from None
    if r < 1:
        raise ConvertError(f"{where}: r is {r}")
    if cfg.get("use_rslora"):
        alpha *= math.sqrt(r)

    arch, shapes, n_head, n_head_kv = _base_info(base_path)
    if arch not in _ARCHS:
        raise ConvertError(f"{base_path}: architecture {arch!r}; adapters are converted for {', '.join(_ARCHS)}")
    tensors = _load_tensors(src)

    pairs: Dict[str, Dict[str, Any]] = {}
    for hf, arr in tensors.items():
        m = _NAME.match(hf)
        if not m or m.group(2) not in _MODULES:
            raise ConvertError(f"{adapter_dir}: tensor {hf} is not a LoRA matrix of a q/k/v/o/gate/up/down projection")
        name = f"blk.{int(m.group(1))}.{_MODULES[m.group(2)]}.weight"
        if m.group(3) in pairs.setdefault(name, {}):
            raise ConvertError(f"{adapter_dir}: two lora_{m.group(3)} tensors for {name}")
        pairs[name][m.group(3)] = arr
    if not pairs:
        raise ConvertError(f"{adapter_dir}: no LoRA tensors")

    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[out_type]
    tmp = f"{out_path}.{os.getpid()}.part"
    w = gguf.GGUFWriter(tmp, arch)
    try:
        w.add_string("general.type", "adapter")
        w.add_string("adapter.type", "lora")
        w.add_float32("adapter.lora.alpha", alpha)
        w.add_name(os.path.basename(os.path.normpath(adapter_dir)) or "lora")
        w.add_file_type(ftype)

        def put(name: str, arr: Any) -> None:
            if out_type == "f32":
                w.add_tensor(name, arr)
            elif out_type == "q8_0" and arr.shape[-1] % 32 == 0:
                w.add_tensor(name, gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0),
                             raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            else:
                w.add_tensor(name, arr.astype(np.float16))

        for name in sorted(pairs, key=lambda n: (int(n.split(".")[1]), n)):
            p = pairs[name]
            if "A" not in p or "B" not in p:
                raise ConvertError(f"{adapter_dir}: {name} has lora_{'A' if 'B' in p else 'B'} without its partner")
            if name not in shapes:
                raise ConvertError(f"{adapter_dir}: the adapter targets {name}, which {base_path} does not have")
            n_in, n_out = shapes[name]
            a = np.ascontiguousarray(p["A"], dtype=np.float32)
            b = np.ascontiguousarray(p["B"], dtype=np.float32)
            if a.ndim != 2 or b.ndim != 2 or a.shape != (r, n_in) or b.shape != (n_out, r):
                raise ConvertError(f"{adapter_dir}: {name}: lora_A {list(a.shape)} and lora_B {list(b.shape)} do not "
                                   f"fit the base tensor (n_out {n_out}, n_in {n_in}) at rank {r}: expected "
                                   f"[{r}, {n_in}] and [{n_out}, {r}]")
            if not (np.isfinite(a).all() and np.isfinite(b).all()):
                raise ConvertError(f"{adapter_dir}: {name} has NaN or infinite values")
            if arch == "llama" and ".attn_q." in name:
                b = np.ascontiguousarray(_permute(b, n_head))
            elif arch == "llama" and ".attn_k." in name:
                b = np.ascontiguousarray(_permute(b, n_head_kv))
            put(name[:-len("weight")] + "weight.lora_a", a)
            put(name[:-len("weight")] + "weight.lora_b", b)
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
