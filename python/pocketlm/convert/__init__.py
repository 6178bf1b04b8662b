"""Converters from Hugging Face checkpoints to GGUF files that pocketlm (and llama.cpp) load.

    python -m pocketlm.convert SRC -o OUT.gguf [--type f32|f16|q8_0]

SRC is a directory or a .zip of a Hugging Face / sentence-transformers model: ``config.json``, ``*.safetensors``,
``tokenizer.json``, and for sentence-transformers the pooling config (``1_Pooling/config.json``) and ``modules.json``.
Only BERT-family encoders (``BertModel``, sentence embedders such as all-MiniLM-L6-v2) are handled so far; see
:mod:`pocketlm.convert.bert`. Needs the ``convert`` extra: ``pip install "pocketlm[convert]"`` (numpy and gguf).
"""

from .bert import ConvertError, convert

__all__ = ["convert", "ConvertError"]
