"""Stage ``report``: ``results.csv``, ``overopt.csv``, ``summary.md`` and ``pipeline.png`` from the stages' records."""

from __future__ import annotations

import csv
from pathlib import Path

from recipe.rlmr.pipeline.prompts import read_jsonl

COLUMNS = (
    ("heldout_strict", "held-out constraints (prompt strict)"),
    ("ifeval_strict", "IFEval subset (prompt strict)"),
    ("ifbench_strict", "IFBench subset (prompt strict)"),
    ("ifbench_loose", "IFBench subset (prompt loose)"),
    ("referee_score", "referee score (0-1)"),
    ("win_rate_vs_base", "win rate vs base (referee)"),
    ("mean_words", "mean words"),
)


def results_rows(preset, book) -> list[dict]:
    rows = []
    for name in ["base", *preset.arms]:
        row = {"model": name, **(book.get("evaluate", name) or {})}
        row["win_rate_vs_base"] = (
            0.5 if name == "base" else (book.get("evaluate", f"pairwise_{name}") or {}).get("win_rate_vs_base")
        )
        if name != "base":
            row["rm_accuracy_last_step"] = (book.get("overopt", name) or {}).get("rm_accuracy_last_step")
        rows.append(row)
    return rows


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_report(work: Path, preset, book) -> dict:
    rows = results_rows(preset, book)
    keys = ["model", *(k for k, _ in COLUMNS), "rm_accuracy_last_step"]
    with open(work / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    series = [row for arm in preset.arms for row in read_jsonl(work / "overopt" / f"{arm}.series.jsonl")]
    with open(work / "overopt.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["arm", "step", "rm_score", "referee_score", "mean_words"])
        writer.writeheader()
        writer.writerows(series)
    rm = book.get("rm") or {}
    pairs = book.get("pairs") or {}
    lines = [
        f"# The paper's claim in miniature ({preset.name} preset)",
        "",
        "The referee (`evaluation/referee.py`) is a programmatic stand-in for human raters, not a judgement of",
        "writing; the policies never trained against it. Their writing RM was trained on its noisy labels.",
        "",
        f"- preference pairs: {pairs.get('train_pairs')} training, {pairs.get('heldout_pairs')} held out; "
        f"{_fmt(pairs.get('labels_agreeing_with_referee'))} of labels agree with the referee's order "
        f"(noise T = {preset.label_temperature})",
        f"- learned RM: held-out accuracy {_fmt(rm.get('heldout_accuracy'))} (noisy labels), "
        f"{_fmt(rm.get('heldout_accuracy_noiseless'))} (the referee's order); score std {_fmt(rm.get('score_std'))}, "
        f"suggested gamma {rm.get('suggested_gamma')}",
        f"- arms: {', '.join(preset.arms)}; {preset.steps} steps x {preset.prompts_per_step} prompts x "
        f"{preset.samples_per_prompt} samples, seed {preset.seed}",
        "",
        "| model | " + " | ".join(title for _, title in COLUMNS) + " | RM accuracy, last step's rollouts |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for row in rows:
        cells = [_fmt(row.get(key)) for key, _ in COLUMNS] + [_fmt(row.get("rm_accuracy_last_step"))]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Over-optimisation (per step, the rollouts' mean scores):",
        "",
        "| arm | step | learned RM | referee | words |",
    ]
    lines.append("|---|---|---|---|---|")
    lines += [
        f"| {s['arm']} | {s['step']} | {s['rm_score']:.3f} | {s['referee_score']:.3f} | {s['mean_words']:.1f} |"
        for s in series
    ]
    (work / "summary.md").write_text("\n".join(lines) + "\n")
    plotted = plot(work / "pipeline.png", rows, series, preset)
    return {"results": str(work / "results.csv"), "plot": plotted, "models": len(rows)}


def plot(path: Path, rows: list[dict], series: list[dict], preset) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for arm in preset.arms:
        points = [s for s in series if s["arm"] == arm]
        steps = [s["step"] for s in points]
        axes[0].plot(steps, [s["rm_score"] for s in points], marker="o", label=arm)
        axes[1].plot(steps, [s["referee_score"] for s in points], marker="o", label=arm)
    axes[0].set(title="learned RM score of rollouts", xlabel="step")
    axes[1].set(title="referee score of rollouts", xlabel="step")
    axes[0].legend()
    names = [r["model"] for r in rows]
    axes[2].scatter([r.get("heldout_strict") or 0 for r in rows], [r.get("referee_score") or 0 for r in rows])
    for r, name in zip(rows, names, strict=True):
        axes[2].annotate(name, (r.get("heldout_strict") or 0, r.get("referee_score") or 0))
    axes[2].set(title="held-out: constraints vs referee", xlabel="constraint accuracy (strict)", ylabel="referee score")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
