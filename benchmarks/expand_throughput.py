"""`expand` throughput against a scripted 200 ms server, and its near-duplicate check at 100K prompts.

    python benchmarks/expand_throughput.py [--latency-ms 200] [--concurrency 16 64] [--target 800]
                                           [--dedup-prompts 100000]

1. Candidates per second: the scripted chat server (``recipe.rlmr.dev.servers.chat``) runs in a
   process of its own (so it does not share the client's GIL), answers every request after
   ``--latency-ms`` with a unique valid task, and serves at most ``concurrency`` requests at once.
   The ideal is ``concurrency / latency`` candidates per second; the figure printed is the measured
   rate and its fraction of the ideal (wall time of ``expand`` with imports already done: seeds,
   request loop, validation, dedup, journal writes).
2. Dedup: ``NearDuplicateIndex.check_and_add`` over synthetic prompts (a shared template, 14 words
   drawn from 5,000 made-up ones, 5% near copies with one word changed, 1% exact copies): time,
   prompts per second, peak resident memory added, and how many planted copies were caught.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [
    {
        "prompt": "Write a poem about rain on a tin roof. Use at most 80 words.",
        "constraints": [{"type": "rule", "instruction_id": "rlmr:word_range", "kwargs": {"max_words": 80}}],
    },
    {
        "prompt": "Write a letter from a lighthouse keeper to her sister, in the second person.",
        "constraints": [{"type": "judge", "text": "The letter is written in the second person."}],
    },
]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def throughput(latency_ms: float, concurrency: int, target: int) -> None:
    from data_prep.expand import ExpandOptions, expand, instruction_catalog

    instruction_catalog()  # imports lm-eval's IFEval modules once, outside the timing
    from recipe.rlmr.dev.servers.base import announced_server

    command = [sys.executable, "-m", "recipe.rlmr.dev.servers.chat", "scripted", "--latency-ms", str(latency_ms)]
    with announced_server([*command, "--slots", str(concurrency)]) as port:
        work = Path(tempfile.mkdtemp(prefix="rlmr-expand-bench-"))
        seeds = work / "seeds.jsonl"
        seeds.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
        options = ExpandOptions(
            seeds=[str(seeds)],
            base_url=f"http://127.0.0.1:{port}",
            model="scripted",
            target=target,
            output=str(work / "expanded.jsonl"),
            concurrency=concurrency,
            progress=False,
        )
        start, cpu = time.perf_counter(), time.process_time()
        summary = expand(options)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    rate = summary.candidates / elapsed
    ideal = concurrency / (latency_ms / 1000)
    print(
        f"concurrency {concurrency:>3}, latency {latency_ms:.0f} ms: {summary.candidates} candidates "
        f"({summary.kept} kept) in {elapsed:.2f} s = {rate:.1f}/s; ideal {ideal:.1f}/s -> {rate / ideal:.1%} of ideal; "
        f"client CPU {1000 * cpu / summary.candidates:.1f} ms per candidate"
    )


def synthetic_prompts(count: int, seed: int = 0) -> tuple[list[str], int, int]:
    rng = random.Random(seed)
    syllables = [c + v for c in "bdfghklmnprstvz" for v in "aeiou"]
    vocabulary = sorted({rng.choice(syllables) + rng.choice(syllables) + rng.choice(syllables) for _ in range(6000)})
    vocabulary = vocabulary[:5000]
    genres = ["poem", "short story", "letter", "speech", "fable", "diary entry", "song", "scene"]
    prompts: list[str] = []
    near = exact = 0
    for _ in range(count):
        roll = rng.random()
        if prompts and roll < 0.05:
            words = rng.choice(prompts).split(" ")
            slot = rng.randrange(5, len(words) - 6)  # a content word, not the template
            words[slot] = rng.choice(vocabulary)
            prompts.append(" ".join(words))
            near += 1
        elif prompts and roll < 0.06:
            prompts.append(rng.choice(prompts))
            exact += 1
        else:
            topic = " ".join(rng.choice(vocabulary) for _ in range(14))
            limit = rng.choice([80, 120, 200, 300])
            genre = rng.choice(genres)
            prompts.append(f"Write a {genre} about {topic}. Use at most {limit} words and give it a title.")
    return prompts, near, exact


def dedup(count: int, similarity: float) -> None:
    from data_prep.dedup import NearDuplicateIndex

    prompts, near, exact = synthetic_prompts(count)
    before = peak_rss_mib()
    index = NearDuplicateIndex(similarity)
    found = {"duplicate": 0, "near_duplicate": 0}
    start, cpu = time.perf_counter(), time.process_time()
    for i, prompt in enumerate(prompts):
        match = index.check_and_add(prompt, f"row {i}")
        if match is not None:
            found[match.reason] += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"dedup {count} prompts at similarity {similarity}: {elapsed:.1f} s wall, {cpu:.1f} s CPU "
        f"({count / cpu:,.0f} prompts per CPU second), "
        f"peak RSS +{peak_rss_mib() - before:,.0f} MiB ({peak_rss_mib():,.0f} MiB in all); "
        f"planted {near} near + {exact} exact copies = {near + exact}, caught {found['near_duplicate']} near + "
        f"{found['duplicate']} exact = {sum(found.values())} (an exact copy of a rejected near copy counts as near)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--target", type=int, default=800)
    parser.add_argument("--dedup-prompts", type=int, default=100_000)
    parser.add_argument("--similarity", type=float, default=0.7)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    for concurrency in args.concurrency:
        throughput(args.latency_ms, concurrency, args.target)
    if args.dedup_prompts:
        dedup(args.dedup_prompts, args.similarity)


if __name__ == "__main__":
    main()
