"""From the runs' logged metrics to the experiment's table: rows, seed bands, first/last-3 means.

A *row* is one training step of one run: ``{"arm", "seed", "step", <metric tag>: value, ...}``.
Values are floats; a step without a value for a tag (e.g. no group with both violators and
compliant responses, so no violators' advantage) holds NaN, and every mean here skips NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# The curves the experiment reports: (metric tag in verl's logs, title, format).
CURVES = [
    ("rlmr/violation_rate", "violation rate", "{:.3f}"),
    ("rlmr/response_words_mean", "response words (mean)", "{:.1f}"),
    ("critic/score/mean", "writing score (all)", "{:.3f}"),
    ("rlmr/writing_score_compliant_mean", "writing score (compliant)", "{:.3f}"),
    ("rlmr/adv_violators_mean", "violators' mean advantage", "{:+.3f}"),
]
# Also kept in metrics.csv: context for the curves.
EXTRA_COLUMNS = [
    "rlmr/adv_compliant_mean",
    "rlmr/groups_mixed",
    "rlmr/delta_mean",
    "rlmr/margin_mean",
    "rlmr/adv_compliant_std",
    "response_length/mean",
    "response_length/clip_ratio",
    "timing_s/gen",
    "timing_s/step",
]
STEP_TIME = "timing_s/step"
VIOLATION_RATE = "rlmr/violation_rate"
EDGE = 3  # the summary compares the mean of the first and of the last EDGE steps


def nanmean(values: Iterable[float]) -> float:
    """Mean of the finite values; NaN when there is none."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def run_rows(arm: str, seed: int, scalars: Mapping[int, Mapping[str, float]]) -> list[dict]:
    """One row per training step (step >= 1) of one run, from ``demo.read_scalars``' {step: {tag: value}}."""
    tags = [tag for tag, _, _ in CURVES] + EXTRA_COLUMNS
    return [
        {"arm": arm, "seed": seed, "step": step, **{tag: float(values.get(tag, math.nan)) for tag in tags}}
        for step, values in sorted(scalars.items())
        if step >= 1
    ]


@dataclass(frozen=True)
class Band:
    """One arm's curve at one step, across seeds: the mean and the lowest and highest seed."""

    mean: float
    low: float
    high: float


def seed_bands(rows: Sequence[Mapping], arm: str, tag: str) -> dict[int, Band]:
    """{step: Band} of ``tag`` for ``arm``; steps where no seed has a value are left out."""
    by_step: dict[int, list[float]] = {}
    for row in rows:
        if row["arm"] == arm and not math.isnan(row[tag]):
            by_step.setdefault(int(row["step"]), []).append(row[tag])
    return {step: Band(sum(v) / len(v), min(v), max(v)) for step, v in sorted(by_step.items())}


def edge_means(rows: Sequence[Mapping], arm: str, tag: str, edge: int = EDGE) -> tuple[float, float]:
    """Mean of ``tag`` over the first and over the last ``edge`` steps of ``arm`` (all its seeds).

    The steps are the arm's logged steps (any seed), so a NaN step (no value that step) still counts
    as one of the ``edge``; with fewer than ``2 * edge`` steps the two windows overlap.
    """
    steps = sorted({int(row["step"]) for row in rows if row["arm"] == arm})
    first, last = set(steps[:edge]), set(steps[-edge:])
    values = [(int(row["step"]), row[tag]) for row in rows if row["arm"] == arm]
    return nanmean(v for s, v in values if s in first), nanmean(v for s, v in values if s in last)


def arms_in(rows: Sequence[Mapping]) -> list[str]:
    """The arms in the order they first appear."""
    return list(dict.fromkeys(row["arm"] for row in rows))


def untrained_violation_rate(rows: Sequence[Mapping]) -> float:
    """Share of step 1's responses that broke a constraint, over every run: step 1's rollout comes from
    the untrained policy, and with the group filter off the whole rollout is the trained batch."""
    return nanmean(row[VIOLATION_RATE] for row in rows if int(row["step"]) == 1)
