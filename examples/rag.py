#!/usr/bin/env python3
"""Answer questions from your own documents: retrieve with a sentence embedder, answer with a small chat model.

Retrieval-augmented generation (RAG) in one process on the CPU. all-MiniLM-L6-v2 (a BERT sentence embedder,
fetched and converted by ``python -m pocketlm download all-minilm-l6-v2``, which needs the convert extra) embeds
every passage once; a question is embedded the same way and the passages closest to it (cosine similarity of
the unit vectors: a dot product) go into the prompt of the default chat model, which answers from them.

    python examples/rag.py                                  # the sample questions below
    python examples/rag.py "Where does the Danube end?"     # your own question
    python examples/rag.py --top-k 3 --threads 2

The documents here are a few paragraphs; with your own, split them into passages of a few sentences and embed
them once (``Model.embed`` takes a list and returns one row per passage).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Tuple

import pocketlm

DOCUMENTS: List[str] = [
    "The Danube is Europe's second-longest river. It rises in the Black Forest in Germany and flows "
    "to the Black Sea, where it ends in a large delta in Romania and Ukraine.",
    "Mount Kilimanjaro in Tanzania is the highest mountain in Africa, at 5,895 metres. Its summit, "
    "Uhuru Peak, is on the volcanic cone Kibo.",
    "Honey bees communicate the direction and distance of flowers with a waggle dance performed on "
    "the honeycomb inside the hive.",
    "The Eiffel Tower in Paris was completed in 1889 for the World's Fair. It is 330 metres tall "
    "and was the tallest man-made structure until 1930.",
    "Photosynthesis turns light, water and carbon dioxide into glucose and oxygen. It takes place in "
    "the chloroplasts of plant cells.",
    "The Great Barrier Reef off the coast of Queensland, Australia, is the world's largest coral reef "
    "system, made of nearly 3,000 individual reefs.",
    "A leap year has 366 days: February gets a 29th day. Years divisible by 4 are leap years, except "
    "years divisible by 100 that are not divisible by 400.",
    "Penguins live almost only in the Southern Hemisphere. The emperor penguin is the tallest species "
    "and breeds during the Antarctic winter.",
]

QUESTIONS = [
    "Where does the Danube river end?",
    "How tall is the Eiffel Tower?",
    "How do bees tell each other where flowers are?",
]


def retrieve(embedder: pocketlm.Model, passages: List[str], vectors, question: str, k: int) -> List[Tuple[float, str]]:
    """The k passages whose embeddings are closest to the question's, best first, with their cosine."""
    q = embedder.embed(question)
    scores = vectors @ q
    best = sorted(range(len(passages)), key=lambda i: -scores[i])[:k]
    return [(float(scores[i]), passages[i]) for i in best]


def answer(chat_model: pocketlm.Model, question: str, context: List[str]) -> str:
    notes = "\n".join(f"- {p}" for p in context)
    prompt = (f"Answer the question in one short sentence, using only these notes.\n\nNotes:\n{notes}\n\n"
              f"Question: {question}")
    return chat_model.chat(prompt, max_tokens=48, temperature=0).strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("questions", nargs="*", help="questions (default: the samples)")
    ap.add_argument("--top-k", type=int, default=2, help="passages given to the chat model (default 2)")
    ap.add_argument("--threads", type=int, default=0, help="threads per model (0: one per core)")
    args = ap.parse_args(argv)
    try:
        embedder = pocketlm.Model(pocketlm.download("all-minilm-l6-v2"), n_threads=args.threads)
    except pocketlm.Error as e:
        print(f"rag.py: cannot get the embedder: {e}", file=sys.stderr)
        return 1
    chat_model = pocketlm.Model(n_threads=args.threads)
    t0 = time.perf_counter()
    vectors = embedder.embed(DOCUMENTS)
    print(f"embedded {len(DOCUMENTS)} passages in {(time.perf_counter() - t0) * 1000:.0f} ms")
    for question in args.questions or QUESTIONS:
        hits = retrieve(embedder, DOCUMENTS, vectors, question, args.top_k)
        print(f"\nQ: {question}")
        for score, passage in hits:
            print(f"  [{score:.2f}] {passage[:70]}...")
        print(f"A: {answer(chat_model, question, [p for _, p in hits])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
