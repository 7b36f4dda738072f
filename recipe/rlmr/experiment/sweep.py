"""The weight sweep (``--preset weight_sweep``): per arm and prompt category, where each arm settles.

The writing RM of the sweep is ``CategoryScaledRM``: the length-biased score times 0.2, 1 or 5 by
the prompt's category, so one fixed weight meets three different score spreads. Each run dumps its
rollouts (``trainer.rollout_data_dir``: one JSON line per response with its prompt text and its
``reward_extra_info``); from the last ``EDGE`` steps of every run (seeds pooled) this module
computes, per arm and category, the violation rate, the writing score of the compliant responses
and their length in words, and writes ``sweep.csv``, ``sweep.md`` and ``tradeoff.png`` (violation
rate against compliant writing score, one point per arm, the fixed-weight arms joined in weight
order).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from recipe.rlmr.dev.servers.reward import CATEGORY_SCALES, prompt_category
from recipe.rlmr.experiment.aggregate import EDGE, nanmean
from recipe.rlmr.experiment.report import step_one_lines
from recipe.rlmr.experiment.runner import arm_mode
from rewards.reward_info import CONSTRAINTS_OK, RESPONSE_WORDS, WRITING_SCORE

SWEEP_ARMS = [
    "writing_only",
    "fixed_weight@0.1",
    "fixed_weight@1",
    "fixed_weight@10",
    "rlmr",
    "verifier_only",
    "gdpo",
]
SWEEP_STEPS = 16
ALL = "all"
CATEGORIES = [ALL, *CATEGORY_SCALES]
COLUMNS = ["arm", "category", "responses", "violation_rate", "compliant_writing_score", "compliant_words"]


def read_rollouts(run_dir: Path) -> dict[int, list[dict]]:
    """{step: records} from a run's ``rollouts/<step>.jsonl`` (verl's rollout dump)."""
    steps = {}
    for path in sorted((Path(run_dir) / "rollouts").glob("*.jsonl")):
        if path.stem.isdigit():
            # "\n" only: splitlines() would also cut at U+2028, U+0085 ..., which JSON leaves unescaped in a response
            lines = path.read_text(encoding="utf-8").split("\n")
            steps[int(path.stem)] = [json.loads(line) for line in lines if line.strip()]
    return steps


def verdict_and_words(record: Mapping) -> tuple[int, int]:
    """(constraints_ok, response_words) of one dumped response: its ``reward_extra_info`` when the dump
    carries it, else recomputed as the reward manager computes them (``check_instructions`` on the
    spec in ``gts``, ``\\w+`` runs). verl's V1 trainer dumps ``input``, ``output``, ``gts`` and ``score``
    (the raw writing score) only. Rule constraints only: the sweep's prompts have no judged ones."""
    if CONSTRAINTS_OK in record and RESPONSE_WORDS in record:
        return int(record[CONSTRAINTS_OK]), int(record[RESPONSE_WORDS])
    from rewards.constraints import check_instructions
    from rewards.spec import ConstraintSpec

    response, spec = str(record["output"]), ConstraintSpec.parse(record["gts"])
    if spec.judged:
        raise ValueError("the sweep recomputes rule verdicts only; this response's spec has judged constraints")
    rules = spec.rules
    ok = all(check_instructions(response, [r.instruction_id for r in rules], [r.kwargs for r in rules]))
    return int(ok), len(re.findall(r"\w+", response))


def final_records(arm: str, seed: int, rollouts: Mapping[int, list[dict]], edge: int = EDGE) -> list[dict]:
    """The responses of a run's last ``edge`` steps as {arm, seed, step, category, ok, writing, words};
    the writing score is the dump's ``score`` (the raw RM score: RLMR's penalty lives in the estimator)."""
    records = []
    for step in sorted(rollouts)[-edge:]:
        for record in rollouts[step]:
            ok, words = verdict_and_words(record)
            writing = record[WRITING_SCORE] if WRITING_SCORE in record else record["score"]
            category = prompt_category(str(record.get("input", ""))) or "none"
            records.append(
                {"arm": arm, "seed": seed, "step": step, "category": category, "ok": ok, "writing": float(writing),
                 "words": float(words)}
            )  # fmt: skip
    return records


def category_table(records: Sequence[Mapping]) -> list[dict]:
    """Per arm (in first-seen order) and category (``all`` first): the pooled final figures."""
    rows = []
    for arm in dict.fromkeys(r["arm"] for r in records):
        for category in CATEGORIES:
            mine = [r for r in records if r["arm"] == arm and (category == ALL or r["category"] == category)]
            compliant = [r for r in mine if r["ok"] == 1]
            rows.append(
                {
                    "arm": arm,
                    "category": category,
                    "responses": len(mine),
                    "violation_rate": nanmean(1.0 - r["ok"] for r in mine),
                    "compliant_writing_score": nanmean(r["writing"] for r in compliant),
                    "compliant_words": nanmean(r["words"] for r in compliant),
                }
            )
    return rows


def write_table_csv(rows: Sequence[Mapping], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(["" if isinstance(row[c], float) and math.isnan(row[c]) else row[c] for c in COLUMNS])


def _cell(row: Mapping) -> str:
    def fmt(value: float, spec: str) -> str:
        return "-" if math.isnan(value) else spec.format(value)

    return (
        f"{fmt(row['violation_rate'], '{:.2f}')} · {fmt(row['compliant_writing_score'], '{:.2f}')} · "
        f"{fmt(row['compliant_words'], '{:.1f}')}"
    )


def sweep_markdown(rows: Sequence[Mapping], step_rows: Sequence[Mapping], header: str, edge: int = EDGE) -> str:
    """The per-category table (one line per arm) and the step-1 figures per arm and seed."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    titles = [ALL] + [f"{name} ({scale:g}x)" for name, scale in CATEGORY_SCALES.items()]
    lines = [
        header,
        "",
        f"Each cell: violation rate · writing score of the compliant responses · their length in words, over "
        f"the last {edge} steps (seeds pooled).",
        "",
        "| arm | " + " | ".join(titles) + " |",
        "|---|" + "---|" * len(titles),
    ]
    by_key = {(r["arm"], r["category"]): r for r in rows}
    for arm in arms:
        lines.append(f"| {arm} | " + " | ".join(_cell(by_key[(arm, c)]) for c in CATEGORIES) + " |")
    lines += ["", "Step 1 (the untrained policy's rollout), per arm and seed:", "", *step_one_lines(step_rows), ""]
    return "\n".join(lines)


def plot_tradeoff(rows: Sequence[Mapping], path: Path, title: str) -> None:
    """One panel per category (``all`` first): violation rate (x) against compliant writing score (y),
    one point per arm, the fixed-weight arms joined in weight order; an arm with no compliant response
    left is an x at the panel's lowest score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(r["arm"] for r in rows))
    by_key = {(r["arm"], r["category"]): r for r in rows}
    figure, axes = plt.subplots(1, len(CATEGORIES), figsize=(4.2 * len(CATEGORIES), 3.8))
    fixed = sorted(
        (a for a in arms if arm_mode(a)[0] == "fixed_weight" and arm_mode(a)[1] is not None),
        key=lambda a: arm_mode(a)[1],
    )
    for axis, category in zip(axes, CATEGORIES, strict=True):
        if fixed:
            axis.plot(
                [by_key[(a, category)]["violation_rate"] for a in fixed],
                [by_key[(a, category)]["compliant_writing_score"] for a in fixed],
                color="grey",
                linestyle="--",
                linewidth=1,
                zorder=1,
            )
        scores = [by_key[(a, category)]["compliant_writing_score"] for a in arms]
        floor = min((y for y in scores if not math.isnan(y)), default=0.0)
        for index, arm in enumerate(arms):
            row = by_key[(arm, category)]
            x, y = row["violation_rate"], row["compliant_writing_score"]
            if math.isnan(x):
                continue
            if math.isnan(y):  # no compliant response left: an x on the floor of the panel
                axis.scatter([x], [floor], color=f"C{index}", marker="x", label=f"{arm} (no compliant left)", zorder=2)
                continue
            axis.scatter([x], [y], color=f"C{index}", label=arm, zorder=2)
            axis.annotate(arm, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        scale = CATEGORY_SCALES.get(category)
        axis.set_title(category if scale is None else f"{category} ({scale:g}x)")
        axis.set_xlabel("violation rate (final)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("writing score of compliant responses")
    axes[0].legend(fontsize="x-small")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def write_sweep(
    workdir: Path, runs: Sequence[tuple[str, int, Path]], step_rows: Sequence[Mapping], header: str, title: str
) -> list[dict]:
    """``sweep.csv``, ``sweep.md`` and ``tradeoff.png`` in ``workdir`` from the runs' rollout dumps
    ((arm, seed, run folder) each); returns the table's rows."""
    records = []
    for arm, seed, run_dir in runs:
        records += final_records(arm, seed, read_rollouts(run_dir))
    rows = category_table(records)
    write_table_csv(rows, workdir / "sweep.csv")
    (workdir / "sweep.md").write_text(sweep_markdown(rows, step_rows, header))
    if rows:
        plot_tradeoff(rows, workdir / "tradeoff.png", title)
    return rows
