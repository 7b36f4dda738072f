"""``python -m recipe.rlmr.experiment``: run the arms, then write metrics.csv, summary.md, curves.png.

    python -m recipe.rlmr.experiment --workdir DIR [--policy tiny|smollm2] [--preset weight_sweep]
        [--arms writing_only,fixed_weight,rlmr] [--steps N] [--seeds 0,1] [--device cpu|cuda] [overrides...]

Each arm is a real training run through verl's trainer, identical except algorithm.rlmr.mode:
same policy, prompts (one "fewer than N words" limit each), length-biased writing RM (score =
characters / 100), seeds, learning rate, sampling and filter setting (off). Anything after the
options is a Hydra override applied to every run. A progress line is printed per step. An arm
``fixed_weight@W`` is mode fixed_weight with ``algorithm.rlmr.fixed_weight=W``; ``rlmr@G`` is mode rlmr
with ``algorithm.rlmr.gamma=G`` in writing-RM units, ``rlmr@Gsd`` the same in the group's compliant-score
std (``gamma_mode=relative``): ``--arms rlmr@0.1,rlmr@1,rlmr@1sd`` is a gamma sweep in one workdir.

``--preset weight_sweep`` (recipe/rlmr/experiment/sweep.py): prompts in three categories whose
writing score is scaled 0.2x, 1x and 5x (``CategoryScaledRM``, a stand-in), arms writing_only,
fixed_weight@0.1/1/10, rlmr, verifier_only and gdpo, 16 steps, seeds 0,1 (each can be overridden),
and, beside the usual outputs, sweep.csv, sweep.md and tradeoff.png per arm and category.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

from recipe.rlmr.experiment.aggregate import EDGE, nanmean, run_rows, untrained_violation_rate
from recipe.rlmr.experiment.gamma import GAMMA_FILES, gamma_arms, rollout_lengths, rollout_spread, write_gamma
from recipe.rlmr.experiment.policies import POLICIES
from recipe.rlmr.experiment.report import plot, summary_markdown, write_csv
from recipe.rlmr.experiment.runner import Plan, arm_mode, latest_checkpoint, run_one
from recipe.rlmr.experiment.sweep import SWEEP_ARMS, SWEEP_STEPS, write_sweep
from recipe.rlmr.schema import MODES

DEFAULT_ARMS = "writing_only,fixed_weight,rlmr"
WALL_TIME_FILE = "wall_s.txt"  # a run's wall time, all its segments (--resume) summed, for --report-only


def _csv_list(text: str, cast=str) -> list:
    items = [cast(item.strip()) for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _arms(text: str) -> list[str]:
    arms = _csv_list(text)
    try:
        unknown = [arm for arm in arms if arm_mode(arm)[0] not in MODES]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown arm(s) {unknown}: an arm is an algorithm.rlmr.mode, one of {MODES}, "
            "or fixed_weight@W, rlmr@G, rlmr@Gsd"
        )
    if len(set(arms)) != len(arms):
        raise argparse.ArgumentTypeError(f"arms repeat: {arms}")
    return arms


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m recipe.rlmr.experiment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", required=True, help="assets, runs and the outputs go here")
    parser.add_argument("--policy", choices=sorted(POLICIES), default="tiny", help="the policy to train (default tiny)")
    parser.add_argument(
        "--preset",
        choices=["weight_sweep"],
        help="weight_sweep: category-scaled writing RM, the sweep's arms and 16 steps, per-category outputs",
    )
    parser.add_argument(
        "--arms",
        type=_arms,
        help=f"algorithm.rlmr.mode (or fixed_weight@W, rlmr@G, rlmr@Gsd) per arm "
        f"(default {DEFAULT_ARMS}; the preset's with --preset)",
    )
    parser.add_argument("--steps", type=int, help=f"training steps per run (default 20; {SWEEP_STEPS} with the preset)")
    parser.add_argument(
        "--seeds", type=lambda t: _csv_list(t, int), default=[0, 1], help="one run per arm and seed (default 0,1)"
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="cpu: the CPU backend; cuda: verl's CUDA platform"
    )
    size = parser.add_argument_group("problem size (default: the policy's, see recipe/rlmr/experiment/policies.py)")
    size.add_argument("--word-limit", type=int, help="the prompts' limit: fewer than N words")
    size.add_argument("--response-length", type=int, help="response token budget")
    size.add_argument("--prompts", type=int, help="prompts per step")
    size.add_argument("--samples", type=int, help="samples per prompt")
    size.add_argument("--lr", type=float, help="actor learning rate")
    parser.add_argument("--timeout-s", type=float, default=None, help="give up on a run after this many seconds")
    parser.add_argument(
        "--save-freq",
        type=int,
        default=0,
        metavar="N",
        help="save a checkpoint every N steps (only the newest is kept), so --resume can continue a run cut short",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue each run from its newest checkpoint (one without starts over; one with all --steps "
        "logged is kept as it is); what a run logged before the checkpoint stays in the outputs",
    )
    parser.add_argument(
        "--dump-rollouts",
        action="store_true",
        help="each step's responses, scores and verdicts as runs/<run>/rollouts/<step>.jsonl (on with the preset)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: rebuild the outputs from the runs already in the workdir (e.g. a run cut short)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every run (after the experiment's)")
    args = parser.parse_intermixed_args(argv)
    sweep = args.preset == "weight_sweep"
    if args.arms is None:
        args.arms = list(SWEEP_ARMS) if sweep else _arms(DEFAULT_ARMS)
    if args.steps is None:
        args.steps = SWEEP_STEPS if sweep else 20
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.save_freq < 0:
        parser.error("--save-freq must be 0 (no checkpoints) or more")
    if args.resume and args.report_only:
        parser.error("--resume trains; --report-only trains nothing: choose one")
    return args


def _recorded_wall_s(run_dir: Path) -> float | None:
    """The run's wall time as recorded in ``WALL_TIME_FILE`` (all its segments), None if never recorded."""
    wall_file = run_dir / WALL_TIME_FILE
    return float(wall_file.read_text()) if wall_file.exists() else None


def _policy(args: argparse.Namespace):
    policy = POLICIES[args.policy]
    changes = {
        "word_limit": args.word_limit,
        "response_length": args.response_length,
        "prompts_per_step": args.prompts,
        "samples_per_prompt": args.samples,
        "lr": args.lr,
    }
    return replace(policy, **{key: value for key, value in changes.items() if value is not None})


def _progress(arm: str, seed: int, steps: int):
    def show(step: int, values: dict[str, float]) -> None:
        def get(tag: str, fmt: str) -> str:
            value = values.get(tag, math.nan)
            return "-" if math.isnan(value) else fmt.format(value)

        note = "  (untrained policy's rollout)" if step == 1 else ""
        print(
            f"[{arm} seed {seed}] step {step}/{steps}: violation rate {get('rlmr/violation_rate', '{:.2f}')}, "
            f"words {get('rlmr/response_words_mean', '{:.1f}')}, writing {get('critic/score/mean', '{:.2f}')} "
            f"(compliant {get('rlmr/writing_score_compliant_mean', '{:.2f}')}), violators' adv "
            f"{get('rlmr/adv_violators_mean', '{:+.2f}')}, {get('timing_s/step', '{:.1f}')} s{note}",
            flush=True,
        )

    return show


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from recipe.rlmr.dev.demo import read_scalars

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    policy = _policy(args)
    sweep = args.preset == "weight_sweep"
    rm_text = (
        "category-scaled length-biased stand-in (score = characters / 100 x 0.2, 1 or 5 by the prompt's category)"
        if sweep
        else "length-biased stand-in (score = characters / 100)"
    )
    started = time.monotonic()
    print(
        f"RLMR length-hacking experiment: policy {policy.name} ({policy.description}) on {args.device}; "
        f"arms {', '.join(args.arms)}; seeds {', '.join(map(str, args.seeds))}; {args.steps} steps each\n"
        f"  prompts: one 'fewer than {policy.word_limit} words' limit each; {policy.prompts_per_step} prompts x "
        f"{policy.samples_per_prompt} samples x {policy.response_length} tokens per step; lr {policy.lr:g}; "
        f"group filter off\n  writing RM: {rm_text}; outputs in {workdir}",
        flush=True,
    )
    policy_path = None if args.report_only else policy.model_path(workdir)
    if policy_path is not None:
        print(f"  policy folder: {policy_path}", flush=True)
    plan = Plan(
        workdir, policy, args.arms, args.seeds, args.steps, args.device, policy_path, args.overrides, args.timeout_s
    )
    gamma_sweep = len(gamma_arms(args.arms)) >= 2
    # a gamma sweep reads step 1's rollouts for the compliant answers' spread that gamma is measured against
    plan = replace(plan, save_freq=args.save_freq, resume=args.resume, dump_rollouts=args.dump_rollouts or gamma_sweep)
    if sweep:
        plan = replace(plan, data="word_limit_categories", reward_model="scaled", dump_rollouts=True)
    finished_runs: list[tuple[str, int, Path]] = []

    rows: list[dict] = []
    wall_s: dict[str, list[float]] = {}
    failed = []
    for seed in args.seeds:
        for arm in args.arms:
            run_dir = plan.run_dir(arm, seed)
            logged = read_scalars(run_dir / "tensorboard") if (args.report_only or args.resume) else {}
            if args.report_only or (args.resume and max(logged, default=0) >= args.steps):
                if not run_dir.is_dir():
                    print(f"[{arm} seed {seed}] no run in {run_dir}; left out", file=sys.stderr)
                    continue
                if args.resume:
                    print(f"[{arm} seed {seed}] already has its {args.steps} steps; kept as it is", flush=True)
                recorded_s = _recorded_wall_s(run_dir)
                if recorded_s is not None:
                    wall_s.setdefault(arm, []).append(recorded_s)
                rows.extend(run_rows(arm, seed, logged))
                finished_runs.append((arm, seed, run_dir))
                continue
            checkpoint = latest_checkpoint(run_dir) if args.resume else None
            if checkpoint is not None:
                print(f"[{arm} seed {seed}] resuming from the checkpoint of step {checkpoint} ...", flush=True)
                earlier_s = _recorded_wall_s(run_dir) or 0.0
            else:
                if args.resume:
                    print(f"[{arm} seed {seed}] no checkpoint in {run_dir}: starting over", flush=True)
                print(f"[{arm} seed {seed}] starting (about a minute of start-up before step 1) ...", flush=True)
                earlier_s = 0.0
            result = run_one(plan, arm, seed, _progress(arm, seed, args.steps), continuing=checkpoint is not None)
            result.wall_s += earlier_s
            (run_dir / WALL_TIME_FILE).write_text(f"{result.wall_s:.1f}\n")  # a failed run's too, for --resume
            if result.returncode != 0:
                tail = (result.workdir / "trainer.log").read_text(errors="replace").splitlines()[-30:]
                print("\n".join(tail), file=sys.stderr)
                print(f"[{arm} seed {seed}] the trainer failed (exit {result.returncode}): {result.workdir}")
                failed.append((arm, seed))
                continue
            mine = run_rows(arm, seed, read_scalars(result.workdir / "tensorboard"))
            rows.extend(mine)
            finished_runs.append((arm, seed, run_dir))
            wall_s.setdefault(arm, []).append(result.wall_s)
            print(
                f"[{arm} seed {seed}] done in {result.wall_s:.0f} s; untrained policy broke the limit in "
                f"{untrained_violation_rate(mine):.0%} of step 1's responses",
                flush=True,
            )
    if not rows:
        print("no run finished; nothing to report", file=sys.stderr)
        return 1

    header = (
        f"# RLMR length-hacking experiment: {policy.name} on {args.device}\n\n"
        f"{policy.description}; 'fewer than {policy.word_limit} words'; {policy.prompts_per_step} prompts x "
        f"{policy.samples_per_prompt} samples x {policy.response_length} tokens per step; lr {policy.lr:g}; "
        f"{args.steps} steps; seeds {', '.join(map(str, args.seeds))}; writing RM: {rm_text}; group filter off. "
        "Each cell: mean over the first 3 steps → mean over the last 3 steps (all seeds pooled)."
    )
    if args.overrides:
        header += f" Extra overrides: `{' '.join(args.overrides)}`."
    write_csv(rows, workdir / "metrics.csv")
    (workdir / "summary.md").write_text(summary_markdown(rows, wall_s, header))
    title = f"{policy.name} on {args.device}: '<{policy.word_limit} words', length-biased RM; seeds {args.seeds}"
    plot(rows, workdir / "curves.png", title)
    print("\n" + (workdir / "summary.md").read_text())
    names = ["metrics.csv", "summary.md", "curves.png", "runs"]
    if sweep:
        sweep_header = (
            f"# RLMR weight sweep: {policy.name} on {args.device}\n\n"
            f"'fewer than {policy.word_limit} words'; writing RM: {rm_text}; arms {', '.join(args.arms)}; "
            f"{args.steps} steps; seeds {', '.join(map(str, args.seeds))}; {policy.prompts_per_step} prompts x "
            f"{policy.samples_per_prompt} samples x {policy.response_length} tokens per step; lr {policy.lr:g}."
        )
        sweep_title = (
            f"{policy.name}: weight sweep, '<{policy.word_limit} words', category-scaled RM; seeds {args.seeds}"
        )
        write_sweep(workdir, finished_runs, rows, sweep_header, sweep_title)
        print("\n" + (workdir / "sweep.md").read_text())
        names[3:3] = ["sweep.csv", "sweep.md", "tradeoff.png"]
    if gamma_sweep:
        spread = nanmean(
            rollout_spread(plan.run_dir(arm, seed)) for seed in args.seeds for arm in gamma_arms(args.arms)
        )
        gamma_header = (
            f"# RLMR gamma sweep: {policy.name} on {args.device}\n\n'fewer than {policy.word_limit} words'; "
            f"writing RM: {rm_text}; {args.steps} steps; seeds {', '.join(map(str, args.seeds))}."
        )
        lengths = {}
        for arm in gamma_arms(args.arms):
            logged = sorted({int(r["step"]) for r in rows if r["arm"] == arm})
            run_dirs = [plan.run_dir(arm, seed) for seed in args.seeds]
            lengths[arm] = rollout_lengths(run_dirs, logged[-EDGE:])
        write_gamma(workdir, rows, spread, gamma_header, policy.word_limit, lengths)
        print("\n" + (workdir / "gamma.md").read_text())
        names[3:3] = list(GAMMA_FILES)
    print(f"finished in {time.monotonic() - started:.0f} s")
    for name in names:
        print(f"  {name}: {workdir / name}")
    if failed:
        print(f"failed runs: {failed}", file=sys.stderr)
        return 1
    return 0
