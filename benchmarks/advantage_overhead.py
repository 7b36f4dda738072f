"""RLMR estimator vs verl's GRPO estimators on the paper's batch, timed in one run.

    python benchmarks/advantage_overhead.py [--prompts 128] [--samples 8] [--length 14336] [--repeats 21]
                                            [--device cpu|cuda]

Inputs are verl's layout: float32 ``token_level_rewards`` [B, T] with the score on the last
response token, an int64 ``response_mask`` with random lengths, and string uids. The three
estimators run interleaved, round after round, so machine noise hits them alike; the script
prints the median time of each and the ratios. ``--device cuda`` builds the batch on the CPU, moves
the tensors to the GPU and synchronizes around each timed call (the uids and verdicts stay on the
host, as verl hands them over).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage, compute_grpo_vectorized_outcome_advantage

from recipe.rlmr.advantage import compute_rlmr_outcome_advantage


def paper_batch(prompts: int, samples: int, length: int, violation_rate: float, seed: int):
    generator = np.random.default_rng(seed)
    batch = prompts * samples
    lengths = generator.integers(length // 8, length + 1, size=batch)
    response_mask = torch.from_numpy(np.arange(length)[None, :] < lengths[:, None]).to(torch.int64)  # [B, T]
    token_level_rewards = torch.zeros(batch, length, dtype=torch.float32)
    token_level_rewards[torch.arange(batch), torch.from_numpy(lengths - 1)] = torch.from_numpy(
        generator.normal(0.0, 2.0, size=batch).astype(np.float32)
    )
    index = np.array([f"uid{p:05d}" for p in range(prompts) for _ in range(samples)], dtype=object)
    constraints_ok = generator.random(batch) >= violation_rate
    return token_level_rewards, response_mask, index, constraints_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--length", type=int, default=14336)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--violation-rate", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--device", default="cpu", help="where the tensors live: cpu, cuda, cuda:1, ...")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rewards, mask, index, ok = paper_batch(args.prompts, args.samples, args.length, args.violation_rate, seed=0)
    device = torch.device(args.device)
    rewards, mask = rewards.to(device), mask.to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    contenders = {
        "verl grpo": lambda: compute_grpo_outcome_advantage(rewards, mask, index),
        "verl grpo_vectorized": lambda: compute_grpo_vectorized_outcome_advantage(rewards, mask, index),
        "rlmr": lambda: compute_rlmr_outcome_advantage(rewards, mask, index, ok),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(args.repeats + 2):  # two warm-up rounds are not recorded
        for name, run in contenders.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            if round_ >= 2:
                times[name].append(time.perf_counter() - start)

    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"batch {args.prompts} prompts x {args.samples} samples, responses padded to {args.length} tokens, "
        f"{torch.get_num_threads()} torch threads, tensors on {device}, median of {args.repeats} interleaved rounds"
    )
    for name, value in median.items():
        print(f"  {name:<22} {value * 1e3:9.2f} ms")
    print(f"  ratio rlmr / verl grpo            {median['rlmr'] / median['verl grpo']:.3f}  (target <= 1.25)")
    print(f"  ratio rlmr / verl grpo_vectorized {median['rlmr'] / median['verl grpo_vectorized']:.3f}")


if __name__ == "__main__":
    main()
