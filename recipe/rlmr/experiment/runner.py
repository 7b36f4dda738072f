"""One real training run per arm and seed, identical except ``algorithm.rlmr.mode``.

Every run goes through ``recipe.rlmr.dev.launch.run`` (verl's ``main_ppo`` with the recipe config):
the same assets (policy, data) built once under the workdir, the same length-biased writing RM
(``recipe.rlmr.dev.servers.reward.LengthBiasedRM``), the same seed-dependent data order and sampling, learning rate
and problem size. The group filter is off in every arm: it drops groups by their verdicts, which
would hand the writing-only baseline a constraint signal of its own.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recipe.rlmr.experiment.policies import Policy

STEP_LINE = re.compile(r"step:(\d+) - (.*)$")
CHECKPOINTS = "checkpoints"  # under a run's folder (the launcher's trainer.default_local_dir)
# verl writes the step of the newest complete checkpoint here
LATEST_CHECKPOINT = "latest_checkpointed_iteration.txt"


RELATIVE = "sd"  # rlmr@Gsd: gamma G in the group's compliant-score std (gamma_mode=relative)


@dataclass(frozen=True)
class Arm:
    """What an arm sets: its ``algorithm.rlmr.mode`` and, for a valued arm, one knob of that mode.

    ``fixed_weight@W``  mode fixed_weight, ``fixed_weight=W``
    ``rlmr@G``          mode rlmr, ``gamma=G`` in writing-RM units (``gamma_mode=absolute``)
    ``rlmr@Gsd``        mode rlmr, ``gamma=G`` in the group's compliant-score std (``gamma_mode=relative``)
    """

    mode: str
    value: float | None = None
    relative: bool = False

    def overrides(self) -> list[str]:
        if self.value is None:
            return []
        if self.mode == "fixed_weight":
            return [f"algorithm.rlmr.fixed_weight={self.value:g}"]
        mode = "relative" if self.relative else "absolute"
        return [f"algorithm.rlmr.gamma={self.value:g}", f"algorithm.rlmr.gamma_mode={mode}"]


def parse_arm(arm: str) -> Arm:
    """``MODE``, ``fixed_weight@W``, ``rlmr@G`` or ``rlmr@Gsd`` (see ``Arm``)."""
    mode, sep, value = arm.partition("@")
    if not sep:
        return Arm(mode)
    relative = mode == "rlmr" and value.endswith(RELATIVE)
    number = value[: -len(RELATIVE)] if relative else value
    if mode not in ("fixed_weight", "rlmr"):
        raise ValueError(f"arm {arm!r}: only fixed_weight@W and rlmr@G (or rlmr@Gsd) take a value")
    try:
        parsed = float(number)
    except ValueError:
        raise ValueError(f"arm {arm!r}: expected a number after '@', found {value!r}") from None
    if not parsed > 0:
        raise ValueError(f"arm {arm!r}: the value must be positive")
    return Arm(mode, parsed, relative)


def arm_mode(arm: str) -> tuple[str, float | None]:
    """The arm's ``algorithm.rlmr.mode`` and its value (``fixed_weight@W``'s weight, ``rlmr@G``'s gamma)."""
    parsed = parse_arm(arm)
    return parsed.mode, parsed.value


def arm_slug(arm: str) -> str:
    """The arm as a folder and experiment name: ``fixed_weight@0.1`` -> ``fixed_weight_w0.1``,
    ``rlmr@0.3`` -> ``rlmr_g0.3``, ``rlmr@1sd`` -> ``rlmr_g1sd``."""
    mode, sep, value = arm.partition("@")
    if not sep:
        return arm
    return f"{mode}_{'w' if mode == 'fixed_weight' else 'g'}{value}"


@dataclass
class RunResult:
    arm: str
    seed: int
    workdir: Path
    returncode: int
    wall_s: float


@dataclass
class Plan:
    """What every run shares, and what makes each one its own."""

    workdir: Path
    policy: Policy
    arms: list[str]
    seeds: list[int]
    steps: int
    device: str = "cpu"
    policy_path: Path | None = None  # Policy.model_path's answer, resolved once before the runs
    overrides: list[str] = field(default_factory=list)
    timeout_s: float | None = None
    data: str = "word_limit"  # launch.DATA_SETS
    reward_model: str = "length"  # launch.REWARD_MODELS
    dump_rollouts: bool = False  # each step's responses and rewards as runs/<run>/rollouts/<step>.jsonl
    save_freq: int = 0  # a checkpoint every N steps (only the newest kept); 0: none
    resume: bool = False  # continue each run from its newest checkpoint, keeping what it logged before

    def run_dir(self, arm: str, seed: int) -> Path:
        return self.workdir / "runs" / f"{arm_slug(arm)}_seed{seed}"

    def arm_overrides(self, arm: str, seed: int) -> list[str]:
        """The Hydra overrides of one run on top of the launcher's; only the mode (and, for
        a valued arm, its weight or gamma) differs between arms."""
        run_dir = self.run_dir(arm, seed)
        parsed = parse_arm(arm)
        return [
            f"algorithm.rlmr.mode={parsed.mode}",
            *parsed.overrides(),
            *([f"trainer.rollout_data_dir={run_dir / 'rollouts'}"] if self.dump_rollouts else []),
            *([f"trainer.save_freq={self.save_freq}", "trainer.max_actor_ckpt_to_keep=1"] if self.save_freq else []),
            *(["trainer.resume_mode=auto"] if self.resume else []),
            "algorithm.filter_groups.enable=false",
            # one update per step, so the rollout's own log-probs are the old ones (measured: ppo_kl ~1e-9
            # with the fp32 actor); verl's bypass mode skips the actor's recomputation of them
            "algorithm.rollout_correction.bypass_mode=true",
            "trainer.total_epochs=1000",  # the step count decides: the prompt set is small, epochs are short
            f"data.seed={seed}",
            f"actor_rollout_ref.rollout.seed={seed}",  # the hf rollout seeds its sampling with it
            f"trainer.experiment_name={arm_slug(arm)}_seed{seed}",
            f"hydra.run.dir={run_dir / 'hydra'}",  # the composed config lands in hydra/.hydra/config.yaml
            *self.overrides,
        ]


def latest_checkpoint(run_dir: Path) -> int | None:
    """The step of the run's newest complete checkpoint (verl's own record of it), or None."""
    record = run_dir / CHECKPOINTS / LATEST_CHECKPOINT
    if not record.exists():
        return None
    text = record.read_text().strip()
    if not text.isdigit():
        raise ValueError(f"{record}: expected a step number, found {text!r}")
    return int(text)


def parse_step_line(line: str) -> tuple[int, dict[str, float]] | None:
    """verl's console logger line ``step:N - tag:value - ...`` as (N, {tag: value}); None for other lines."""
    match = STEP_LINE.search(line)
    if not match:
        return None
    values = {}
    for item in match.group(2).split(" - "):
        tag, sep, value = item.rpartition(":")
        if not sep:
            continue
        try:
            values[tag.strip()] = float(value)
        except ValueError:
            continue
    return int(match.group(1)), values


class LogFollower(threading.Thread):
    """Follows a growing trainer log and calls ``on_step`` with each step line it finds."""

    def __init__(self, path: Path, on_step: Callable[[int, dict[str, float]], None], poll_s: float = 0.5):
        super().__init__(daemon=True)
        self.path, self.on_step, self.poll_s = path, on_step, poll_s
        self._done = threading.Event()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)

    def run(self) -> None:
        while not self.path.exists() and not self._done.wait(self.poll_s):
            pass
        if not self.path.exists():
            return
        with open(self.path, errors="replace") as log:
            pending = ""
            finishing = False
            while True:
                chunk = log.read()
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    parsed = parse_step_line(line)
                    if parsed:
                        self.on_step(*parsed)
                if chunk:
                    continue
                if finishing:  # stopped, and everything written before the stop has been read
                    break
                finishing = self._done.wait(self.poll_s)


def run_one(
    plan: Plan, arm: str, seed: int, on_step: Callable[[int, dict[str, float]], None], continuing: bool = False
) -> RunResult:
    """Train one arm with one seed; its logs, tensorboard and composed config under ``plan.run_dir``.

    ``continuing``: the run resumes from its checkpoint (``latest_checkpoint``), so what it logged
    before stays; otherwise it starts over and the folder's earlier figures and log go."""
    from recipe.rlmr.dev import launch

    run_dir = plan.run_dir(arm, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "trainer.log"
    if continuing:
        # the steps before the checkpoint stay in their event files (a repeated step: the newer value wins,
        # demo.read_scalars); the earlier log is kept beside the new one as trainer.log.1, .2, ...
        if log_path.exists():
            log_path.rename(run_dir / f"trainer.log.{len(list(run_dir.glob('trainer.log.*'))) + 1}")
    else:
        stale = [*(run_dir / "tensorboard").glob("events.out.tfevents.*"), *(run_dir / "rollouts").glob("*.jsonl")]
        for path in stale:
            path.unlink()  # a rerun's figures show this run only
        if log_path.exists():
            log_path.unlink()
    follower = LogFollower(log_path, on_step)
    follower.start()
    started = time.monotonic()
    try:
        result = launch.run(
            run_dir,
            steps=plan.steps,
            entry="verl",
            extra=plan.arm_overrides(arm, seed),
            log_path=log_path,
            timeout_s=plan.timeout_s,
            data=plan.data,
            word_limit=plan.policy.word_limit if plan.data in launch.WORD_LIMIT_DATA else None,
            device=plan.device,
            reward_model=plan.reward_model,
            policy=plan.policy_path,
            assets_dir=plan.workdir / "assets",
            prompts_per_step=plan.policy.prompts_per_step,
            samples_per_prompt=plan.policy.samples_per_prompt,
            response_length=plan.policy.response_length,
            lr=plan.policy.lr,
        )
    finally:
        follower.stop()
    return RunResult(arm, seed, run_dir, result.returncode, time.monotonic() - started)
