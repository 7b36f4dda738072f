"""Synthetic preference pairs with a learnable preference, for tests, benchmarks and dry runs.

The chosen response is built from one word family and the rejected one from another, each with a
random filler, so a reward model can learn the preference from the words alone while no pair
repeats. Rows cycle through the accepted shapes (string prompt, chat prompt with assistant-message
answers, HH-RLHF conversations).

    python -m rewards.rm_training.synthetic OUT.jsonl [--pairs 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

PREFERRED = ["sea", "light", "moon", "river", "lantern", "silence", "morning"]
DISPREFERRED = ["noise", "map", "city", "error", "folded", "counted", "broken"]
FILLER = ["the", "a", "and", "of", "keeper", "wrote", "she", "until", "under", "with"]
PROMPTS = [
    "Write a short poem about the sea.",
    "Describe a lighthouse at night in three lines.",
    "Tell a tiny story about a fox and the moon.",
    "Write two sentences about a river.",
    "Give a title and one verse about silence.",
]


def _answer(rng: random.Random, family: list[str], words: int) -> str:
    picked = [rng.choice(family) if rng.random() < 0.5 else rng.choice(FILLER) for _ in range(words)]
    picked[rng.randrange(words)] = rng.choice(family)  # at least one word of the family
    return " ".join(picked).capitalize() + "."


def make_pairs(n: int, seed: int = 0, words: int = 8, shapes: bool = True) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = rng.choice(PROMPTS)
        good, bad = _answer(rng, PREFERRED, words), _answer(rng, DISPREFERRED, words)
        shape = i % 3 if shapes else 0
        if shape == 0:
            rows.append({"prompt": prompt, "chosen": good, "rejected": bad})
        elif shape == 1:
            rows.append(
                {
                    "prompt": [{"role": "system", "content": "You are a poet."}, {"role": "user", "content": prompt}],
                    "chosen": [{"role": "assistant", "content": good}],
                    "rejected": [{"role": "assistant", "content": bad}],
                }
            )
        else:
            turn = f"\n\nHuman: {prompt}\n\nAssistant: "
            rows.append({"chosen": turn + good, "rejected": turn + bad})
    return rows


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_jsonl(args.out, make_pairs(args.pairs, args.seed))
    print(f"wrote {args.pairs} pairs to {args.out}")


if __name__ == "__main__":
    main()
