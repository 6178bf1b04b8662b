"""``python -m pocketlm.convert SRC -o OUT.gguf [--type f32|f16|q8_0]``: see :mod:`pocketlm.convert`."""

import argparse
import sys

from .bert import ConvertError, convert


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pocketlm.convert",
                                 description="Convert a Hugging Face / sentence-transformers BERT model "
                                             "(directory or .zip) to GGUF (llama.cpp's 'bert' layout).")
    ap.add_argument("src", help="model directory or .zip (config.json, *.safetensors, tokenizer.json)")
    ap.add_argument("-o", "--output", required=True, help="the GGUF file to write")
    ap.add_argument("--type", default="f16", choices=["f32", "f16", "q8_0"],
                    help="type of the weight matrices (default f16); vectors stay f32")
    ap.add_argument("--name", default=None, help="general.name (default: the source's name)")
    args = ap.parse_args(argv)
    try:
        convert(args.src, args.output, args.type, name=args.name)
    except ConvertError as e:
        print(f"pocketlm.convert: error: {e}", file=sys.stderr)
        return 1
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
