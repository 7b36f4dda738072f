"""``python -m recipe.rlmr.experiment``: the length-hacking contrast harness.

Unit tests: the aggregation on known numbers (first/last-3 means, seed bands, NaN steps), verl's
console step line, the per-arm overrides (only the mode differs), and the CUDA launch composed
against the pinned verl (no GPU here: composition only). The end to end (``cpu_e2e``, ``slow``):
the tiny policy, 2 arms x 2 steps through verl's real trainer, and the CSV, PNG and summary it writes.
"""

from __future__ import annotations

import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recipe.rlmr.experiment import aggregate
from recipe.rlmr.experiment.aggregate import Band, edge_means, run_rows, seed_bands, untrained_violation_rate
from recipe.rlmr.experiment.policies import POLICIES
from recipe.rlmr.experiment.report import read_csv, summary_markdown, write_csv
from recipe.rlmr.experiment.runner import Plan, parse_step_line

NAN = math.nan
VIOLATION, WORDS, ADV = "rlmr/violation_rate", "rlmr/response_words_mean", "rlmr/adv_violators_mean"


def _rows(arm: str, seed: int, per_step: dict[int, dict[str, float]]) -> list[dict]:
    return run_rows(arm, seed, per_step)


def test_run_rows_keep_training_steps_and_mark_missing_values_nan():
    rows = _rows("rlmr", 3, {0: {VIOLATION: 0.9}, 2: {VIOLATION: 0.25}, 1: {WORDS: 12.0}})
    assert [row["step"] for row in rows] == [1, 2]  # step 0 (validation before training) is not a training step
    assert rows[0]["arm"] == "rlmr" and rows[0]["seed"] == 3
    assert rows[0][WORDS] == 12.0 and math.isnan(rows[0][VIOLATION])
    assert rows[1][VIOLATION] == 0.25 and math.isnan(rows[1][WORDS])


def test_edge_means_average_the_first_and_last_three_steps_over_seeds():
    rows = _rows("a", 0, {s: {WORDS: float(s)} for s in range(1, 8)})  # 1..7
    rows += _rows("a", 1, {s: {WORDS: float(10 * s)} for s in range(1, 8)})  # 10..70
    rows += _rows("b", 0, {s: {WORDS: 100.0} for s in range(1, 8)})
    first, last = edge_means(rows, "a", WORDS)
    assert first == pytest.approx((1 + 2 + 3 + 10 + 20 + 30) / 6)
    assert last == pytest.approx((5 + 6 + 7 + 50 + 60 + 70) / 6)
    assert edge_means(rows, "b", WORDS) == (100.0, 100.0)  # arms do not mix


def test_edge_means_skip_nan_steps_and_overlap_on_short_runs():
    rows = _rows("a", 0, {1: {ADV: -1.0}, 2: {}, 3: {ADV: -3.0}, 4: {}, 5: {}, 6: {}})
    first, last = edge_means(rows, "a", ADV)
    assert first == pytest.approx(-2.0)  # steps 1..3, step 2 has no value
    assert math.isnan(last)  # steps 4..6 have none
    short = _rows("a", 0, {1: {WORDS: 4.0}, 2: {WORDS: 8.0}})
    assert edge_means(short, "a", WORDS) == (6.0, 6.0)


def test_seed_bands_give_mean_min_max_per_step():
    rows = _rows("a", 0, {1: {VIOLATION: 0.2}, 2: {VIOLATION: 0.4}, 3: {}})
    rows += _rows("a", 1, {1: {VIOLATION: 0.6}, 2: {VIOLATION: 0.4}, 3: {}})
    rows += _rows("a", 2, {1: {VIOLATION: 0.1}, 2: {}, 3: {}})
    bands = seed_bands(rows, "a", VIOLATION)
    assert list(bands) == [1, 2]  # no seed has step 3
    assert bands[1] == Band(pytest.approx(0.3), 0.1, 0.6)
    assert bands[2] == Band(0.4, 0.4, 0.4)


def test_untrained_violation_rate_is_step_ones_over_all_runs():
    rows = _rows("a", 0, {1: {VIOLATION: 0.5}, 2: {VIOLATION: 0.9}})
    rows += _rows("b", 0, {1: {VIOLATION: 0.25}, 2: {VIOLATION: 0.0}})
    assert untrained_violation_rate(rows) == pytest.approx(0.375)


def test_csv_round_trip_and_summary_cells(tmp_path):
    rows = _rows(
        "writing_only", 0, {s: {WORDS: 10.0 + s, "timing_s/step": 5.0 if s == 1 else 2.0} for s in range(1, 7)}
    )
    rows += _rows("rlmr", 0, {s: {WORDS: 10.0 - s, ADV: -1.0} for s in range(1, 7)})
    write_csv(rows, tmp_path / "m.csv")
    back = read_csv(tmp_path / "m.csv")
    assert len(back) == 12
    for mine, theirs in zip(rows, back, strict=True):
        for key, value in mine.items():
            same_nan = isinstance(value, float) and math.isnan(value) and math.isnan(theirs[key])
            assert same_nan or value == theirs[key], key
    text = summary_markdown(back, {"writing_only": [60.0], "rlmr": [50.0]}, "# title")
    words_line = next(line for line in text.splitlines() if WORDS in line)
    assert "| 12.0 → 15.0 | 8.0 → 5.0 |" in words_line  # writing_only column first: arms in order of appearance
    adv_line = next(line for line in text.splitlines() if ADV in line)
    assert "| - → - | -1.000 → -1.000 |" in adv_line
    assert "| writing_only | 1 (0) | 6 | 60 | 5.0 | 2.0 |" in text


def test_parse_verl_console_step_line():
    line = "(TaskRunnerV1 pid=7) step:3 - rlmr/violation_rate:0.25 - actor/pg_loss:-0.1 - note:abc - x:nan"
    step, values = parse_step_line(line)
    assert step == 3
    assert values["rlmr/violation_rate"] == 0.25 and values["actor/pg_loss"] == -0.1
    assert math.isnan(values["x"]) and "note" not in values
    assert parse_step_line("Training Progress: 3/4") is None


def test_log_follower_reports_each_step_line_once_also_when_written_in_pieces(tmp_path):
    import time

    from recipe.rlmr.experiment.runner import LogFollower

    log, seen = tmp_path / "trainer.log", []
    follower = LogFollower(log, lambda step, values: seen.append((step, values)), poll_s=0.02)
    follower.start()  # before the file exists, as when the trainer has not started yet
    log.write_text("starting\n(TaskRunnerV1 pid=1) step:1 - a:1.0\n")
    with open(log, "a") as handle:
        handle.write("step:2 - a:2")  # half a line: not reported until it ends
        handle.flush()
        time.sleep(0.2)
        handle.write(".5\n")
    follower.stop()  # reads what is left before it ends
    assert seen == [(1, {"a": 1.0}), (2, {"a": 2.5})]
    assert not follower.is_alive()


def test_arms_differ_only_in_mode(tmp_path):
    plan = Plan(tmp_path, POLICIES["tiny"], ["writing_only", "rlmr"], [0], 2, overrides=["trainer.foo=1"])
    a, b = plan.arm_overrides("writing_only", 0), plan.arm_overrides("rlmr", 0)
    run_specific = ("algorithm.rlmr.mode=", "trainer.experiment_name=", "hydra.run.dir=")
    assert [o for o in a if not o.startswith(run_specific)] == [o for o in b if not o.startswith(run_specific)]
    assert "algorithm.rlmr.mode=writing_only" in a and "algorithm.rlmr.mode=rlmr" in b
    assert "algorithm.filter_groups.enable=false" in a  # the filter reads verdicts: off in every arm
    assert a[-1] == "trainer.foo=1"  # the user's overrides come last and win


def test_cuda_launch_composes_against_verl_without_the_cpu_backend(tmp_path):
    """``--device cuda``: verl's own CUDA platform, the real GPU count, no fake GPU slot, no VERL_PLATFORM.
    No GPU is lent here, so the overrides are composed and validated (recipe.rlmr.dry_run), not run."""
    from recipe.rlmr import dry_run
    from recipe.rlmr.dev import launch

    assets = launch.TinyAssets(tmp_path / "policy", tmp_path / "reward_model", tmp_path / "data")
    cuda = launch.cpu_overrides(assets, "http://127.0.0.1:1", tmp_path, device="cuda", num_gpus=2)
    cpu = launch.cpu_overrides(assets, "http://127.0.0.1:1", tmp_path)
    assert "trainer.device=cuda" in cuda and "trainer.n_gpus_per_node=2" in cuda
    assert not any(o.startswith("+ray_kwargs.ray_init.num_gpus") for o in cuda)  # Ray counts the real GPUs
    assert "trainer.device=cpu" in cpu and "+ray_kwargs.ray_init.num_gpus=1" in cpu
    # the rest is the same launch
    machine = (
        "trainer.device=",
        "trainer.n_gpus_per_node=",
        "ray_kwargs.ray_init.num_cpus=",
        "+ray_kwargs.ray_init.num_gpus=",
    )
    assert [o for o in cuda if not o.startswith(machine)] == [o for o in cpu if not o.startswith(machine)]
    config = dry_run.check(cuda)
    assert config.trainer.device == "cuda" and config.trainer.n_gpus_per_node == 2
    assert config.actor_rollout_ref.rollout.name == "hf"
    assert "VERL_PLATFORM" not in launch.trainer_env(tmp_path, "cuda")
    assert launch.trainer_env(tmp_path, "cpu")["VERL_PLATFORM"] == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        launch.device_overrides("cuda", num_gpus=0)


def test_unknown_arm_is_refused_naming_the_modes():
    result = subprocess.run(
        [sys.executable, "-m", "recipe.rlmr.experiment", "--workdir", "x", "--arms", "rlmr,lengthy"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "lengthy" in result.stderr and "writing_only" in result.stderr


E2E_ARMS, E2E_SEEDS, E2E_STEPS = ["writing_only", "rlmr"], [0], 2


@pytest.mark.cpu_e2e
@pytest.mark.slow
def test_harness_end_to_end_with_the_tiny_policy(tmp_path):
    """2 arms x 2 steps of real training: one CSV row per arm and step, the composed configs differ in
    the mode only, the summary's figures are the CSV's, the PNG is a real image, progress lines per step."""
    workdir = tmp_path / "exp"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "recipe.rlmr.experiment",
            "--workdir",
            str(workdir),
            "--arms",
            ",".join(E2E_ARMS),
            "--seeds",
            ",".join(map(str, E2E_SEEDS)),
            "--steps",
            str(E2E_STEPS),
            "--samples",
            "4",
            "--timeout-s",
            "600",
        ],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout

    rows = read_csv(workdir / "metrics.csv")
    assert [(r["arm"], r["seed"], r["step"]) for r in rows] == [
        (arm, seed, step) for seed in E2E_SEEDS for arm in E2E_ARMS for step in range(1, E2E_STEPS + 1)
    ]
    for row in rows:
        assert 0.0 <= row[VIOLATION] <= 1.0
        assert row[WORDS] > 0 and row["critic/score/mean"] > 0  # the length RM scores characters
        assert row["timing_s/step"] > 0

    # the composed configs: the same run except the mode
    configs = {
        arm: yaml.safe_load((workdir / "runs" / f"{arm}_seed0" / "hydra" / ".hydra" / "config.yaml").read_text())
        for arm in E2E_ARMS
    }
    assert {arm: c["algorithm"]["rlmr"]["mode"] for arm, c in configs.items()} == {a: a for a in E2E_ARMS}
    for config in configs.values():
        config["algorithm"]["rlmr"]["mode"] = None
        config["trainer"]["experiment_name"] = None
        config["trainer"]["default_local_dir"] = None
        config["reward"]["rlmr"]["writing_rm"]["url"] = None  # each run serves its own RM
    assert configs["writing_only"] == configs["rlmr"]
    assert configs["rlmr"]["algorithm"]["filter_groups"]["enable"] is False

    # summary.md: its figures are the CSV's
    summary = (workdir / "summary.md").read_text()
    for arm in E2E_ARMS:
        first, last = edge_means(rows, arm, WORDS)
        assert f"{first:.1f} → {last:.1f}" in summary
    assert f"violation rate {untrained_violation_rate(rows):.3f}" in summary
    assert summary in out  # printed at the end too

    png = (workdir / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 1000 and height > 200

    # a progress line per step and run, and the untrained policy's violation rate
    for arm in E2E_ARMS:
        for step in range(1, E2E_STEPS + 1):
            assert f"[{arm} seed 0] step {step}/{E2E_STEPS}: violation rate" in out
        assert f"[{arm} seed 0] done in" in out
    assert "untrained policy broke the limit in" in out
    assert set(aggregate.arms_in(rows)) == set(E2E_ARMS)
    assert Path(workdir / "runs" / "rlmr_seed0" / "trainer.log").exists()
