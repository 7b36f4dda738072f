"""The RLMR estimator, through verl's registry, on a small hand-made batch.

The estimator that verl's trainer calls, fed the way the trainer hook feeds it, without any
training: it prints, per sample, the writing score, the verdict, the group penalty and the
advantage under verl's GRPO and under RLMR, and counts violators that GRPO would reward. Runs in
seconds; ``make demo`` is the real training run.

    python -m recipe.rlmr.dev.estimator_demo [--gamma 1.0] [--no-std]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

from recipe.rlmr.advantage import group_penalty
from recipe.rlmr.verdicts import supply_verdicts

# (prompt, writing score, constraints_ok, what the response did)
SAMPLES = [
    ("poem<=80w", 7.9, False, "vivid, 140 words: breaks the limit"),
    ("poem<=80w", 6.1, True, "good, 78 words"),
    ("poem<=80w", 5.2, True, "plain, 60 words"),
    ("poem<=80w", 7.1, False, "strong, no title: breaks format"),
    ("story+kw", 4.0, True, "uses all keywords"),
    ("story+kw", 4.4, True, "uses all keywords, better prose"),
    ("story+kw", 3.1, False, "misses one keyword"),
    ("story+kw", 3.9, True, "uses all keywords"),
    ("letter-zh", 2.0, False, "too long"),
    ("letter-zh", 2.6, False, "too long, better prose"),
    ("letter-zh", 1.8, False, "wrong greeting"),
    ("letter-zh", 2.2, False, "too long"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gamma", type=float, default=1.0, help="algorithm.rlmr.gamma")
    parser.add_argument("--no-std", action="store_true", help="algorithm.norm_adv_by_std_in_grpo=false")
    args = parser.parse_args()

    index = np.array([prompt for prompt, *_ in SAMPLES], dtype=object)
    scores = torch.tensor([score for _, score, *_ in SAMPLES])
    constraints_ok = np.array([ok for _, _, ok, _ in SAMPLES])
    token_level_rewards = torch.zeros(len(SAMPLES), 4)
    token_level_rewards[:, -1] = scores
    response_mask = torch.ones_like(token_level_rewards)
    algorithm = OmegaConf.create(
        {"norm_adv_by_std_in_grpo": not args.no_std, "rlmr": {"gamma": args.gamma, "epsilon": 1e-6}}
    )

    grpo, _ = get_adv_estimator_fn("grpo")(
        token_level_rewards=token_level_rewards.clone(),
        response_mask=response_mask,
        index=index,
        config=algorithm,
        norm_adv_by_std_in_grpo=not args.no_std,
    )
    with supply_verdicts(constraints_ok) as step:  # what the RLMR trainer hook does each step
        rlmr, _ = get_adv_estimator_fn("rlmr")(
            token_level_rewards=token_level_rewards, response_mask=response_mask, index=index, config=algorithm
        )
    penalty = group_penalty(scores, constraints_ok, index, args.gamma)

    print(f"RLMR vs GRPO advantages (gamma={args.gamma}, std normalisation {'off' if args.no_std else 'on'})\n")
    header = f"{'prompt':<10} {'score':>5} {'ok':>3} {'delta':>6} {'score-d':>7} {'GRPO':>6} {'RLMR':>6}  response"
    print(header)
    print("-" * len(header))
    for i, (prompt, score, ok, note) in enumerate(SAMPLES):
        delta = float(penalty.delta[penalty.group[i]]) if not ok else 0.0
        flag = "  <- violator rewarded by GRPO" if not ok and grpo[i, 0] > 0 else ""
        print(
            f"{prompt:<10} {score:>5.1f} {'yes' if ok else 'NO':>3} {delta:>6.2f} {float(penalty.penalized[i]):>7.2f} "
            f"{float(grpo[i, 0]):>6.2f} {float(rlmr[i, 0]):>6.2f}  {note}{flag}"
        )
    violators = ~constraints_ok
    print(
        f"\nviolators with a positive advantage: GRPO {int((grpo[violators, 0] > 0).sum())}, "
        f"RLMR {int((rlmr[violators, 0] > 0).sum())} (of {int(violators.sum())})"
    )
    print("per-step metrics the trainer logs:")
    for key, value in step.metrics.items():
        print(f"  {key:<26} {value:.4f}")


if __name__ == "__main__":
    main()
