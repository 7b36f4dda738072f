"""Per-step ``rlmr/*`` metrics: from the advantage step and from the reward side's extra info."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from recipe.rlmr.advantage import _as_violation_mask, group_penalty, invalid_groups, nonfinite_groups
from rewards.reward_info import (
    CONSTRAINTS_OK,
    FAILED_CONSTRAINTS,
    JUDGE_CALLS,
    JUDGE_CALLS_SAVED,
    JUDGE_OK,
    NUM_RULES,
    RESPONSE_WORDS,
    REWARD_LATENCY_S,
    REWARD_VALID,
    RULE_IDS,
    RULE_OK,
    RULE_OK_LOOSE,
    RULES_FOLLOWED_LOOSE,
    RULES_FOLLOWED_STRICT,
    WRITING_SCORE,
)


def advantage_metrics(
    token_level_rewards: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    constraints_ok: Any,
    index: Any,
    gamma: float,
    reward_valid: Any = None,
    gamma_mode: str = "absolute",
) -> dict[str, float]:
    """Per-step ``rlmr/*`` metrics: how many violate, how hard they are penalised, where they land."""
    scores = token_level_rewards.sum(-1)
    penalty = group_penalty(scores, constraints_ok, index, gamma, gamma_mode)
    # The advantage of a sample is constant over its response tokens; read it at the first one.
    first_token = response_mask.float().argmax(dim=-1)
    sample_adv = advantages[torch.arange(advantages.shape[0]), first_token].double().cpu()  # [B]
    invalid = invalid_groups(reward_valid, penalty.group, penalty.size.numel())  # [G]
    nonfinite = nonfinite_groups(scores, penalty.group, penalty.size.numel())  # [G]
    violates, mixed = penalty.violates, penalty.mixed & ~invalid & ~nonfinite

    def mean_or_nan(values: torch.Tensor) -> float:
        return float(values.mean()) if values.numel() else float("nan")

    in_mixed = mixed[penalty.group]
    # A placeholder score must never move an advantage: the largest |A| among invalid samples, which must be 0.
    batch = advantages.shape[0]
    invalid_samples = None if reward_valid is None else _as_violation_mask(reward_valid, batch, REWARD_VALID)
    if invalid_samples is not None and invalid_samples.any():
        adv_invalid_abs_max = float(sample_adv[invalid_samples].abs().max())
    else:
        adv_invalid_abs_max = float("nan")
    return {
        "rlmr/adv_invalid_abs_max": adv_invalid_abs_max,
        # scores that reached the estimator as NaN/inf (their groups get zero advantages); 0 when rewards are sound
        "rlmr/nonfinite_scores": float((~torch.isfinite(scores.detach().reshape(-1).cpu())).sum()),
        "rlmr/groups_nonfinite": float(nonfinite.sum()),
        # any NaN/inf advantage would reach the actor's loss; the estimator makes this 0 by construction
        "rlmr/adv_nonfinite": float((~torch.isfinite(sample_adv)).sum()),
        "rlmr/violation_rate": float(violates.double().mean()) if violates.numel() else float("nan"),
        "rlmr/groups_mixed": float(mixed.sum()),
        "rlmr/groups_all_violate": float(penalty.all_violate.sum()),
        "rlmr/groups_invalid": float(invalid.sum()),
        "rlmr/delta_mean": mean_or_nan(penalty.delta[mixed]),
        "rlmr/delta_max": float(penalty.delta[mixed].max()) if mixed.any() else float("nan"),
        # the margin each mixed group asked of its best violator (gamma, or gamma x s_g in relative mode)
        "rlmr/margin_mean": mean_or_nan(penalty.margin[mixed]),
        # how far apart the compliant answers' advantages stay in mixed groups (a large margin bunches them)
        "rlmr/adv_compliant_std": _mean_group_std(sample_adv, ~violates & in_mixed, penalty.group),
        "rlmr/adv_violators_mean": mean_or_nan(sample_adv[violates & in_mixed]),
        "rlmr/adv_compliant_mean": mean_or_nan(sample_adv[~violates & in_mixed]),
        "rlmr/adv_violators_max": float(sample_adv[violates & in_mixed].max())
        if (violates & in_mixed).any()
        else float("nan"),
    }


def _mean_group_std(values: torch.Tensor, keep: torch.Tensor, group: torch.Tensor) -> float:
    """Mean over groups (with 2+ kept samples) of the population std of the kept values; NaN if none."""
    stds = []
    for g in torch.unique(group[keep]).tolist():
        chosen = values[keep & (group == g)]
        if chosen.numel() >= 2:
            stds.append(float(chosen.std(unbiased=False)))
    return sum(stds) / len(stds) if stds else float("nan")


def group_of(trajectory_key: str) -> str:
    """The prompt group (verl's ``uid``) of a TransferQueue trajectory key ``{uid}_{session}_{i}``."""
    return str(trajectory_key).split("_", 1)[0]


def score_length_corr(scores: np.ndarray, lengths: np.ndarray, groups: Sequence[str]) -> float:
    """Pearson correlation of writing score with response length inside each group, averaged over the
    groups where both vary (NaN when none does). A length-biased writing RM shows a mean near +1 from
    the first step: within one prompt, longer answers score higher whatever they say."""
    groups = np.asarray(groups, dtype=object)
    corrs = []
    for g in dict.fromkeys(groups.tolist()):
        x, y = scores[groups == g], lengths[groups == g]
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        # "varies" beyond round-off (an offset added to equal scores leaves a std of ~1e-16)
        if x.size >= 2 and x.std() > 1e-9 * max(1.0, np.abs(x).max()) and y.std() > 0:
            corrs.append(float(np.corrcoef(x, y)[0, 1]))
    return float(np.mean(corrs)) if corrs else float("nan")


def violations_by_type(infos: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``rlmr/violations/<instruction id>``: among scored responses whose prompt carries that rule, the share
    that broke it; ``rlmr/violations/judge``: among responses the judge answered for, the share it failed
    (responses whose rules already failed are not sent to the judge when short_circuit is on)."""
    carried: dict[str, int] = {}
    broken: dict[str, int] = {}
    judged = judge_failed = 0
    for info in infos:
        if not info.get(REWARD_VALID, 1):
            continue
        failed = set(filter(None, str(info.get(FAILED_CONSTRAINTS, "")).split(";")))
        for rule in filter(None, str(info.get(RULE_IDS, "")).split(";")):
            carried[rule] = carried.get(rule, 0) + 1
            broken[rule] = broken.get(rule, 0) + int(rule in failed)
        if info.get(JUDGE_CALLS, 0) > 0 and info.get(JUDGE_OK, -1) in (0, 1):  # the judge answered
            judged += 1
            judge_failed += int(info[JUDGE_OK] == 0)
    metrics = {f"rlmr/violations/{rule}": broken[rule] / count for rule, count in sorted(carried.items())}
    if judged:
        metrics["rlmr/violations/judge"] = judge_failed / judged
    return metrics


def reward_metrics(
    reward_extra_infos: Sequence[Mapping[str, Any] | None], keys: Sequence[str] | None = None
) -> dict[str, float]:
    """What the `rlmr` reward manager reported for the batch; keys it did not report are skipped.

    ``keys`` (the trajectories' TransferQueue keys) group the samples by prompt for ``rlmr/score_length_corr``."""
    rows = [(i, info) for i, info in enumerate(reward_extra_infos) if isinstance(info, Mapping)]
    infos = [info for _, info in rows]
    if not infos:
        return {}

    def column(key: str) -> np.ndarray | None:
        if not all(key in info for info in infos):
            return None
        return np.array([float(info[key]) for info in infos], dtype=np.float64)

    metrics: dict[str, float] = {}
    valid = column(REWARD_VALID)
    ok = column(CONSTRAINTS_OK)
    score = column(WRITING_SCORE)
    if valid is not None:
        metrics["rlmr/invalid_rewards"] = float((valid == 0).sum())
    if score is not None and ok is not None:
        usable = ~np.isnan(score) & (valid != 0 if valid is not None else True)
        for name, mask in (("compliant", usable & (ok == 1)), ("violating", usable & (ok == 0))):
            metrics[f"rlmr/writing_score_{name}_mean"] = float(score[mask].mean()) if mask.any() else float("nan")
    for key in (JUDGE_CALLS, JUDGE_CALLS_SAVED):
        values = column(key)
        if values is not None:
            metrics[f"rlmr/{key}"] = float(values.sum())
    latency = column(REWARD_LATENCY_S)
    if latency is not None:
        metrics["rlmr/reward_latency_p50_s"] = float(np.percentile(latency, 50))
        metrics["rlmr/reward_latency_p95_s"] = float(np.percentile(latency, 95))
    words = column(RESPONSE_WORDS)
    if words is not None:
        metrics["rlmr/response_words_mean"] = float(words.mean())
        if keys is not None and score is not None:
            usable = valid != 0 if valid is not None else np.ones(len(infos), dtype=bool)
            groups = [group_of(keys[i]) for i, _ in rows]
            metrics["rlmr/score_length_corr"] = score_length_corr(np.where(usable, score, np.nan), words, groups)
    if RULE_IDS in infos[0]:
        metrics.update(violations_by_type(infos))
    return metrics


# IFEval's four figures, under lm-eval's names, from the per-sample counts the reward manager reports.
IFEVAL_FIGURES = {
    "prompt_level_strict_acc": (RULE_OK, None),
    "prompt_level_loose_acc": (RULE_OK_LOOSE, None),
    "inst_level_strict_acc": (RULES_FOLLOWED_STRICT, NUM_RULES),
    "inst_level_loose_acc": (RULES_FOLLOWED_LOOSE, NUM_RULES),
}


def instruction_following_metrics(
    data_sources: Sequence[str], infos: Mapping[str, Sequence[Any]], prefix: str = "val-core"
) -> dict[str, float]:
    """``{prefix}/{data_source}/instruction_following/{figure}`` for each data source whose samples carry
    rule constraints. On an IFEval validation set these are IFEval's four numbers: prompt-level
    accuracies are the share of samples whose every rule holds; instruction-level ones the share of all
    rules that hold (summed over samples, not averaged per sample). Samples with reward_valid = 0 and
    samples without rules are left out.
    """
    needed = {key for pair in IFEVAL_FIGURES.values() for key in pair if key} | {REWARD_VALID}
    if any(key not in infos for key in needed):
        return {}
    columns = {key: np.array([np.nan if v is None else float(v) for v in infos[key]]) for key in needed}
    sources = np.asarray(data_sources, dtype=object)
    metrics = {}
    for source in sorted(set(sources.tolist())):
        usable = (sources == source) & (columns[REWARD_VALID] == 1) & (columns[NUM_RULES] > 0)
        if not usable.any():
            continue
        for figure, (numerator, denominator) in IFEVAL_FIGURES.items():
            total = columns[numerator][usable].sum()
            count = columns[denominator][usable].sum() if denominator else usable.sum()
            metrics[f"{prefix}/{source}/instruction_following/{figure}"] = float(total / count)
    return metrics
