"""How much of the RLMR reward's cost training steps see: CPU end-to-end runs, interleaved.

    python benchmarks/reward_overhead.py [--rounds 2] [--steps 6] [--discard 1] [--judge-ms 150] [--poll-s S]
                                         [--workdir DIR]

Two arms, run one after the other, round after round (rlmr, free, rlmr, free, ...), each a real
``python -m verl.trainer.main_ppo`` run on the CPU backend with the tiny assets
(``recipe.rlmr.dev.launch``), the group filter off, the same seeds and the policy frozen (actor
learning rate 0, so both arms sample from the same policy and response lengths cannot drift apart):

- ``rlmr``: the ``rlmr`` reward manager against the tiny writing RM served on a loopback port
  (``rewards.serve_rm``) and ``recipe.rlmr.dev.servers.reward``' judge in its own process, answering every
  request in ``--judge-ms``. Every sample asks the judge: each prompt gets one free-text constraint
  added to its rule constraints, and ``reward.rlmr.short_circuit=false`` (the untrained policy breaks
  the rules, which would otherwise skip the judge).
- ``free``: verl's own ``naive`` reward manager with ``free_reward`` below, a custom reward function
  that returns at once with the same ``reward_extra_info`` keys. Everything the RLMR reward adds
  (the manager, its HTTP clients, the RM's compute, the judge's latency) is in the difference, and
  nothing else: same trainer, estimator, rollout, data and problem size.

Per step it reads verl's own ``timing_s/*`` figures from the runs' tensorboard logs, drops the
first ``--discard`` steps of each run (start-up, first-call costs), and prints the median of each
figure per arm, the difference, and the step-time ratio rlmr / free. With streaming rewards the
reward runs inside ``timing_s/gen`` (the agent loop scores each sample as it finishes), so a
hidden reward shows as equal ``gen`` times, and the difference in ``gen`` is the reward's exposed
cost; the script also prints the step-time ratio with only that difference, which other work on a
shared machine disturbs less than the whole step. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ARMS = ("rlmr", "free")
TIMING = "timing_s/"
STEP = f"{TIMING}step"
GEN = f"{TIMING}gen"  # sampling from the replay buffer: generation, streaming rewards, the buffer's polls
# what the rlmr arm's reward manager says about its own latency (recipe/rlmr/metrics.py)
REWARD_LATENCY = ("rlmr/reward_latency_p50_s", "rlmr/reward_latency_p95_s")
JUDGE_CONSTRAINT = "Keep a calm, reflective tone throughout."  # no quoted words: the scripted judge says yes
JUDGE_MODEL = "fake-judge"


async def free_reward(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """A reward that costs nothing: score 0 and the `rlmr` manager's full ``reward_extra_info`` key set,
    every sample compliant and valid (the RLMR estimator reads the verdicts)."""
    from rewards.reward_info import RewardInfo

    return {"score": 0.0, **RewardInfo(writing_score=0.0, constraints_ok=1, reward_valid=1).to_dict()}


def add_judge_constraint(src: Path, dst: Path) -> Path:
    """The data set in ``src`` with one free-text constraint added to every prompt's spec (train and val)."""
    import pandas as pd

    from rewards.spec import ConstraintSpec, JudgeConstraint

    dst.mkdir(parents=True, exist_ok=True)
    for name in ("train.parquet", "val.parquet"):
        frame = pd.read_parquet(src / name)
        rows = []
        for reward_model in frame["reward_model"]:
            spec = ConstraintSpec.parse(reward_model["ground_truth"])
            spec = spec.model_copy(update={"constraints": [*spec.constraints, JudgeConstraint(text=JUDGE_CONSTRAINT)]})
            rows.append({**reward_model, "ground_truth": spec.to_ground_truth()})
        frame["reward_model"] = rows
        frame.to_parquet(dst / name)
    return dst


def arm_overrides(arm: str, judge_url: str) -> list[str]:
    """What distinguishes the arms; everything else is ``cpu_overrides``."""
    if arm == "rlmr":
        return [
            f"reward.rlmr.judge.url={judge_url}",
            f"reward.rlmr.judge.model={JUDGE_MODEL}",
            "reward.rlmr.short_circuit=false",
        ]
    if arm == "free":
        return [
            "reward.reward_manager.name=naive",
            f"reward.custom_reward_function.path={Path(__file__).resolve()}",
            "reward.custom_reward_function.name=free_reward",
        ]
    raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")


def kept_steps(scalars: dict[int, dict[str, float]], discard: int) -> list[dict[str, float]]:
    """The training steps' metrics after the first ``discard`` (step 0 holds only validation)."""
    return [metrics for step, metrics in sorted(scalars.items()) if step > discard]


def medians(steps: list[dict[str, float]]) -> dict[str, float]:
    """Median of every ``timing_s/*`` figure (and the reward latencies) over ``steps``."""
    keys = sorted({key for metrics in steps for key in metrics if key.startswith(TIMING) or key in REWARD_LATENCY})
    return {key: statistics.median(m[key] for m in steps if key in m) for key in keys}


def format_report(per_arm: dict[str, list[dict[str, float]]], per_run: list[tuple[str, float]]) -> str:
    """The table: one row per timing figure (step first), the median per arm, rlmr - free; then the
    step-time ratio and each run's median step time in the order the runs went."""
    rlmr, free = medians(per_arm["rlmr"]), medians(per_arm["free"])
    keys = sorted(set(rlmr) | set(free), key=lambda k: (k != STEP, not k.startswith(TIMING), k))
    rows = [("figure (median s)", "rlmr", "free", "rlmr - free")]
    for key in keys:
        a, b = rlmr.get(key), free.get(key)
        diff = f"{a - b:+.3f}" if a is not None and b is not None else "-"
        rows.append((key, "-" if a is None else f"{a:.3f}", "-" if b is None else f"{b:.3f}", diff))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]

    def line(row) -> str:
        return row[0].ljust(widths[0]) + "".join(
            f" | {cell.rjust(width)}" for cell, width in zip(row[1:], widths[1:], strict=True)
        )

    lines = [line(row) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    lines.append("")
    lines.append(
        f"steps kept: rlmr {len(per_arm['rlmr'])}, free {len(per_arm['free'])}; "
        f"step-time ratio rlmr / free: {rlmr[STEP] / free[STEP]:.3f}"
    )
    # The reward runs inside gen, so gen's difference is its exposed cost, free of the noise that other
    # work on a shared machine adds to the other phases.
    exposed = rlmr[GEN] - free[GEN]
    lines.append(
        f"reward exposed in {GEN}: {exposed:+.3f} s = {exposed / free[STEP]:+.1%} of the free arm's step; "
        f"step-time ratio with only that difference: {(free[STEP] + exposed) / free[STEP]:.3f}"
    )
    lines.append("median step per run, in order: " + ", ".join(f"{arm} {value:.2f} s" for arm, value in per_run))
    return "\n".join(lines)


def run_arm(arm: str, run_dir: Path, assets, rm_url: str, judge_url: str, args) -> dict[int, dict[str, float]]:
    """One training run of ``arm``; its tensorboard scalars by step. Raises with the log's tail if it fails."""
    from recipe.rlmr.dev import launch
    from recipe.rlmr.dev.demo import read_scalars

    run_dir.mkdir(parents=True)
    overrides = launch.cpu_overrides(
        assets,
        rm_url,
        run_dir,
        steps=args.steps,
        prompts_per_step=args.prompts,
        samples_per_prompt=args.samples,
        response_length=args.response_length,
        lr=0.0,  # frozen policy: both arms sample from the same model at every step
    )
    overrides += ["algorithm.filter_groups.enable=false", *arm_overrides(arm, judge_url)]
    if args.poll_s is not None:
        overrides.append(f"algorithm.rlmr.replay_poll_interval_s={args.poll_s}")
    log = run_dir / "trainer.log"
    with open(log, "w") as out:
        result = subprocess.run(
            launch.trainer_command("verl", overrides),
            env=launch.trainer_env(run_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=args.timeout,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"{arm} run failed ({result.returncode}); {log}:\n{log.read_text(errors='replace')[-4000:]}")
    return read_scalars(run_dir / "tensorboard")


@contextlib.contextmanager
def judge_process(service_ms: float, slots: int):
    """``recipe.rlmr.dev.servers.reward`` judge in its own process on a port it binds itself; yields its URL."""
    from recipe.rlmr.dev.servers.base import announced_server
    from recipe.rlmr.dev.servers.reward import READY_LINE

    command = [sys.executable, "-m", "recipe.rlmr.dev.servers.reward", "judge", "--service-ms", str(service_ms)]
    with announced_server([*command, "--slots", str(slots)], READY_LINE) as port:
        yield f"http://127.0.0.1:{port}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="rlmr, free pairs")
    parser.add_argument("--steps", type=int, default=6, help="training steps per run")
    parser.add_argument("--discard", type=int, default=1, help="first steps of each run left out")
    parser.add_argument("--judge-ms", type=float, default=150.0, help="the judge's service time per request")
    parser.add_argument("--judge-slots", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--samples", type=int, default=4, help="responses per prompt")
    parser.add_argument("--response-length", type=int, default=48)
    parser.add_argument(
        "--poll-s", type=float, default=None, help="algorithm.rlmr.replay_poll_interval_s (default: launch's 0.2)"
    )
    parser.add_argument("--retries", type=int, default=1, help="reruns of a failed run (a shared machine's OOM)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per run")
    parser.add_argument("--workdir", default=None, help="default: a temporary folder, removed at the end")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps <= args.discard or args.discard < 0:
        parser.error("need --rounds >= 1 and 0 <= --discard < --steps")
    return args


def main(argv: list[str] | None = None) -> None:
    from recipe.rlmr.dev import launch

    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        workdir = Path(args.workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="reward-overhead-")))
        assets = launch.build_assets(workdir / "assets", data="sample")
        judged = add_judge_constraint(assets.data, workdir / "assets" / "data_sample_judged")
        assets = launch.TinyAssets(assets.policy, assets.reward_model, judged)
        rm_url = stack.enter_context(launch.serve_reward_model(assets.reward_model, workdir / "reward_model.log"))
        judge_url = stack.enter_context(judge_process(args.judge_ms, args.judge_slots))
        per_arm: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
        per_run: list[tuple[str, float]] = []
        for round_ in range(args.rounds):
            for arm in ARMS:
                for attempt in range(args.retries + 1):
                    try:
                        scalars = run_arm(arm, workdir / f"{round_}-{arm}-{attempt}", assets, rm_url, judge_url, args)
                        break
                    except RuntimeError as error:  # e.g. Ray's OOM killer on a machine shared with other work
                        if attempt == args.retries:
                            raise
                        print(f"round {round_ + 1} {arm}: run failed, retrying: {str(error)[:300]}", flush=True)
                steps = kept_steps(scalars, args.discard)
                per_arm[arm] += steps
                per_run.append((arm, statistics.median(m[STEP] for m in steps)))
                print(f"round {round_ + 1} {arm}: step times {[round(m[STEP], 2) for m in steps]}", flush=True)
        (workdir / "steps.json").write_text(json.dumps(per_arm))
        print()
        print(format_report(per_arm, per_run))


if __name__ == "__main__":
    main()
