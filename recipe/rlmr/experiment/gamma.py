"""The gamma sweep's view of an experiment: where each margin leaves the policy after training.

An experiment whose arms include at least two ``rlmr@G`` / ``rlmr@Gsd`` arms (``runner.Arm``) gets,
beside the usual outputs, ``gamma.csv``, ``gamma.md`` and ``gamma.png``: one row per such arm, each
column the mean over the arm's last ``EDGE`` logged steps (seeds pooled, NaN skipped, as in
``summary.md``), plus step 1's compliant-score spread, the scale gamma is read against.

    margin ratio = gamma / compliant spread      (absolute mode; in relative mode it is gamma itself)

so arms of the two modes land on one axis: how many compliant-answer standard deviations below the
penalised group mean the best violator is asked to end.

Length, read from the dumped rollouts of the same last steps: the within-group std of the answers'
word counts and the gap to the limit in those stds,

    limit gap = (word limit - mean words) / within-group words std

A policy whose lengths spread by s words can only keep its violation rate low with its mean about
z * s below the limit (z ~ 1 for one answer in six over it), whatever gamma asks: this column says
how much of "settling below the limit" that spread accounts for.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from recipe.rlmr.experiment.aggregate import EDGE, arms_in, edge_means, nanmean
from recipe.rlmr.experiment.runner import parse_arm

GAMMA_FILES = ("gamma.csv", "gamma.md", "gamma.png")
# (metrics.csv column, gamma.csv column, title, format)
COLUMNS = [
    ("rlmr/violation_rate", "violation_rate", "violation rate", "{:.3f}"),
    ("rlmr/response_words_mean", "words", "words (mean)", "{:.1f}"),
    ("rlmr/writing_score_compliant_mean", "compliant_score", "writing score (compliant)", "{:.3f}"),
    ("rlmr/adv_compliant_std", "compliant_adv_std", "advantage spread (compliant)", "{:.3f}"),
    ("rlmr/adv_violators_mean", "violators_adv", "violators' mean advantage", "{:+.3f}"),
    ("rlmr/margin_mean", "margin", "margin asked (RM units)", "{:.3f}"),
    ("rlmr/delta_mean", "delta", "delta (mixed groups)", "{:.3f}"),
]


def gamma_arms(arms: Sequence[str]) -> list[str]:
    """The arms that set gamma (``rlmr@G``, ``rlmr@Gsd``), in their order."""
    return [arm for arm in arms if (parsed := parse_arm(arm)).mode == "rlmr" and parsed.value is not None]


def group_of(record: Mapping) -> str:
    """A dumped response's group: verl's uid is ``<prompt uid>_<sample>_<turn>``; the prompt text without one."""
    return record["uid"].split("_")[0] if "uid" in record else record["input"]


def gamma_rows(
    rows: Sequence[Mapping],
    compliant_spread: float,
    lengths: Mapping[str, tuple[float, float]] | None = None,
    word_limit: int | None = None,
) -> list[dict]:
    """One row per gamma arm: its gamma, mode, margin ratio and each ``COLUMNS`` value over the last steps.

    ``compliant_spread``: the compliant answers' within-group score std at step 1 (``step_one_spread``),
    the untrained policy's, shared by every arm of a seed. ``lengths``: {arm: ``rollout_lengths``} over its last
    steps, which adds ``words_std`` and ``limit_gap`` (NaN without it)."""
    table = []
    for arm in gamma_arms(arms_in(rows)):
        parsed = parse_arm(arm)
        ratio = parsed.value if parsed.relative else parsed.value / compliant_spread
        row = {
            "arm": arm,
            "gamma": parsed.value,
            "mode": "relative" if parsed.relative else "absolute",
            "margin_in_spreads": ratio,
        }
        for tag, column, _, _ in COLUMNS:
            row[column] = edge_means(rows, arm, tag)[1]
        mean_words, words_std = (lengths or {}).get(arm, (math.nan, math.nan))
        row["words_std"] = words_std
        row["limit_gap"] = (word_limit - mean_words) / words_std if word_limit and words_std > 0 else math.nan
        table.append(row)
    return sorted(table, key=lambda r: (r["margin_in_spreads"], r["mode"]))


def step_one_spread(step_one: Sequence[Mapping]) -> float:
    """Mean within-group std of the compliant answers' writing scores in step 1's rollouts (groups with two
    or more compliant answers). Each record: ``{"group": key, "score": writing score, "violates": bool}``."""
    groups: dict[object, list[float]] = {}
    for record in step_one:
        if not record["violates"]:
            groups.setdefault(record["group"], []).append(float(record["score"]))
    return nanmean(statistics.pstdev(scores) for scores in groups.values() if len(scores) >= 2)


def rollout_spread(run_dir: Path) -> float:
    """``step_one_spread`` of a run's dumped step-1 rollouts (NaN when it dumped none)."""
    from recipe.rlmr.experiment.sweep import read_rollouts, verdict_and_words

    records = read_rollouts(run_dir).get(1, [])
    return step_one_spread(
        [
            {
                "group": group_of(r),
                "score": r["score"],
                "violates": not verdict_and_words(r)[0],
            }
            for r in records
        ]
    )


def rollout_lengths(run_dirs: Sequence[Path], steps: Sequence[int]) -> tuple[float, float]:
    """(mean words, mean within-group std of words) over the given steps' dumped rollouts of the runs."""
    from recipe.rlmr.experiment.sweep import read_rollouts, verdict_and_words

    words, stds = [], []
    for run_dir in run_dirs:
        for step, records in read_rollouts(run_dir).items():
            if step not in steps:
                continue
            groups: dict[str, list[int]] = {}
            for record in records:
                count = verdict_and_words(record)[1]
                words.append(count)
                groups.setdefault(group_of(record), []).append(count)
            stds += [statistics.pstdev(counts) for counts in groups.values()]
    return nanmean(words), nanmean(stds)


def gamma_markdown(table: Sequence[Mapping], compliant_spread: float, header: str) -> str:
    lines = [
        header,
        "",
        f"Step 1's compliant answers (the untrained policy): within-group writing-score std {compliant_spread:.3f}. "
        f"Each cell: the mean over the arm's last {EDGE} steps.",
        "",
        "| arm | mode | gamma | margin in compliant stds | "
        + " | ".join(title for _, _, title, _ in COLUMNS)
        + " | words std (within group) | limit gap in words stds |",
        "|---|---|---|---|" + "---|" * (len(COLUMNS) + 2),
    ]
    for row in table:
        formats = [(c, fmt) for _, c, _, fmt in COLUMNS] + [("words_std", "{:.1f}"), ("limit_gap", "{:.2f}")]
        cells = ["-" if math.isnan(row[c]) else fmt.format(row[c]) for c, fmt in formats]
        lines.append(
            f"| {row['arm']} | {row['mode']} | {row['gamma']:g} | {row['margin_in_spreads']:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def write_gamma(
    workdir: Path,
    rows: Sequence[Mapping],
    compliant_spread: float,
    header: str,
    word_limit: int,
    lengths: Mapping[str, tuple[float, float]] | None = None,
) -> None:
    table = gamma_rows(rows, compliant_spread, lengths, word_limit)
    columns = ["arm", "mode", "gamma", "margin_in_spreads"] + [c for _, c, _, _ in COLUMNS] + ["words_std", "limit_gap"]
    with open(workdir / "gamma.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(
            {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in table
        )
    (workdir / "gamma.md").write_text(gamma_markdown(table, compliant_spread, header))
    plot_gamma(table, workdir / "gamma.png", word_limit)


def plot_gamma(table: Sequence[Mapping], path: Path, word_limit: int) -> None:
    """Four panels against the margin in compliant stds (log axis), one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    panels = COLUMNS[:4]  # violation rate, words, compliant score, compliant advantage spread
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for axis, (_, column, title, _) in zip(axes, panels, strict=True):
        for index, mode in enumerate(("absolute", "relative")):
            mine = [r for r in table if r["mode"] == mode]
            if mine:
                axis.plot(
                    [r["margin_in_spreads"] for r in mine],
                    [r[column] for r in mine],
                    marker="o",
                    color=f"C{index}",
                    label=f"gamma_mode={mode}",
                )
                for r in mine:
                    axis.annotate(f"{r['gamma']:g}", (r["margin_in_spreads"], r[column]), fontsize=7)
        if column == "words":
            axis.axhline(word_limit, color="grey", linestyle="--", linewidth=1, label="limit")
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())  # the log axis' minor labels crowd each other
        axis.set_ylim(bottom=0)  # small differences stay small on the page
        axis.set_xlabel("margin in compliant stds")
        axis.set_title(title, fontsize="medium")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    figure.suptitle(f"each point: one arm, mean of its last {EDGE} steps; label: gamma", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
