"""``make demo``: a real RLMR training run on this machine's CPU, start to finish.

    python -m recipe.rlmr.dev.demo [--workdir rlmr-demo] [--steps 5] [--entry recipe|verl]
                                   [--data sample|word_limit] [overrides...]

It builds a tiny Qwen2 policy, a tiny writing reward model and the sample prompt set, serves the
reward model over HTTP, and runs verl's trainer with the RLMR config and the CPU backend
(``recipe.rlmr.cpu``): rollout, mixed reward with per-sample constraint verdicts, RLMR
advantages, actor update and weight sync, once per step. Then it prints one row per step
(mean writing score, violation rate, mean response length, step time), and writes:

    WORKDIR/tensorboard/      verl's tensorboard logs (``tensorboard --logdir WORKDIR/tensorboard``)
    WORKDIR/curves.png        the table's curves
    WORKDIR/metrics.csv       the table, as CSV
    WORKDIR/trainer.log       the trainer's full output

The models are random and tiny: the run shows the machinery working, not a better writer.

Resume (docs/checkpoints.md): checkpoints go to WORKDIR/checkpoints. Run with ``trainer.save_freq=1``,
then again in the same workdir with more ``--steps`` and ``trainer.resume_mode=auto``: verl carries on
from the last checkpoint, and the table keeps the earlier steps (a rerun without resuming starts it afresh).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

# (metric in verl's logs, column title, format)
COLUMNS = [
    ("critic/score/mean", "writing score", "{:.4f}"),
    ("rlmr/violation_rate", "violation rate", "{:.3f}"),
    ("rlmr/adv_violators_mean", "violator adv.", "{:+.3f}"),
    ("response_length/mean", "response tokens", "{:.1f}"),
    ("timing_s/step", "step time (s)", "{:.1f}"),
]


def read_scalars(tensorboard_dir: str | Path) -> dict[int, dict[str, float]]:
    """Every scalar verl logged, as {step: {tag: value}} (the last value wins if a step repeats)."""
    return scalars_from_event_files(Path(tensorboard_dir).rglob("events.out.tfevents.*"))


def scalars_from_event_files(event_files) -> dict[int, dict[str, float]]:
    """The scalars of these tensorboard event files, as {step: {tag: value}}, files read in name order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: dict[int, dict[str, float]] = {}
    for event_file in sorted(event_files):
        accumulator = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            for event in accumulator.Scalars(tag):
                steps.setdefault(event.step, {})[tag] = event.value
    return dict(sorted(steps.items()))


def _known(values: dict[str, float], tag: str) -> bool:
    return tag in values and not math.isnan(values[tag])


def format_table(scalars: dict[int, dict[str, float]]) -> str:
    """One row per step; "-" where the step has no value (e.g. no group with both kinds)."""
    header = ["step"] + [title for _, title, _ in COLUMNS]
    rows = [
        [str(step)] + [fmt.format(values[tag]) if _known(values, tag) else "-" for tag, _, fmt in COLUMNS]
        for step, values in scalars.items()
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=False)) for line in [header, *rows]
    ]
    return "\n".join(lines)


def write_csv(scalars: dict[int, dict[str, float]], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step"] + [tag for tag, _, _ in COLUMNS])
        for step, values in scalars.items():
            writer.writerow([step] + [values.get(tag, "") for tag, _, _ in COLUMNS])


def plot(scalars: dict[int, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    steps = list(scalars)
    figure, axes = plt.subplots(1, len(COLUMNS), figsize=(4 * len(COLUMNS), 3.2))
    for axis, (tag, title, _) in zip(axes, COLUMNS, strict=False):
        points = [(step, values[tag]) for step, values in scalars.items() if _known(values, tag)]
        axis.plot([s for s, _ in points], [v for _, v in points], marker="o")
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.set_xticks(steps)
        axis.grid(alpha=0.3)
    figure.suptitle("RLMR on CPU: tiny Qwen2 policy, tiny writing RM, sample prompts")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def checkpoint_to_resume(workdir: Path, overrides: list[str]) -> int | None:
    """The step verl will resume from: the overrides ask for ``trainer.resume_mode=auto`` and the launcher's
    checkpoint folder (``WORKDIR/checkpoints``) names a complete checkpoint; None otherwise."""
    modes = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("trainer.resume_mode=")]
    tracker = workdir / "checkpoints" / "latest_checkpointed_iteration.txt"  # verl writes it after a full save
    if not modes or modes[-1] != "auto" or not tracker.exists():
        return None
    return int(tracker.read_text().strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="rlmr-demo", help="where assets and outputs go (default: ./rlmr-demo)")
    parser.add_argument("--steps", type=int, default=5, help="training steps (default 5)")
    parser.add_argument(
        "--entry",
        choices=["recipe", "verl"],
        default="recipe",
        help="recipe: python -m recipe.rlmr.main_rlmr; verl: python -m verl.trainer.main_ppo",
    )
    parser.add_argument(
        "--data",
        choices=["sample", "word_limit"],
        default="sample",
        help="sample: the sample prompts with augmented constraints (most broken by the random policy); "
        "word_limit: one 'fewer than 16 words' limit per prompt, broken about half the time",
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the trainer")
    args = parser.parse_intermixed_args(argv)

    from recipe.rlmr.dev import launch

    workdir = Path(args.workdir).resolve()
    resume_from = checkpoint_to_resume(workdir, args.overrides)
    if resume_from is None:
        for stale in (workdir / "tensorboard").glob("events.out.tfevents.*"):
            stale.unlink()  # a rerun's table shows this run only
    print(f"RLMR CPU demo: {args.steps} steps, outputs in {workdir}", flush=True)
    if resume_from is not None:
        # the resumed steps log again after the earlier ones, and read_scalars lets the last value win
        print(f"resuming after step {resume_from} (checkpoints in {workdir / 'checkpoints'})", flush=True)
    print(
        "building tiny assets, serving the reward model, starting verl (about a minute before step 1) ...", flush=True
    )
    started = time.monotonic()
    result = launch.run(workdir, steps=args.steps, entry=args.entry, extra=args.overrides, data=args.data)
    log = workdir / "trainer.log"
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        print("\n".join(tail), file=sys.stderr)
        print(f"\nthe trainer failed (exit {result.returncode}); full log: {log}", file=sys.stderr)
        return result.returncode

    scalars = read_scalars(workdir / "tensorboard")
    if not scalars:
        print(f"the trainer wrote no metrics to {workdir / 'tensorboard'}; see {log}", file=sys.stderr)
        return 1
    print(f"\n{format_table(scalars)}")
    print("writing score: the writing RM's mean; violation rate: share of the trained batch breaking a constraint;")
    print("violator adv.: violators' mean advantage in groups with both kinds (-: no such group that step)\n")
    write_csv(scalars, workdir / "metrics.csv")
    plot(scalars, workdir / "curves.png")
    print(f"finished in {time.monotonic() - started:.0f} s")
    print(f"  tensorboard logs: {workdir / 'tensorboard'}  (tensorboard --logdir {workdir / 'tensorboard'})")
    print(f"  plot:             {workdir / 'curves.png'}")
    print(f"  table (CSV):      {workdir / 'metrics.csv'}")
    print(f"  trainer log:      {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
