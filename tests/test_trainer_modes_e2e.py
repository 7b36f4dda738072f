"""RLMR under verl's asynchronous V1 mode ``colocate_async``, end to end on CPU, then resumed.

One run of 4 steps (checkpoints at 2 and 4) on the demo's sample prompts, whose constraints the
random tiny policy mostly breaks, so the group filter drops and refills at every step; then the same
command with ``trainer.resume_mode=auto`` and 5 steps. Checks what the sync run checks
(tests/test_cpu_e2e.py): verdicts reach the estimator, violators negative, the filter drops and
refills, no invalid reward moves an advantage, and the checkpoint resumes. About 4.5 minutes.

``separate_async`` is refused on the CPU backend at launch (tests/test_config.py checks the message):
verl 0.9.1 pushes weights to its standalone rollout pool only through NCCL-class checkpoint engines.
"""

import math

import pytest

from recipe.rlmr.dev import launch
from recipe.rlmr.dev.demo import read_scalars

pytestmark = [pytest.mark.cpu_e2e, pytest.mark.slow]

MODE = "colocate_async"


@pytest.fixture(scope="module")
def async_runs(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("colocate-async")
    common = [f"trainer.v1.trainer_mode={MODE}", "trainer.save_freq=2"]
    first = launch.run(workdir, steps=4, entry="verl", timeout_s=600, samples_per_prompt=8, data="sample", extra=common)
    first_log = (workdir / "trainer.log").read_text(errors="replace")
    assert first.returncode == 0, first_log[-6000:]
    before = read_scalars(workdir / "tensorboard")
    second = launch.run(
        workdir,
        steps=5,
        entry="verl",
        timeout_s=600,
        samples_per_prompt=8,
        data="sample",
        extra=[*common, "trainer.resume_mode=auto"],
    )
    second_log = (workdir / "trainer.log").read_text(errors="replace")
    assert second.returncode == 0, second_log[-6000:]
    return workdir, first_log, second_log, before, read_scalars(workdir / "tensorboard")


def test_the_run_was_asynchronous_and_logged_every_step(async_runs):
    _, first_log, _, before, _ = async_runs
    assert f"'trainer_mode': '{MODE}'" in first_log  # verl's config dump; rlmr/* metrics come from RLMR's hook
    assert [step for step in sorted(before) if step > 0] == [1, 2, 3, 4]


def test_verdicts_reach_the_estimator_and_violators_end_negative(async_runs):
    _, _, _, before, _ = async_runs
    mixed_steps = 0
    for step in range(1, 5):
        metrics = before[step]
        assert 0.0 <= metrics["rlmr/violation_rate"] <= 1.0, step
        if metrics["rlmr/groups_mixed"] >= 1:
            mixed_steps += 1
            assert metrics["rlmr/adv_violators_max"] < 0, step
            assert metrics["rlmr/delta_mean"] >= 0, step
    assert mixed_steps >= 2


def test_the_filter_drops_and_refills_and_no_invalid_reward_moves_an_advantage(async_runs):
    _, _, _, before, _ = async_runs
    for step in range(1, 5):
        metrics = before[step]
        assert metrics["rlmr/filter/resampled_prompts"] >= metrics["rlmr/filter/dropped_groups"], step
        assert metrics["rlmr/invalid_rewards"] == 0 and metrics["rlmr/filter/dropped_invalid_reward"] == 0, step
        assert math.isnan(metrics["rlmr/adv_invalid_abs_max"]) or metrics["rlmr/adv_invalid_abs_max"] == 0
        assert metrics["rlmr/adv_nonfinite"] == 0, step
    assert sum(before[step]["rlmr/filter/dropped_all_violate"] for step in range(1, 5)) > 0


def test_the_checkpoint_resumes_in_the_async_mode(async_runs):
    workdir, _, second_log, _, after = async_runs
    assert f"Resuming from {workdir / 'checkpoints' / 'global_step_4'}, setting global step to 4" in second_log
    assert 5 in after and "rlmr/violation_rate" in after[5]
    assert (workdir / "checkpoints" / "global_step_4" / "actor").is_dir()
