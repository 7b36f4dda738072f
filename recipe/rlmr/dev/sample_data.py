"""A small sample data set for demos and tests: creative prompts with checkable constraints.

    python -m recipe.rlmr.dev.sample_data OUT_DIR [--seed 0] [--per-prompt 2]

Writes OUT_DIR/prompts.jsonl (the seed prompts), OUT_DIR/augmented.jsonl (with sampled
constraints appended by ``data_prep augment``) and OUT_DIR/train.parquet, val.parquet and
rejects.jsonl (``data_prep convert``): the same path a user's data takes.

``--judge-constraint TEXT`` adds a free-text constraint (one only the judge checks) to every prompt.

``--word-limit N`` builds the other set instead: every seed prompt with the one constraint
"fewer than N words" (IFEval's ``length_constraints:number_words``). ``WORD_LIMIT_TINY`` is the
limit that the untrained tiny policy (``tiny_assets.build_policy_model``, 48 response tokens)
breaks about half the time, measured on 128 of its samples: 48% of them had fewer than 16 words
(IFEval's word count), 32% fewer than 15, 64% fewer than 17. With 8 samples per prompt a group
is then all-compliant or all-violating with probability ~1%, so RLMR's mixed groups appear at
every step by construction (the end-to-end test relies on it).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from data_prep.cli import main as data_prep

SEED_PROMPTS = [
    "Write a short poem about a lighthouse keeper's last night on duty.",
    "Write a letter from a river to the sea it has never seen.",
    "Describe a city market at dawn through the eyes of a cat.",
    "Write a fable about a fox who learns to read maps.",
    "Write a poem about the first snow of the year.",
    "Tell the story of a violin found in an attic.",
    "Write a monologue for a clockmaker who has lost track of time.",
    "Describe a thunderstorm from the point of view of a kite.",
    "Write a short story about two strangers sharing an umbrella.",
    "Write a lullaby for a ship leaving harbour at night.",
    "Write a postcard from a small village where nothing ever happens.",
    "Write a poem about an old bicycle leaning against a fence.",
    "Tell a story about a baker who bakes bread that remembers.",
    "Write a diary entry of a lighthouse cat during a storm.",
    "Describe an orchard in late autumn in the style of a travel guide.",
    "Write a short story about a letter delivered fifty years late.",
    "Write a poem about a garden that grows only at night.",
    "Tell the story of a mountain that wanted to be a cloud.",
    "Write a scene in which a grandmother teaches a child to knit.",
    "Write a poem about the sound of rain on a tin roof.",
    "Write a story about a librarian who lends out dreams.",
    "Describe a train journey across a frozen lake.",
    "Write a short story about a robot that collects seashells.",
    "Write an ode to a chipped teacup.",
    "Tell the story of the last firefly of summer.",
    "Write a poem about a harbour town waking up.",
    "Write a story about a map that changes every night.",
    "Describe a childhood kitchen in five sensory details.",
    "写一首关于秋天落叶的短诗。",
    "写一篇关于故乡小河的散文。",
    "写一个关于灯塔守护人的小故事。",
    "写一封寄给十年后自己的信。",
]


WORD_LIMIT_TINY = 16

# A free-text constraint only a judge can check, which ``FakeJudge`` (and any sensible judge) accepts
# for every on-topic answer: added with ``judge_constraint=``, it makes every sample ask the judge.
ON_TOPIC = "The response stays on the topic of the task."


def _with_judge_constraint(rows: list[dict], text: str | None) -> list[dict]:
    """``rows`` with ``{"type": "judge", "text": text}`` appended to each row's constraints."""
    if text is None:
        return rows
    return [{**row, "constraints": [*row.get("constraints", []), {"type": "judge", "text": text}]} for row in rows]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def build_word_limit(
    out_dir: str | Path,
    num_words: int = WORD_LIMIT_TINY,
    seed: int = 0,
    categories: Sequence[str] = (),
    judge_constraint: str | None = None,
    data_source: str = "rlmr_word_limit",
) -> Path:
    """Every seed prompt with one constraint: fewer than ``num_words`` words (convert's generic shape).

    ``categories``: when given, the i-th prompt starts with ``(Category: <categories[i % len]>)``, the
    marker ``CategoryScaledRM`` scales its score by (the weight sweep's data). ``judge_constraint``:
    a free-text constraint added to every prompt (for example ``ON_TOPIC``), checked by the judge."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    limit = {"type": "rule", "instruction_id": "length_constraints:number_words"}
    limit["kwargs"] = {"num_words": num_words, "relation": "less than"}
    rows = [
        {
            "prompt": (f"(Category: {categories[i % len(categories)]}) " if categories else "")
            + f"{p} Answer in fewer than {num_words} words.",
            "constraints": [limit],
        }
        for i, p in enumerate(SEED_PROMPTS)
    ]
    prompts = out / "prompts.jsonl"
    _write_jsonl(prompts, _with_judge_constraint(rows, judge_constraint))
    argv = ["convert", "--input", str(prompts), "--output-dir", str(out), "--val-ratio", "0.15"]
    if data_prep([*argv, "--seed", str(seed), "--strict", "--no-progress", "--data-source", data_source]) != 0:
        raise RuntimeError("data_prep convert failed")
    return out


def build(out_dir: str | Path, seed: int = 0, per_prompt: int = 2, judge_constraint: str | None = None) -> Path:
    """The seed prompts with ``per_prompt`` sampled rule constraints each (``data_prep augment``), plus
    ``judge_constraint`` (a free-text constraint for the judge) on every prompt when given."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prompts = out / "prompts.jsonl"
    _write_jsonl(prompts, [{"prompt": p, "data_source": "rlmr_sample"} for p in SEED_PROMPTS])
    augmented = out / "augmented.jsonl"
    argv = ["augment", "--input", str(prompts), "--output", str(augmented), "--per-prompt", str(per_prompt)]
    if data_prep([*argv, "--seed", str(seed)]) != 0:
        raise RuntimeError("data_prep augment failed")
    if judge_constraint is not None:
        rows = [json.loads(line) for line in augmented.read_text().splitlines() if line.strip()]
        _write_jsonl(augmented, _with_judge_constraint(rows, judge_constraint))
    argv = ["convert", "--input", str(augmented), "--output-dir", str(out), "--val-ratio", "0.15"]
    if data_prep([*argv, "--seed", str(seed), "--strict", "--no-progress"]) != 0:
        raise RuntimeError("data_prep convert failed")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-prompt", type=int, default=2)
    parser.add_argument("--word-limit", type=int, default=None, help="build the word-limit set with this limit")
    parser.add_argument(
        "--judge-constraint",
        default=None,
        metavar="TEXT",
        help=f"add this free-text constraint (checked by the judge) to every prompt, e.g. {ON_TOPIC!r}",
    )
    args = parser.parse_args()
    if args.word_limit is not None:
        build_word_limit(args.out_dir, args.word_limit, args.seed, judge_constraint=args.judge_constraint)
    else:
        build(args.out_dir, args.seed, args.per_prompt, judge_constraint=args.judge_constraint)


if __name__ == "__main__":
    main()
