"""Converters from Hugging Face checkpoints to GGUF files that pocketlm (and llama.cpp) load.

    python -m pocketlm.convert SRC -o OUT.gguf [--type f32|f16|q8_0]

SRC is a directory or a .zip of a Hugging Face / sentence-transformers model: ``config.json``, ``*.safetensors``,
``tokenizer.json``, and for sentence-transformers the pooling config (``1_Pooling/config.json``) and ``modules.json``.
Only BERT-family encoders (``BertModel``, sentence embedders such as all-MiniLM-L6-v2) are handled so far; see
:mod:`pocketlm.convert.bert`. Needs the ``convert`` extra: ``pip install "pocketlm[convert]"`` (numpy and gguf).

PEFT LoRA adapters (``adapter_config.json`` + ``adapter_model.safetensors``) become GGUF adapters in llama.cpp's layout
with ``python -m pocketlm.convert --lora ADAPTER_DIR --base BASE.gguf -o OUT.gguf``; see :mod:`pocketlm.convert.lora`.
"""

from .bert import ConvertError, convert
from .lora import convert_lora

__all__ = ["convert", "convert_lora", "ConvertError"]
