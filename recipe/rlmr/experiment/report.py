"""The experiment's outputs: ``metrics.csv``, ``summary.md`` and ``curves.png``."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from recipe.rlmr.experiment.aggregate import (
    CURVES,
    EXTRA_COLUMNS,
    STEP_TIME,
    Band,
    arms_in,
    edge_means,
    nanmean,
    seed_bands,
    untrained_violation_rate,
)

ROW_KEYS = ["arm", "seed", "step"]


def write_csv(rows: Sequence[Mapping], path: Path) -> None:
    """One line per arm, seed and step; an empty cell where the step has no value."""
    columns = ROW_KEYS + [tag for tag, _, _ in CURVES] + EXTRA_COLUMNS
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if isinstance(row[c], float) and math.isnan(row[c]) else row[c] for c in columns])


def read_csv(path: Path) -> list[dict]:
    """``write_csv``'s rows back (numbers as floats, empty cells as NaN)."""
    rows = []
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            row = {"arm": raw["arm"], "seed": int(raw["seed"]), "step": int(raw["step"])}
            row.update({k: float(v) if v != "" else math.nan for k, v in raw.items() if k not in ROW_KEYS})
            rows.append(row)
    return rows


def _fmt(fmt: str, value: float) -> str:
    return "-" if math.isnan(value) else fmt.format(value)


def summary_markdown(rows: Sequence[Mapping], wall_s: Mapping[str, list[float]], header: str) -> str:
    """Per arm: each curve's mean over the first and last 3 steps (seeds pooled), wall time, step time."""
    arms = arms_in(rows)
    lines = [header, ""]
    untrained = untrained_violation_rate(rows)
    lines.append(f"Untrained policy (step 1's rollouts, all runs): violation rate {_fmt('{:.3f}', untrained)}.")
    lines.append("")
    lines += [
        "Step 1 per arm and seed (the same untrained policy, seeded sampling; a larger policy's batched "
        "logits can still differ in the last bits):",
        "",
    ]
    lines += [*step_one_lines(rows), ""]
    lines.append("| curve | " + " | ".join(f"{arm}: first 3 → last 3" for arm in arms) + " |")
    lines.append("|---|" + "---|" * len(arms))
    for tag, title, fmt in CURVES:
        cells = []
        for arm in arms:
            first, last = edge_means(rows, arm, tag)
            cells.append(f"{_fmt(fmt, first)} → {_fmt(fmt, last)}")
        lines.append(f"| {title} (`{tag}`) | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| arm | runs (seeds) | steps | wall time per run (s) | step 1 (s) | later steps, mean (s) |")
    lines.append("|---|---|---|---|---|---|")
    for arm in arms:
        mine = [row for row in rows if row["arm"] == arm]
        seeds = sorted({row["seed"] for row in mine})
        steps = sorted({row["step"] for row in mine})
        first_step = nanmean(row[STEP_TIME] for row in mine if row["step"] == 1)
        later = nanmean(row[STEP_TIME] for row in mine if row["step"] > 1)
        walls = wall_s.get(arm, [])
        lines.append(
            f"| {arm} | {len(seeds)} ({', '.join(map(str, seeds))}) | {len(steps)} | "
            f"{_fmt('{:.0f}', nanmean(walls))} | {_fmt('{:.1f}', first_step)} | {_fmt('{:.1f}', later)} |"
        )
    lines.append("")
    return "\n".join(lines)


def step_one_lines(step_rows: Sequence[Mapping]) -> list[str]:
    """Step 1 (the untrained policy's rollout) per arm and seed: equal across arms of one seed (up to the
    last bits of batched logits) when the rollout's seeded sampling pairs them."""
    lines = ["| arm | seed | violation rate | words (mean) | writing score (mean) |", "|---|---|---|---|---|"]
    for row in step_rows:
        if int(row["step"]) == 1:
            lines.append(
                f"| {row['arm']} | {row['seed']} | {_fmt('{:.3f}', row['rlmr/violation_rate'])} | "
                f"{_fmt('{:.2f}', row['rlmr/response_words_mean'])} | {_fmt('{:.4f}', row['critic/score/mean'])} |"
            )
    return lines


def plot(rows: Sequence[Mapping], path: Path, title: str) -> None:
    """One panel per curve, one line per arm (mean over seeds) with a min-max band across seeds."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    arms = arms_in(rows)
    figure, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.4))
    for axis, (tag, curve_title, _) in zip(axes, CURVES, strict=True):
        for index, arm in enumerate(arms):
            bands = seed_bands(rows, arm, tag)
            # every logged step, NaN where no seed has a value: the line breaks there instead of bridging
            steps = sorted({int(row["step"]) for row in rows if row["arm"] == arm})
            nan_band = Band(math.nan, math.nan, math.nan)
            arm_bands = [bands.get(step, nan_band) for step in steps]
            color = f"C{index}"
            axis.plot(steps, [b.mean for b in arm_bands], marker="o", markersize=3, color=color, label=arm)
            if any(b.low != b.high for b in bands.values()):
                low, high = [b.low for b in arm_bands], [b.high for b in arm_bands]
                axis.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
        axis.set_title(curve_title)
        axis.set_xlabel("step")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
