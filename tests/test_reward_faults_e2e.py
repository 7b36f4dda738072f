"""Reward servers failing inside real CPU training runs (verl's ``main_ppo``, RLMR config, tiny assets).

The faulty run (12 steps, 4 prompts x 4 samples; every prompt has a word limit and a free-text
constraint, and ``short_circuit=false``, so every sample asks both the writing RM and the judge):

- the judge (``recipe.rlmr.dev.servers.reward.FakeJudge``, in this process) answers its first requests after
  the preflight with two HTTP 503s and one hang (``judge.max_retries=0``, ``judge.timeout_s=2``);
- the writing RM (``rewards.serve_rm`` in a child process) is killed (SIGKILL) as soon as step 1 is
  logged and started again on the same port once step 2 is logged.

The run completes; the affected trajectories are ``reward_valid = 0`` and the step's report names
the backend; their groups are dropped and refilled or kept with zero advantage; no invalid
sample's placeholder score moves an advantage (``rlmr/adv_invalid_abs_max == 0``); the last step,
with the RM back, has no invalid reward. Steps without an RM are short (seconds), Ray forwards the
log in bursts and the restart takes ~8 s, so which steps the outage covers depends on the machine's
speed: the checks find the outage's first step (``outage_step``) rather than assume step 2, the run
leaves several steps after the restart, and the budget is set past the run's length here (the
dead-RM run tests it).

The dead-RM run (preflight off, RM URL with nothing behind it, ``consecutive_steps=2``) stops after
step 2 with ``RewardsKeepFailingError`` naming the writing RM and its URL.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recipe.rlmr.dev import launch, sample_data
from recipe.rlmr.dev.demo import read_scalars
from recipe.rlmr.dev.servers.base import stop_process
from recipe.rlmr.dev.servers.reward import FakeJudge
from rewards.serve_rm import READY_LINE

pytestmark = [pytest.mark.cpu_e2e, pytest.mark.slow]

STEPS, PROMPTS, SAMPLES = 12, 4, 4
JUDGE_5XX, JUDGE_HANGS = 2, 1


def build_data(out: Path) -> Path:
    """The seed prompts, each with a word limit (mixed verdicts) and a free-text constraint (the judge's)."""
    return sample_data.build_word_limit(out, judge_constraint=sample_data.ON_TOPIC, data_source="rlmr_faults")


def start_rm(model_dir: Path, port: int, log_path: Path) -> tuple[subprocess.Popen, int]:
    """``python -m rewards.serve_rm`` on ``port`` (0: any); returns the process and the port it announced."""
    seen = log_path.read_text(errors="replace").count(READY_LINE) if log_path.exists() else 0
    log = open(log_path, "a")
    command = [sys.executable, "-m", "rewards.serve_rm", "--model", str(model_dir), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--served-model-name", launch.RM_NAME, "--threads", "1"], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        announced = [line for line in log_path.read_text(errors="replace").splitlines() if line.startswith(READY_LINE)]
        if len(announced) > seen:  # this process's line, not a previous server's in the same log
            bound = int(announced[seen].rsplit(":", 1)[1])
            assert port in (0, bound), f"serve_rm bound {bound}, not the asked {port}"
            return process, bound
        if process.poll() is not None:
            raise RuntimeError(f"serve_rm exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"serve_rm did not announce its port; see {log_path}")


def wait_for(path: Path, text: str, process: subprocess.Popen, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise AssertionError(f"trainer exited with {process.returncode} before {text!r}")
        time.sleep(0.2)
    raise TimeoutError(f"{text!r} not in {path} within {timeout_s} s")


FAST_FAILURES = [
    "reward.rlmr.short_circuit=false",  # every sample asks the judge as well
    "reward.rlmr.writing_rm.max_retries=1",
    "reward.rlmr.writing_rm.backoff_s=0.05",
    "reward.rlmr.writing_rm.timeout_s=10",
    "algorithm.rlmr.filter.max_dropped_groups=2",  # a dead backend costs two refills per step, not sixteen
]


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reward-faults")
    assets = launch.build_assets(workdir, data="word_limit")
    assets = launch.TinyAssets(assets.policy, assets.reward_model, build_data(workdir / "data_faults"))
    rm_log, trainer_log = workdir / "reward_model_server.log", workdir / "trainer.log"
    rm, port = start_rm(assets.reward_model, 0, rm_log)
    rm_url = f"http://127.0.0.1:{port}"
    events = {}
    with FakeJudge() as judge:
        overrides = launch.cpu_overrides(assets, rm_url, workdir, STEPS, PROMPTS, SAMPLES) + [
            *FAST_FAILURES,
            f"reward.rlmr.judge.url={judge.url}",
            "reward.rlmr.judge.model=fake-judge",
            "reward.rlmr.judge.max_retries=0",
            "reward.rlmr.judge.timeout_s=2",
            f"reward.rlmr.failure_budget.consecutive_steps={STEPS + 1}",
            "trainer.total_epochs=100",  # the step count decides: refills use up the small prompt set
        ]
        started = time.monotonic()
        with open(trainer_log, "w") as log:
            trainer = subprocess.Popen(
                launch.trainer_command("verl", overrides),
                env=launch.cpu_env(workdir),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            # The faults start once the preflight has had its answer (it would stop the run otherwise).
            wait_for(trainer_log, f"[rlmr preflight] OK      judge at {judge.url}", trainer)
            judge.inject(status_5xx=JUDGE_5XX, hang=JUDGE_HANGS)
            wait_for(trainer_log, "step:1 -", trainer)
            rm.send_signal(signal.SIGKILL)
            rm.wait(timeout=30)
            events["rm_killed_s"] = time.monotonic() - started
            wait_for(trainer_log, "step:2 -", trainer)
            rm, _ = start_rm(assets.reward_model, port, rm_log)  # the same port: the run's URL again
            events["rm_back_s"] = time.monotonic() - started
            returncode = trainer.wait(timeout=900)
            events["run_s"] = time.monotonic() - started
        finally:
            stop_process(trainer)
            stop_process(rm)
        judge_answers = dict(judge.log.answered)
    log_text = trainer_log.read_text(errors="replace")
    assert returncode == 0, log_text[-6000:]
    print(f"faulty run: {events}")
    scalars = {step: metrics for step, metrics in read_scalars(workdir / "tensorboard").items() if step > 0}
    return log_text, scalars, rm_url, judge, judge_answers


def report_of(log: str, step: int) -> str:
    """The reward-health report printed for ``step`` (empty if the step had no invalid reward)."""
    marker = f"[rlmr reward health] step {step}:"
    if marker not in log:
        return ""
    lines = log.split(marker, 1)[1].splitlines()
    return "\n".join([lines[0], *[line for line in lines[1:4] if "failed trajectories" in line]])


def outage_step(log: str, scalars: dict) -> int:
    """The first step after step 1 whose reward-health report names the writing RM (the kill lands after step 1)."""
    for step in sorted(scalars):
        if step > 1 and "writing RM: " in report_of(log, step):
            return step
    raise AssertionError("no step reported the writing RM's outage")


def test_the_run_completes_every_step(faulty_run):
    _, scalars, _, _, _ = faulty_run
    assert sorted(scalars) == list(range(1, STEPS + 1))


def test_judge_failures_are_invalid_and_named(faulty_run):
    log, scalars, _, judge, answers = faulty_run
    assert answers.get("5xx") == JUDGE_5XX  # the scripted faults were served (the hang has no answer)
    report = report_of(log, 1)
    assert "judge: " in report and judge.url in report, report
    assert "HTTP 503" in log and "no answer within 2.0s" in log
    assert scalars[1]["rlmr/reward_health/invalid_fraction"] > 0


def test_rm_outage_makes_the_step_invalid_and_names_the_rm(faulty_run):
    log, scalars, rm_url, _, _ = faulty_run
    step = outage_step(log, scalars)
    report = report_of(log, step)
    assert f"{rm_url}/classify" in report and "Cannot connect to host" in report, report
    down = scalars[step]
    assert down["rlmr/reward_health/invalid_fraction"] > 0.5
    assert down["rlmr/reward_health/scored"] > PROMPTS * SAMPLES  # dropped groups were counted too
    assert down["rlmr/invalid_rewards"] > 0


def test_failed_groups_are_dropped_and_refilled_or_get_no_advantage(faulty_run):
    log, scalars, _, _, _ = faulty_run
    down = scalars[outage_step(log, scalars)]
    assert down["rlmr/filter/dropped_invalid_reward"] >= 1 and down["rlmr/filter/resampled_prompts"] >= 1
    assert down["rlmr/groups_invalid"] >= 1  # past the drop bound the rest are kept, with zero advantage
    assert scalars[1]["rlmr/filter/dropped_invalid_reward"] + scalars[1]["rlmr/groups_invalid"] >= 1


def test_no_placeholder_score_reaches_an_advantage(faulty_run):
    """Wherever an invalid sample reached the estimator, its advantage (and its group's) is exactly 0."""
    log, scalars, _, _, _ = faulty_run
    # not NaN: invalid samples did reach the estimator at the outage
    assert scalars[outage_step(log, scalars)]["rlmr/adv_invalid_abs_max"] == 0
    for step, metrics in scalars.items():
        value = metrics["rlmr/adv_invalid_abs_max"]
        assert value != value or value == 0, step  # NaN (none) or exactly 0


def test_the_rm_coming_back_restores_the_rewards(faulty_run):
    _, scalars, _, _, _ = faulty_run
    last = scalars[STEPS]
    assert last["rlmr/invalid_rewards"] == 0 and last["rlmr/reward_health/invalid_fraction"] == 0
    assert last["rlmr/groups_invalid"] == 0 and last["rlmr/reward_health/failing_steps"] == 0


def test_a_dead_rm_stops_the_run_naming_it(tmp_path, closed_port):
    """Nothing behind the RM URL from the start (preflight off, or it would stop the run at launch)."""
    dead_url = f"http://127.0.0.1:{closed_port}"
    extra = [
        f"reward.rlmr.writing_rm.url={dead_url}",
        "reward.rlmr.preflight.enable=false",
        "reward.rlmr.failure_budget.consecutive_steps=2",
        *FAST_FAILURES,
        "algorithm.rlmr.filter.max_dropped_groups=0",  # no refills: every step is its first 16 trajectories
    ]
    started = time.monotonic()
    result = launch.run(tmp_path, steps=3, entry="verl", extra=extra, timeout_s=900, samples_per_prompt=SAMPLES)
    seconds = time.monotonic() - started
    log = (tmp_path / "trainer.log").read_text(errors="replace")
    assert result.returncode != 0
    assert "RewardsKeepFailingError: rewards keep failing (writing RM)" in log, log[-6000:]
    assert "in each of the last 2 training steps (step 1: 16/16, step 2: 16/16)" in log
    assert f"writing RM: 32 failed trajectories, e.g. 32 x writing_rm: {dead_url}/classify" in log
    assert "step:1 -" in log and "step:2 -" not in log  # stopped at step 2, before logging it
    print(f"dead RM: the run stopped after {seconds:.0f} s")
