"""benchmarks/reward_overhead.py's pieces, without a training run: arguments, the two arms' overrides,
the free reward's key set, the judged data set, and the report computed from known numbers."""

import asyncio
from pathlib import Path

import pandas as pd
import pytest

from rewards.reward_info import CONSTRAINTS_OK, KEYS, REWARD_VALID
from rewards.spec import ConstraintSpec, JudgeConstraint, RuleConstraint

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "reward_overhead.py"


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script(SCRIPT)


def test_arguments(bench):
    args = bench.parse_args([])
    assert (args.rounds, args.steps, args.discard, args.judge_ms, args.poll_s) == (2, 6, 1, 150.0, None)
    with pytest.raises(SystemExit):
        bench.parse_args(["--steps", "2", "--discard", "2"])  # nothing would be left to measure


def test_the_arms_differ_only_in_the_reward(bench):
    rlmr = bench.arm_overrides("rlmr", "http://127.0.0.1:9")
    assert "reward.rlmr.judge.url=http://127.0.0.1:9" in rlmr and "reward.rlmr.short_circuit=false" in rlmr
    free = bench.arm_overrides("free", "http://127.0.0.1:9")
    assert "reward.reward_manager.name=naive" in free
    assert f"reward.custom_reward_function.path={SCRIPT}" in free
    assert "reward.custom_reward_function.name=free_reward" in free
    assert all(o.startswith("reward.") for o in rlmr + free)
    with pytest.raises(ValueError, match="arm must be one of"):
        bench.arm_overrides("judge", "")


def test_the_free_reward_carries_the_managers_keys(bench):
    result = asyncio.run(bench.free_reward("src", "a response", "{}", {}))
    assert set(result) == {"score", *KEYS} and result["score"] == 0.0
    assert (result[CONSTRAINTS_OK], result[REWARD_VALID]) == (1, 1)


def test_every_prompt_gets_a_judged_constraint(bench, tmp_path):
    rule = RuleConstraint(instruction_id="punctuation:no_comma", kwargs={})
    for name in ("train.parquet", "val.parquet"):
        specs = [ConstraintSpec(constraints=[rule]), ConstraintSpec(constraints=[])]
        rows = [{"style": "rlmr", "ground_truth": spec.to_ground_truth()} for spec in specs]
        pd.DataFrame({"prompt": ["a", "b"], "reward_model": rows}).to_parquet(tmp_path / name)
    out = bench.add_judge_constraint(tmp_path, tmp_path / "judged")
    for name in ("train.parquet", "val.parquet"):
        frame = pd.read_parquet(out / name)
        specs = [ConstraintSpec.parse(row["ground_truth"]) for row in frame["reward_model"]]
        assert [len(spec.constraints) for spec in specs] == [2, 1]
        assert all(spec.constraints[-1] == JudgeConstraint(text=bench.JUDGE_CONSTRAINT) for spec in specs)
        assert specs[0].constraints[0] == rule and list(frame["prompt"]) == ["a", "b"]


def test_the_report_from_known_numbers(bench):
    scalars = {
        0: {"val-core/x": 1.0},
        1: {"timing_s/step": 99.0, "timing_s/gen": 98.0},  # start-up step, discarded
        2: {"timing_s/step": 2.0, "timing_s/gen": 1.0, "rlmr/reward_latency_p50_s": 0.3},
        3: {"timing_s/step": 4.0, "timing_s/gen": 2.0, "rlmr/reward_latency_p50_s": 0.5},
        4: {"timing_s/step": 3.0, "timing_s/gen": 3.0, "rlmr/reward_latency_p50_s": 0.4},
    }
    rlmr = bench.kept_steps(scalars, discard=1)
    assert [m["timing_s/step"] for m in rlmr] == [2.0, 4.0, 3.0]
    free = [{"timing_s/step": 2.5, "timing_s/gen": 1.5}, {"timing_s/step": 2.5, "timing_s/gen": 1.0}]
    report = bench.format_report({"rlmr": rlmr, "free": free}, [("rlmr", 3.0), ("free", 2.5)])
    lines = report.splitlines()
    assert lines[0].split("|")[0].strip() == "figure (median s)" and lines[2].startswith("timing_s/step ")
    assert [c.strip() for c in lines[2].split("|")] == ["timing_s/step", "3.000", "2.500", "+0.500"]
    gen = next(line for line in lines if line.startswith("timing_s/gen"))
    assert [c.strip() for c in gen.split("|")] == ["timing_s/gen", "2.000", "1.250", "+0.750"]
    latency = next(line for line in lines if line.startswith("rlmr/reward_latency_p50_s"))
    assert [c.strip() for c in latency.split("|")] == ["rlmr/reward_latency_p50_s", "0.400", "-", "-"]
    assert "step-time ratio rlmr / free: 1.200" in report
    assert "steps kept: rlmr 3, free 2" in report and "rlmr 3.00 s, free 2.50 s" in report
    # the reward's cost shows in gen: 2.000 - 1.250 s, against the free arm's 2.5 s step
    assert "reward exposed in timing_s/gen: +0.750 s = +30.0% of the free arm's step" in report
    assert "step-time ratio with only that difference: 1.300" in report
