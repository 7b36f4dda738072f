"""Held-out numbers of a reward model: pairwise accuracy, score spread, and the gamma scale they imply.

Used by ``python -m rewards.eval_rm`` and at the end of ``python -m rewards.train_rm`` (same code,
same numbers). Scores are raw logits of the one-output head, what the RLMR client reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

PERCENTILES = (5, 25, 50, 75, 95)
GAMMA_NOTE = (
    "gamma (algorithm.rlmr.gamma) is a margin in raw RM units, so it only means something against how widely "
    "this RM spreads responses: about one pooled score std puts the best-scored violator a typical quality gap "
    "below its group's mean, while a gamma far below it drowns in RM noise and one far above it swamps the "
    "writing signal. algorithm.rlmr.gamma_mode=relative measures gamma in each group's own spread instead "
    "(no RM scale to match; gamma 1 asks for about one compliant-score std)."
)


def _pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def batch_pairs(rows: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: chosen sequences first, then rejected (the RewardTrainer's layout)."""
    ids, mask = _pad([r["chosen_input_ids"] for r in rows] + [r["rejected_input_ids"] for r in rows], pad_id)
    return {"input_ids": ids, "attention_mask": mask}


@torch.inference_mode()
def score_pairs(model, dataset, pad_id: int, batch_size: int = 8, progress: bool = True) -> tuple[np.ndarray, ...]:
    """(chosen scores, rejected scores) of every pair in ``dataset``, on the model's device."""
    from tqdm import tqdm

    device = next(model.parameters()).device
    model.eval()
    chosen, rejected = [], []
    for start in tqdm(range(0, len(dataset), batch_size), desc="score pairs", unit="batch", disable=not progress):
        rows = dataset[start : start + batch_size]
        rows = [dict(zip(rows, values, strict=True)) for values in zip(*rows.values(), strict=True)]
        batch = {k: v.to(device) for k, v in batch_pairs(rows, pad_id).items()}
        logits = model(**batch, use_cache=False).logits[:, -1].float().cpu()
        c, r = torch.chunk(logits, 2)
        chosen.append(c)
        rejected.append(r)
    return torch.cat(chosen).numpy(), torch.cat(rejected).numpy()


def _distribution(scores: np.ndarray) -> dict[str, float]:
    out = {"mean": float(scores.mean()), "std": float(scores.std()), "min": float(scores.min())}
    out.update({f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(scores, PERCENTILES), strict=True)})
    out["max"] = float(scores.max())
    return out


def _round_sig(value: float, digits: int = 2) -> float:
    if value == 0 or not np.isfinite(value):
        return float(value)
    return float(round(value, digits - 1 - int(np.floor(np.log10(abs(value))))))


def pair_report(chosen: np.ndarray, rejected: np.ndarray) -> dict[str, Any]:
    """Accuracy (ties count as wrong), distributions, and the suggested gamma scale."""
    chosen, rejected = np.asarray(chosen, dtype=np.float64), np.asarray(rejected, dtype=np.float64)
    if chosen.shape != rejected.shape or chosen.size == 0:
        raise ValueError(f"need as many chosen as rejected scores, and some: {chosen.shape} vs {rejected.shape}")
    gap = chosen - rejected
    pooled_std = float(np.concatenate([chosen, rejected]).std())
    return {
        "pairs": int(chosen.size),
        "accuracy": float((gap > 0).mean()),
        "ties": int((gap == 0).sum()),
        "chosen": _distribution(chosen),
        "rejected": _distribution(rejected),
        "margin": {"mean": float(gap.mean()), "median": float(np.median(gap))},
        "score_std": pooled_std,
        "suggested_gamma": _round_sig(pooled_std),
        "gamma_note": GAMMA_NOTE,
    }


def render_report(report: dict[str, Any], title: str = "reward model") -> str:
    cols = ("mean", "std", "min", *(f"p{p}" for p in PERCENTILES), "max")
    lines = [
        f"{title}: {report['pairs']} pairs, pairwise accuracy {report['accuracy']:.4f} (ties {report['ties']})",
        "           " + " ".join(f"{c:>9}" for c in cols),
    ]
    for side in ("chosen", "rejected"):
        lines.append(f"  {side:<8} " + " ".join(f"{report[side][c]:>9.4f}" for c in cols))
    lines.append(f"  chosen - rejected: mean {report['margin']['mean']:.4f}, median {report['margin']['median']:.4f}")
    lines.append(
        f"  score std (chosen and rejected pooled) {report['score_std']:.4f} -> "
        f"suggested algorithm.rlmr.gamma scale ~{report['suggested_gamma']:g}"
    )
    lines.append(f"  {report['gamma_note']}")
    return "\n".join(lines)
