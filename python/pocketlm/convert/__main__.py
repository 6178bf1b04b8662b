"""``python -m pocketlm.convert SRC -o OUT.gguf [--type f32|f16|q8_0]`` and
``python -m pocketlm.convert --lora ADAPTER_DIR --base BASE.gguf -o OUT.gguf``: see :mod:`pocketlm.convert`."""

import argparse
import sys

from .bert import ConvertError, convert
from .lora import convert_lora


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pocketlm.convert",
                                 description="Convert a Hugging Face / sentence-transformers BERT model "
                                             "(directory or .zip) to GGUF (llama.cpp's 'bert' layout), or a PEFT "
                                             "LoRA adapter directory to a GGUF adapter (--lora, --base).")
    ap.add_argument("src", nargs="?", help="model directory or .zip (config.json, *.safetensors, tokenizer.json)")
    ap.add_argument("--lora", metavar="ADAPTER_DIR",
                    help="convert this PEFT adapter (adapter_config.json, adapter_model.safetensors) instead")
    ap.add_argument("--base", metavar="BASE.gguf", help="with --lora: the GGUF model the adapter is for")
    ap.add_argument("-o", "--output", required=True, help="the GGUF file to write")
    ap.add_argument("--type", default="f16", choices=["f32", "f16", "q8_0"],
                    help="type of the weight matrices (default f16); vectors stay f32")
    ap.add_argument("--name", default=None, help="general.name (default: the source's name)")
    args = ap.parse_args(argv)
    if args.lora and (args.src or not args.base):
        ap.error("--lora takes --base BASE.gguf and no SRC")
    if not args.lora and not args.src:
        ap.error("give SRC, or --lora ADAPTER_DIR --base BASE.gguf")
    try:
        if args.lora:
            convert_lora(args.lora, args.base, args.output, args.type)
        else:
            convert(args.src, args.output, args.type, name=args.name)
    except ConvertError as e:
        print(f"pocketlm.convert: error: {e}", file=sys.stderr)
        return 1
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
