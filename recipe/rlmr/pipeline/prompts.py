"""Stage ``prompts``: creative prompts with checkable constraints, split into training and held-out sets.

Each prompt is a genre and a subject (``GENRES`` x ``SUBJECTS``) with a "fewer than N words" limit and
1 to ``max_extras`` more IFEval constraints (``EXTRAS``: a keyword, no commas, an end phrase, a title), stated in
the prompt and stored as IFEval instruction ids, so the reward's rule checks and ``evaluation ifeval``
read the same spec. The split is by subject: every fourth subject is held out, so evaluation prompts
are about things no training prompt mentions. Deterministic in the seed.

Outputs (under ``WORKDIR/prompts``):
    train.jsonl     training prompts in ``data_prep convert``'s generic shape (prompt, constraints)
    data/           ``data_prep convert`` of train.jsonl (+ expanded.jsonl): train.parquet, val.parquet
    train_eval.jsonl, heldout.jsonl
                    the same prompts in IFEval's shape (key, prompt, instruction_id_list, kwargs), the
                    files ``evaluation generate`` and ``evaluation ifeval`` read
``--expand-url`` adds ``data_prep expand``'s self-instruct prompts (seeded with train.jsonl) to the
training set; a low yield is tolerated and reported.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

GENRES = ["poem", "short story", "letter", "diary entry", "fable", "speech", "song", "scene"]
SUBJECTS = [
    "a lighthouse keeper",
    "a lost umbrella",
    "the first snow",
    "an old violin",
    "a night train",
    "a garden in drought",
    "a retired astronaut",
    "a bakery at dawn",
    "a stray dog",
    "a forgotten library",
    "the last ferry",
    "a paper kite",
    "a mountain village",
    "a broken clock",
    "a fisherman's daughter",
    "a summer storm",
    "a chess champion",
    "a desert well",
    "an abandoned station",
    "a beekeeper",
    "a wedding in the rain",
    "a hospital night shift",
    "a migrating bird",
    "a candle maker",
    "a frozen lake",
    "a street musician",
    "a harvest festival",
    "a time capsule",
    "a river crossing",
    "an empty theatre",
    "a cartographer",
    "a family recipe",
    "a power cut",
    "a glass blower",
    "a moving day",
    "an orchard in autumn",
    "a night market",
    "a telescope",
    "a sandcastle",
    "a school reunion",
    "a shipwreck",
    "a windmill",
    "a postman",
    "a tea ceremony",
    "a fox in the city",
    "a radio operator",
    "a quilt",
    "a marathon runner",
]
KEYWORDS = ["lantern", "compass", "harbour", "feather", "silver", "window", "thunder", "meadow", "anchor", "ember"]
END_PHRASES = ["And that was enough.", "The door stayed open.", "Nothing else remained."]


def _keyword(rng: random.Random) -> tuple[str, dict]:
    word = rng.choice(KEYWORDS)
    return f"Use the word '{word}'.", {"instruction_id": "keywords:existence", "kwargs": {"keywords": [word]}}


def _no_comma(rng: random.Random) -> tuple[str, dict]:
    return "Do not use any commas.", {"instruction_id": "punctuation:no_comma", "kwargs": {}}


def _end_phrase(rng: random.Random) -> tuple[str, dict]:
    phrase = rng.choice(END_PHRASES)
    text = f"End your response with the exact phrase '{phrase}' and nothing after it."
    return text, {"instruction_id": "startend:end_checker", "kwargs": {"end_phrase": phrase}}


def _title(rng: random.Random) -> tuple[str, dict]:
    return "Give it a title wrapped in double angular brackets, like <<title>>.", {
        "instruction_id": "detectable_format:title",
        "kwargs": {},
    }


EXTRAS = {"keyword": _keyword, "no_comma": _no_comma, "end_phrase": _end_phrase, "title": _title}


def make_prompt(
    genre: str, subject: str, word_limit: int, rng: random.Random, extras=tuple(EXTRAS), max_extras: int = 2
) -> dict:
    """One prompt in ``data_prep convert``'s generic shape: text and rule constraints."""
    limit = {
        "instruction_id": "length_constraints:number_words",
        "kwargs": {"num_words": word_limit, "relation": "less than"},
    }
    unknown = set(extras) - set(EXTRAS)
    if unknown:
        raise ValueError(f"unknown extra constraint kind(s) {sorted(unknown)}; known: {sorted(EXTRAS)}")
    count = rng.randint(1, max(1, min(max_extras, len(extras))))
    drawn = [EXTRAS[name](rng) for name in rng.sample(sorted(extras), count)]
    sentences = [f"Write a {genre} about {subject}.", f"Answer in fewer than {word_limit} words."]
    sentences += [text for text, _ in drawn]
    constraints = [{"type": "rule", **c} for c in [limit, *(spec for _, spec in drawn)]]
    return {"prompt": " ".join(sentences), "constraints": constraints}


def build_prompt_sets(
    train: int, heldout: int, word_limit: int, seed: int, extras=tuple(EXTRAS), max_extras: int = 2
) -> tuple[list[dict], list[dict]]:
    """(training prompts, held-out prompts); held-out subjects never appear in training prompts."""
    rng = random.Random(seed)
    held_subjects = SUBJECTS[3::4]
    train_subjects = [s for s in SUBJECTS if s not in held_subjects]
    pools = []
    for subjects in (train_subjects, held_subjects):
        combos = [(g, s) for s in subjects for g in GENRES]
        rng.shuffle(combos)
        pools.append(combos)
    if train > len(pools[0]) or heldout > len(pools[1]):
        raise ValueError(f"at most {len(pools[0])} training and {len(pools[1])} held-out prompts can be built")
    return (
        [make_prompt(g, s, word_limit, rng, extras, max_extras) for g, s in pools[0][:train]],
        [make_prompt(g, s, word_limit, rng, extras, max_extras) for g, s in pools[1][:heldout]],
    )


def ifeval_rows(rows: list[dict], prefix: str) -> list[dict]:
    """The prompts in IFEval's shape (what ``evaluation generate`` and ``evaluation ifeval`` read)."""
    return [
        {
            "key": f"{prefix}{i}",
            "prompt": row["prompt"],
            "instruction_id_list": [c["instruction_id"] for c in row["constraints"]],
            "kwargs": [c["kwargs"] for c in row["constraints"]],
        }
        for i, row in enumerate(rows)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict]:
    """One object per line. Lines end at "\n" only: ``str.splitlines`` would also cut at U+0085 and U+2028,
    which JSON leaves unescaped and which a random policy does write."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {number}: not a JSON object ({error.msg})") from error
    return rows


def run_prompts(out: Path, preset, expand_url: str | None = None, expand_model: str | None = None) -> dict:
    """Write the prompt files (module docstring); returns counts for the summary."""
    from data_prep.cli import main as data_prep

    train, heldout = build_prompt_sets(
        preset.train_prompts, preset.heldout_prompts, preset.word_limit, preset.seed, preset.extras, preset.max_extras
    )
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "train_eval.jsonl", ifeval_rows(train, "train-"))
    write_jsonl(out / "heldout.jsonl", ifeval_rows(heldout, "heldout-"))
    inputs = [str(out / "train.jsonl")]
    expanded = 0
    if expand_url:
        target = out / "expanded.jsonl"
        argv = ["expand", "--seeds", str(out / "train.jsonl"), "--base-url", expand_url, "--model", expand_model or ""]
        argv += ["--target", str(preset.train_prompts), "--output", str(target), "--seed", str(preset.seed)]
        code = data_prep([*argv, "--max-failures", str(4 * preset.train_prompts), "--no-progress"])
        if target.exists():
            expanded = len(read_jsonl(target))
            inputs.append(str(target))
        print(f"[pipeline] expand: {expanded} prompts from {expand_url} (exit {code}); a low yield is tolerated")
    argv = ["convert", "--input", *inputs, "--output-dir", str(out / "data"), "--val-ratio", "0.1"]
    if data_prep([*argv, "--seed", str(preset.seed), "--no-progress", "--data-source", "rlmr_pipeline"]) != 0:
        raise RuntimeError(f"data_prep convert failed on {inputs} (rejects: {out / 'data' / 'rejects.jsonl'})")
    return {"train_prompts": len(train), "heldout_prompts": len(heldout), "expanded_prompts": expanded}
