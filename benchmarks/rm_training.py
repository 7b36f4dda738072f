"""Writing-RM training throughput and peak memory on CPU, with a tiny model built on the spot.

    python benchmarks/rm_training.py [--pairs 256] [--batch-size 8] [--words 24] [--hidden 64] [--layers 2]
        [--threads 2] [--gradient-checkpointing]

Runs ``python -m rewards.train_rm``'s code in this process (1 epoch over synthetic pairs, no held-out
set) and prints training pairs/s (TRL's ``train_samples_per_second``: pairs, each a chosen and a
rejected sequence), steps/s, and the process's resident memory: before the run and its peak during
it (sampled every 20 ms), so the growth is what data preparation and training cost.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import psutil


class PeakRSS:
    """Samples this process's resident set size in a thread; ``peak`` in bytes."""

    def __init__(self, every_s: float = 0.02):
        self.process, self.every_s, self.peak = psutil.Process(), every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--words", type=int, default=24, help="words per synthetic response")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()

    import torch

    from recipe.rlmr.dev.tiny_assets import build_reward_model
    from rewards.rm_training import train
    from rewards.rm_training.synthetic import make_pairs, write_jsonl

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="rm-bench-") as root:
        root = Path(root)
        base = build_reward_model(root / "base", hidden_size=args.hidden, num_layers=args.layers)
        pairs = write_jsonl(root / "pairs.jsonl", make_pairs(args.pairs, seed=0, words=args.words))
        argv = ["--model", str(base), "--train", str(pairs), "--output", str(root / "rm"), "--no-progress"]
        argv += ["--batch-size", str(args.batch_size), "--lr", "1e-3", "--max-length", "512", "--logging-steps", "1000"]
        argv += ["--save-steps", "100000"] + ([] if args.gradient_checkpointing else ["--no-gradient-checkpointing"])
        before = psutil.Process().memory_info().rss
        started, cpu_started = time.perf_counter(), psutil.Process().cpu_times()
        with PeakRSS() as rss:
            assert train.main(argv) == 0
        wall = time.perf_counter() - started
        cpu_ended = psutil.Process().cpu_times()
        cpu = (cpu_ended.user - cpu_started.user) + (cpu_ended.system - cpu_started.system)
        load = psutil.getloadavg()[0]
        info = json.loads((root / "rm" / "rm_training.json").read_text())

    steps, seconds, rate = info["train"]["global_step"], info["train"]["seconds"], info["train"]["pairs_per_second"]
    print(
        f"model: Qwen2ForSequenceClassification hidden {args.hidden}, {args.layers} layers; {args.pairs} pairs of "
        f"~{args.words} words, batch {args.batch_size}, {args.threads} torch threads, "
        f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}"
    )
    print(f"training: {steps} steps in {seconds:.2f} s: {rate:.1f} pairs/s (TRL), {steps / seconds:.2f} steps/s")
    print(f"whole command (tokenize, load, train, save): {wall:.2f} s wall, {cpu:.2f} s CPU (user+system)")
    print(f"load average over the run: {load:.1f} on {psutil.cpu_count()} cores (others' work slows the wall clock)")
    print(
        f"resident memory: {before / 2**20:.0f} MiB before, peak {rss.peak / 2**20:.0f} MiB "
        f"(+{(rss.peak - before) / 2**20:.0f} MiB for data prep and training)"
    )


if __name__ == "__main__":
    main()
