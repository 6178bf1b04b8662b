#!/usr/bin/env python3
"""Pull structured records out of free text with a small model on the CPU: every record parses.

Support messages arrive as free text; each becomes a record with fixed fields (product, problem, severity,
whether the customer wants a refund) that a spreadsheet or a database can take. The fields are a pydantic
model (without pydantic, the same JSON Schema as a dict); pocketlm constrains generation token by token, so
every reply is JSON that validates against it, and runs all the messages together (``chat_many``: one
batched decode per step, each message its own grammar state). The customer's mood is picked from a fixed
list with ``choices=``: classification through the same constraint machinery.

    python examples/extract.py                   # the sample messages below, as a table
    python examples/extract.py --file msgs.txt   # one message per line ("-": stdin)
    python examples/extract.py --json            # one JSON record per line instead

With the default 135M model the records always parse and validate; how well the fields are filled is the
model's: a larger GGUF (``--model``) fills them better with the same code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Optional

import pocketlm

SAMPLE_MESSAGES: List[str] = [
    "My new blender stopped working after two days. I want my money back!",
    "The headphones you sent have a crackling left speaker. Can you send a replacement?",
    "Thanks, the coffee machine works great now that I descaled it.",
    "I was charged twice for the same keyboard order. Please refund one payment.",
    "The phone case arrived cracked and the box was soaked. Very disappointed.",
    "How do I pair the smartwatch with a second phone?",
]

INSTRUCTION = ("Read the customer's message and fill in the record: the product it is about, the problem in a "
               "few words, how severe it is, and whether the customer asks for a refund.")

#: Worked examples before each message: a small model copies the pattern far better than it follows the
#: instruction alone. Every conversation starts the same way, so chat_many evaluates this part once.
EXAMPLES = [
    ("The vacuum cleaner I bought last week makes a loud noise and smells burnt. Refund me please.",
     '{"product": "vacuum cleaner", "problem": "loud noise, burnt smell", "severity": "high", "refund": true}'),
    ("Where can I find the manual for my desk lamp?",
     '{"product": "desk lamp", "problem": "manual not found", "severity": "low", "refund": false}'),
]

MOODS = ["angry", "neutral", "happy"]

#: The record as JSON Schema (what ``Record.model_json_schema()`` gives, written out for use without pydantic).
RECORD_SCHEMA: Dict[str, Any] = {
    "type": "object",
    "properties": {
        "product": {"type": "string", "maxLength": 30},
        "problem": {"type": "string", "maxLength": 60},
        "severity": {"enum": ["low", "medium", "high"]},
        "refund": {"type": "boolean"},
    },
    "required": ["product", "problem", "severity", "refund"],
}


def record_type() -> Any:
    """The record as a pydantic model, or the JSON Schema dict when pydantic is not installed."""
    try:
        from typing import Literal

        from pydantic import BaseModel, Field
    except ImportError:
        return RECORD_SCHEMA

    class Record(BaseModel):
        product: str = Field(max_length=30)
        problem: str = Field(max_length=60)
        severity: Literal["low", "medium", "high"]
        refund: bool

    return Record


def extract(model: pocketlm.Model, messages: List[str], schema: Any) -> List[Dict[str, Any]]:
    """One record per message (dicts), all messages generated together."""
    head = [{"role": "system", "content": INSTRUCTION}]
    for text, record in EXAMPLES:
        head += [{"role": "user", "content": text}, {"role": "assistant", "content": record}]
    convs = [head + [{"role": "user", "content": m}] for m in messages]
    texts = model.chat_many(convs, json_schema=schema, temperature=0, max_tokens=160, progress=False)
    records = []
    for text in texts:
        # the grammar guarantees the shape; max_tokens is far above what the bounded fields can take
        value = json.loads(text or "")
        if not isinstance(schema, dict):
            value = schema.model_validate(value).model_dump()
        records.append(value)
    return records


def moods(model: pocketlm.Model, messages: List[str]) -> List[str]:
    """The customer's mood, one of MOODS, for each message."""
    convs = [[{"role": "user", "content": f"Message: {m}\nIs the customer {', '.join(MOODS[:-1])} or {MOODS[-1]}?"
               " Answer with one word."}] for m in messages]
    return [str(x) for x in model.chat_many(convs, choices=MOODS, temperature=0, progress=False)]


def table(rows: List[Dict[str, Any]], columns: List[str]) -> str:
    """A plain text table, each column as wide as its widest cell.

    >>> print(table([{"a": 1, "b": "xy"}], ["a", "b"]))
    a | b
    --+---
    1 | xy
    """
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", help="one message per line ('-': stdin)")
    ap.add_argument("--json", action="store_true", help="one JSON record per line instead of a table")
    ap.add_argument("--model", help="a GGUF file (default: the embedded default model)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.file:
        f = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
        with f:
            messages = [line.strip() for line in f if line.strip()]
    else:
        messages = SAMPLE_MESSAGES
    model = pocketlm.Model(args.model, n_threads=args.threads)
    t = time.perf_counter()
    rows = extract(model, messages, record_type())
    for row, mood, msg in zip(rows, moods(model, messages), messages):
        row["mood"] = mood
        row["message"] = msg
    dt = time.perf_counter() - t
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        print(table(rows, ["product", "problem", "severity", "refund", "mood", "message"]))
    print(f"extracted {len(rows)} records in {dt:.1f} s", file=sys.stderr)
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
