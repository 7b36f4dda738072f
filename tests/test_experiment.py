"""``python -m recipe.rlmr.experiment``: the length-hacking contrast harness.

Unit tests: the aggregation on known numbers (first/last-3 means, seed bands, NaN steps), verl's
console step line, the per-arm overrides (only the mode differs), and the CUDA launch composed
against the pinned verl (no GPU here: composition only). The end to end (``cpu_e2e``, ``slow``):
the tiny policy, 2 arms x 2 steps through verl's real trainer, and the CSV, PNG and summary it writes.
"""

from __future__ import annotations

import csv
import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recipe.rlmr.dev.servers.reward import CATEGORY_SCALES
from recipe.rlmr.experiment import aggregate, sweep
from recipe.rlmr.experiment.aggregate import Band, edge_means, run_rows, seed_bands, untrained_violation_rate
from recipe.rlmr.experiment.policies import POLICIES
from recipe.rlmr.experiment.report import read_csv, summary_markdown, write_csv
from recipe.rlmr.experiment.runner import Plan, parse_step_line

NAN = math.nan
VIOLATION, WORDS, ADV = "rlmr/violation_rate", "rlmr/response_words_mean", "rlmr/adv_violators_mean"


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


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
    assert "algorithm.rollout_correction.bypass_mode=true" in a  # no old-log-prob recomputation
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
    # each of the 2 ranks gets half of the 4 x 4 responses, as one micro-batch
    assert "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8" in cuda
    assert "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8" in cuda
    assert "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16" in cpu
    machine = (
        "trainer.device=",
        "trainer.n_gpus_per_node=",
        "ray_kwargs.ray_init.num_cpus=",
        "+ray_kwargs.ray_init.num_gpus=",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=",
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


def test_fixed_weight_arms_carry_their_weight_and_a_folder_name(tmp_path):
    from recipe.rlmr.experiment.runner import arm_mode, arm_slug

    assert arm_mode("rlmr") == ("rlmr", None) and arm_mode("fixed_weight@0.1") == ("fixed_weight", 0.1)
    assert arm_slug("fixed_weight@0.1") == "fixed_weight_w0.1" and arm_slug("gdpo") == "gdpo"
    assert arm_mode("rlmr@0.3") == ("rlmr", 0.3) and arm_slug("rlmr@0.3") == "rlmr_g0.3"
    assert arm_slug("rlmr@1sd") == "rlmr_g1sd"
    for bad, message in [
        ("gdpo@2", "only fixed_weight@W and rlmr@G"),
        ("rlmr@x", "expected a number"),
        ("rlmr@0", "must be positive"),
        ("fixed_weight@1sd", "expected a number"),
    ]:
        with pytest.raises(ValueError, match=message):
            arm_mode(bad)
    plan = Plan(tmp_path, POLICIES["tiny"], ["fixed_weight@10", "rlmr"], [0], 2, dump_rollouts=True)
    weighted, plain = plan.arm_overrides("fixed_weight@10", 0), plan.arm_overrides("rlmr", 0)
    assert "algorithm.rlmr.mode=fixed_weight" in weighted and "algorithm.rlmr.fixed_weight=10" in weighted
    assert not any(o.startswith(("algorithm.rlmr.fixed_weight=", "algorithm.rlmr.gamma")) for o in plain)
    absolute, relative = plan.arm_overrides("rlmr@0.3", 0), plan.arm_overrides("rlmr@2sd", 0)
    assert "algorithm.rlmr.gamma=0.3" in absolute and "algorithm.rlmr.gamma_mode=absolute" in absolute
    assert "algorithm.rlmr.gamma=2" in relative and "algorithm.rlmr.gamma_mode=relative" in relative
    assert "algorithm.rlmr.mode=rlmr" in relative and plan.run_dir("rlmr@2sd", 0).name == "rlmr_g2sd_seed0"
    assert f"trainer.rollout_data_dir={tmp_path / 'runs' / 'fixed_weight_w10_seed0' / 'rollouts'}" in weighted
    assert plan.run_dir("fixed_weight@10", 0).name == "fixed_weight_w10_seed0"


def test_weight_sweep_preset_defaults_and_explicit_choices():
    from recipe.rlmr.experiment.cli import parse_args

    preset = parse_args(["--workdir", "x", "--preset", "weight_sweep"])
    assert preset.arms == sweep.SWEEP_ARMS and preset.steps == 16 and preset.seeds == [0, 1]
    assert {"writing_only", "rlmr", "verifier_only", "gdpo"} <= set(preset.arms)
    assert [a for a in preset.arms if a.startswith("fixed_weight@")] == [
        "fixed_weight@0.1",
        "fixed_weight@1",
        "fixed_weight@10",
    ]
    mine = parse_args(["--workdir", "x", "--preset", "weight_sweep", "--arms", "gdpo,fixed_weight@3", "--steps", "2"])
    assert mine.arms == ["gdpo", "fixed_weight@3"] and mine.steps == 2
    plain = parse_args(["--workdir", "x"])
    assert plain.arms == ["writing_only", "fixed_weight", "rlmr"] and plain.steps == 20


def test_category_scaled_rm_scales_the_length_score_by_the_prompts_category():
    from recipe.rlmr.dev.servers.reward import CategoryScaledRM, LengthBiasedRM, prompt_category

    marked = ["(Category: note) x" * 5, "(Category: story) y" * 5, "(Category: saga) z" * 5]
    texts = [*marked, "no marker", "(Category: odd)"]
    scores = [row["probs"][0] for row in CategoryScaledRM.answer({"input": texts})["data"]]
    plain = [row["probs"][0] for row in LengthBiasedRM.answer({"input": texts})["data"]]
    assert scores == pytest.approx([0.2 * plain[0], plain[1], 5 * plain[2], plain[3], plain[4]])
    assert [prompt_category(t) for t in texts] == ["note", "story", "saga", None, "odd"]
    assert CATEGORY_SCALES == {"note": 0.2, "story": 1.0, "saga": 5.0}


def test_category_table_pools_the_last_steps_of_every_seed_per_category():
    def record(category, ok, writing, words):
        return {"input": f"user: (Category: {category}) Write.", "constraints_ok": ok, "writing_score": writing,
                "response_words": words}  # fmt: skip

    early = [record("note", 0, 99.0, 99)]  # step 1 of 4: outside the last 3
    late = [record("note", 1, 0.2, 10), record("note", 0, 0.4, 20), record("saga", 1, 5.0, 12)]
    records = sweep.final_records("a", 0, {1: early, 2: late, 3: [], 4: [record("story", 1, 1.0, 14)]})
    records += sweep.final_records("a", 1, {1: [record("saga", 1, 3.0, 8)]})
    table = {(r["arm"], r["category"]): r for r in sweep.category_table(records)}
    assert [c for a, c in table] == sweep.CATEGORIES
    note, saga, every = table[("a", "note")], table[("a", "saga")], table[("a", "all")]
    assert note["responses"] == 2 and note["violation_rate"] == 0.5
    assert note["compliant_writing_score"] == pytest.approx(0.2) and note["compliant_words"] == 10
    assert saga["compliant_writing_score"] == pytest.approx(4.0) and saga["compliant_words"] == 10
    assert every["responses"] == 5 and every["violation_rate"] == pytest.approx(0.2)
    markdown = sweep.sweep_markdown(sweep.category_table(records), [], "# head")
    assert "| a | 0.20 · 2.30 · 11.0 | 0.50 · 0.20 · 10.0 |" in markdown


def test_a_dump_without_reward_info_gets_the_managers_verdict_and_word_count(tmp_path):
    """verl's V1 trainer dumps input, output, gts and score only: the verdict is recomputed from gts."""
    spec = {"version": 1, "constraints": [{"type": "rule", "instruction_id": "length_constraints:number_words",
            "kwargs": {"num_words": 4, "relation": "less than"}}]}  # fmt: skip
    gts = json.dumps(spec)
    assert sweep.verdict_and_words({"output": "one two three", "gts": gts}) == (1, 3)
    assert sweep.verdict_and_words({"output": "one two three four five", "gts": gts}) == (0, 5)
    assert sweep.verdict_and_words({"constraints_ok": 0, "response_words": 2, "output": "a", "gts": gts}) == (0, 2)
    dumped = {"input": "(Category: saga) Go.", "output": "one\u2028two\x85", "gts": gts, "score": 4.5}
    (tmp_path / "rollouts").mkdir()  # a line separator JSON leaves unescaped must not cut the record
    (tmp_path / "rollouts" / "1.jsonl").write_text(json.dumps(dumped, ensure_ascii=False) + "\n", encoding="utf-8")
    (record,) = sweep.final_records("a", 0, sweep.read_rollouts(tmp_path))
    assert (record["ok"], record["writing"], record["words"], record["category"]) == (1, 4.5, 2.0, "saga")


E2E_ARMS, E2E_SEEDS, E2E_STEPS = ["writing_only", "rlmr"], [0], 2


@pytest.mark.cpu_e2e
@pytest.mark.slow
def test_harness_end_to_end_with_the_tiny_policy(tmp_path):
    """2 arms x 2 steps of real training: one CSV row per arm and step, the composed configs differ in
    the mode only, the summary's figures are the CSV's, the PNG is a real image, progress lines per step;
    then ``--resume`` takes rlmr one step further from its step-2 checkpoint (``--save-freq 1``)."""
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
            "--save-freq",
            "1",
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

    # --resume: one more step for rlmr, from the checkpoint of step 2 (verl's own resume), steps 1-2 kept
    command = [sys.executable, "-m", "recipe.rlmr.experiment", "--workdir", str(workdir), "--arms", "rlmr"]
    command += ["--seeds", "0", "--steps", str(E2E_STEPS + 1), "--samples", "4", "--save-freq", "1", "--resume"]
    resumed = subprocess.run([*command, "--timeout-s", "600"], capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-4000:]
    assert f"resuming from the checkpoint of step {E2E_STEPS}" in resumed.stdout
    assert f"step {E2E_STEPS + 1}/{E2E_STEPS + 1}:" in resumed.stdout and "step 1/" not in resumed.stdout
    run_dir = workdir / "runs" / "rlmr_seed0"
    checkpoint = run_dir / "checkpoints" / f"global_step_{E2E_STEPS}"
    assert f"Resuming from {checkpoint}, setting global step to {E2E_STEPS}" in (run_dir / "trainer.log").read_text()
    assert (run_dir / "trainer.log.1").exists()  # the first segment's log, kept
    after = read_csv(workdir / "metrics.csv")
    assert [r["step"] for r in after] == list(range(1, E2E_STEPS + 2))
    before = [r for r in rows if r["arm"] == "rlmr"]
    assert after[:E2E_STEPS] == before  # what the first segment logged, unchanged


SWEEP_ARMS_E2E = ["fixed_weight@10", "rlmr"]


@pytest.mark.cpu_e2e
@pytest.mark.slow
def test_weight_sweep_preset_end_to_end_with_the_tiny_policy(tmp_path):
    """``--preset weight_sweep``, 2 arms x 2 steps x 1 seed: the category-scaled RM and the weight
    reach the runs, step 1 is the same rollout in both arms (seeded sampling pairs them), the
    per-category table, its CSV and the trade-off plot are written, and ``--report-only`` rebuilds
    the same table from the runs."""
    workdir = tmp_path / "sweep"
    command = [sys.executable, "-m", "recipe.rlmr.experiment", "--workdir", str(workdir), "--preset", "weight_sweep"]
    command += ["--arms", ",".join(SWEEP_ARMS_E2E), "--seeds", "0", "--steps", "2", "--samples", "4"]
    result = subprocess.run([*command, "--timeout-s", "600"], capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    rows = read_csv(workdir / "metrics.csv")
    step_one = {r["arm"]: r for r in rows if r["step"] == 1}
    assert set(step_one) == set(SWEEP_ARMS_E2E)
    for tag in (VIOLATION, WORDS):  # the untrained policy's rollout, identical per seed
        assert step_one["fixed_weight@10"][tag] == step_one["rlmr"][tag]
    # the same scores, but verl averages them in float32 in an order that varies (a CI run differed by 1 ulp)
    score = "critic/score/mean"
    assert step_one["fixed_weight@10"][score] == pytest.approx(step_one["rlmr"][score], rel=1e-6)
    composed = workdir / "runs" / "fixed_weight_w10_seed0" / "hydra" / ".hydra" / "config.yaml"
    config = yaml.safe_load(composed.read_text())
    assert config["algorithm"]["rlmr"]["mode"] == "fixed_weight" and config["algorithm"]["rlmr"]["fixed_weight"] == 10

    table = list(csv_rows(workdir / "sweep.csv"))
    assert [(r["arm"], r["category"]) for r in table] == [(a, c) for a in SWEEP_ARMS_E2E for c in sweep.CATEGORIES]
    for arm in SWEEP_ARMS_E2E:
        per = {r["category"]: r for r in table if r["arm"] == arm}
        assert int(per["all"]["responses"]) == sum(int(per[c]["responses"]) for c in CATEGORY_SCALES)
        assert int(per["all"]["responses"]) == 2 * 4 * 4  # 2 steps (the last 3 of 2), 4 prompts x 4 samples
    sweep_md = (workdir / "sweep.md").read_text()
    assert "saga (5x)" in sweep_md and sweep_md in result.stdout
    assert (workdir / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    (workdir / "sweep.md").unlink()
    again = subprocess.run([*command, "--report-only"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (workdir / "sweep.md").read_text() == sweep_md


def test_cluster_launch_joins_without_resource_counts_and_carries_string_env_vars(tmp_path):
    """``ray_address``: Ray refuses resource counts from a joining driver, and takes only string env vars
    (Hydra reads an unquoted false or 1 as a bool or an int). Composed and validated, not run (the slow
    run: tests/test_trainer_modes_e2e.py)."""
    from omegaconf import OmegaConf

    from recipe.rlmr import dry_run
    from recipe.rlmr.dev import launch

    assets = launch.TinyAssets(tmp_path / "policy", tmp_path / "reward_model", tmp_path / "data")
    env = launch.trainer_env(tmp_path)
    overrides = launch.cpu_overrides(assets, "http://127.0.0.1:1", tmp_path, ray_address="127.0.0.1:6380", nnodes=2)
    config = dry_run.check(overrides + launch.runtime_env_overrides(env))
    ray_init = OmegaConf.to_container(config.ray_kwargs.ray_init)
    assert ray_init["address"] == "127.0.0.1:6380" and ray_init["num_cpus"] is None and "num_gpus" not in ray_init
    assert config.trainer.nnodes == 2 and config.trainer.n_gpus_per_node == 1
    assert config.actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu == 8  # 16 responses over 2 ranks
    carried = ray_init["runtime_env"]["env_vars"]
    assert carried == {
        "VERL_PLATFORM": "cpu",
        "TENSORBOARD_DIR": str(tmp_path / "tensorboard"),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": env["OMP_NUM_THREADS"],
        "VERL_USE_EXTERNAL_MODULES": "recipe.rlmr.plugin",
    }
    assert all(isinstance(value, str) for value in carried.values())
    with pytest.raises(ValueError, match="ray_address"):
        launch.device_overrides("cpu", nnodes=2)


def _trainer_standing_in_for_verl(calls: list[dict]):
    """A ``launch.run`` that does what the CLI relies on verl for, from the overrides it gets: log steps
    (tensorboard and console), write verl's checkpoint record every ``save_freq`` steps, and with
    ``resume_mode=auto`` start after the recorded step. Each step's word count is 10 * step + segment,
    so a step's value tells which segment logged it."""
    from torch.utils.tensorboard import SummaryWriter

    def run(workdir, steps, extra, log_path, **_):
        options = dict(item.split("=", 1) for item in extra)
        record = Path(workdir) / "checkpoints" / "latest_checkpointed_iteration.txt"
        start = int(record.read_text()) if options.get("trainer.resume_mode") == "auto" and record.exists() else 0
        calls.append({"start": start, "steps": steps, "log_existed": Path(log_path).exists()})
        save_freq = int(options.get("trainer.save_freq", "-1"))
        writer = SummaryWriter(str(Path(workdir) / "tensorboard"))
        with open(log_path, "w") as log:
            for step in range(start + 1, steps + 1):
                words = 10.0 * step + len(calls)
                writer.add_scalar(WORDS, words, step)
                log.write(f"step:{step} - {WORDS}:{words}\n")
                if save_freq > 0 and step % save_freq == 0:
                    record.parent.mkdir(parents=True, exist_ok=True)
                    record.write_text(str(step))
        writer.close()
        return subprocess.CompletedProcess([], 0)

    return run


def test_resume_continues_from_the_checkpoint_and_keeps_what_was_logged(tmp_path, monkeypatch, capsys):
    """``--save-freq``/``--resume`` orchestration (verl's resume itself: the slow end to end): a run cut at
    step 2 continues from its checkpoint to step 3, the steps logged before stay in the CSV, the earlier
    log is kept, wall time adds up; a run that has all its steps is not trained again; a run without a
    checkpoint starts over."""
    from recipe.rlmr.dev import launch
    from recipe.rlmr.experiment import cli

    calls: list[dict] = []
    monkeypatch.setattr(launch, "run", _trainer_standing_in_for_verl(calls))
    common = ["--workdir", str(tmp_path), "--arms", "rlmr", "--seeds", "0", "--save-freq", "1"]
    run_dir = tmp_path / "runs" / "rlmr_seed0"

    assert cli.main([*common, "--steps", "2"]) == 0
    assert calls == [{"start": 0, "steps": 2, "log_existed": False}]
    first_wall = float((run_dir / "wall_s.txt").read_text())

    assert cli.main([*common, "--steps", "3", "--resume"]) == 0
    assert calls[-1] == {"start": 2, "steps": 3, "log_existed": False}  # the old log moved aside first
    out = capsys.readouterr().out
    assert "resuming from the checkpoint of step 2" in out and "step 3/3" in out and "step 1/3" not in out
    rows = read_csv(tmp_path / "metrics.csv")
    assert [(r["step"], r[WORDS]) for r in rows] == [(1, 11.0), (2, 21.0), (3, 32.0)]
    assert (run_dir / "trainer.log.1").read_text().startswith("step:1 ")
    assert float((run_dir / "wall_s.txt").read_text()) >= first_wall

    assert cli.main([*common, "--steps", "3", "--resume"]) == 0
    assert len(calls) == 2  # nothing left to train
    assert "already has its 3 steps" in capsys.readouterr().out
    assert [r["step"] for r in read_csv(tmp_path / "metrics.csv")] == [1, 2, 3]

    (run_dir / "checkpoints" / "latest_checkpointed_iteration.txt").unlink()
    assert cli.main([*common, "--steps", "4", "--resume"]) == 0
    assert calls[-1]["start"] == 0 and "no checkpoint" in capsys.readouterr().out
    assert [(r["step"], r[WORDS]) for r in read_csv(tmp_path / "metrics.csv")] == [
        (s, 10.0 * s + 3) for s in (1, 2, 3, 4)
    ]


def test_resume_options_are_checked():
    from recipe.rlmr.experiment import cli

    with pytest.raises(SystemExit):
        cli.parse_args(["--workdir", "x", "--resume", "--report-only"])
    with pytest.raises(SystemExit):
        cli.parse_args(["--workdir", "x", "--save-freq", "-1"])
    plan = Plan(Path("w"), POLICIES["tiny"], ["rlmr"], [0], 2, save_freq=5, resume=True)
    overrides = plan.arm_overrides("rlmr", 0)
    assert {"trainer.save_freq=5", "trainer.max_actor_ckpt_to_keep=1", "trainer.resume_mode=auto"} <= set(overrides)
    assert not any(
        o.startswith(("trainer.save_freq", "trainer.resume_mode"))
        for o in Plan(Path("w"), POLICIES["tiny"], ["rlmr"], [0], 2).arm_overrides("rlmr", 0)
    )


def test_a_garbled_checkpoint_record_is_a_clear_error(tmp_path):
    from recipe.rlmr.experiment.runner import latest_checkpoint

    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("step five\n")
    with pytest.raises(ValueError, match="latest_checkpointed_iteration.txt: expected a step number"):
        latest_checkpoint(tmp_path)


def test_resume_keeps_the_resumed_value_of_a_step_logged_twice(tmp_path, monkeypatch):
    """A run killed after logging step 3 but before checkpointing it resumes from step 2 and logs step 3
    again; the CSV keeps the resumed run's value (``read_scalars``: the newer event file wins), not the
    killed one's (docs/experiment.md, --resume)."""
    from torch.utils.tensorboard import SummaryWriter

    from recipe.rlmr.dev import launch
    from recipe.rlmr.experiment import cli

    segments: list[int] = []

    def run(workdir, steps, extra, log_path, **_):
        options = dict(item.split("=", 1) for item in extra)
        record = Path(workdir) / "checkpoints" / "latest_checkpointed_iteration.txt"
        start = int(record.read_text()) if options.get("trainer.resume_mode") == "auto" and record.exists() else 0
        segments.append(start)
        writer = SummaryWriter(str(Path(workdir) / "tensorboard"))
        with open(log_path, "w") as log:
            for step in range(start + 1, steps + 1):
                writer.add_scalar(WORDS, 10.0 * step + len(segments), step)
                log.write(f"step:{step} - {WORDS}:{10.0 * step + len(segments)}\n")
                if step == 2:
                    record.parent.mkdir(parents=True, exist_ok=True)
                    record.write_text("2")
                if step == 3 and len(segments) == 1:
                    writer.close()
                    return subprocess.CompletedProcess([], 1)  # killed after logging step 3, before its checkpoint
        writer.close()
        return subprocess.CompletedProcess([], 0)

    monkeypatch.setattr(launch, "run", run)
    common = ["--workdir", str(tmp_path), "--arms", "rlmr", "--seeds", "0", "--save-freq", "2", "--steps", "4"]
    cli.main(common)
    assert cli.main([*common, "--resume"]) == 0
    assert segments == [0, 2]
    assert [(r["step"], r[WORDS]) for r in read_csv(tmp_path / "metrics.csv")] == [
        (1, 11.0),
        (2, 21.0),
        (3, 32.0),  # the resumed segment's, not the killed one's 31.0
        (4, 42.0),
    ]
