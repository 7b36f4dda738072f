"""The gamma sweep's table: each gamma arm's last steps, its margin in compliant stds, step 1's spread."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recipe.rlmr.experiment.aggregate import edge_means, run_rows
from recipe.rlmr.experiment.cli import parse_args
from recipe.rlmr.experiment.gamma import (
    COLUMNS,
    gamma_arms,
    gamma_rows,
    rollout_lengths,
    rollout_spread,
    step_one_spread,
    write_gamma,
)

WORDS, VIOLATION = "rlmr/response_words_mean", "rlmr/violation_rate"


def _run(arm: str, words: list[float]) -> list[dict]:
    return run_rows(arm, 0, {step: {WORDS: w, VIOLATION: 1 / step} for step, w in enumerate(words, start=1)})


def test_gamma_arms_are_the_rlmr_arms_that_set_gamma():
    assert gamma_arms(["writing_only", "rlmr", "rlmr@0.3", "fixed_weight@1", "rlmr@1sd"]) == ["rlmr@0.3", "rlmr@1sd"]


def test_gamma_rows_put_both_modes_on_one_axis_of_compliant_stds(tmp_path):
    rows = _run("rlmr@0.1", [60, 50, 45, 44, 43])
    rows += _run("rlmr@1", [60, 30, 20, 19, 18])  # last 3: violation (1/3 + 1/4 + 1/5) / 3, words 19
    rows += _run("rlmr@2sd", [60, 40, 35])
    rows += _run("writing_only", [60, 70, 80])
    table = gamma_rows(rows, compliant_spread=0.5)
    assert [r["arm"] for r in table] == ["rlmr@0.1", "rlmr@1", "rlmr@2sd"]  # by margin: 0.2, 2 (absolute), 2 (relative)
    by_arm = {r["arm"]: r for r in table}
    assert by_arm["rlmr@0.1"]["margin_in_spreads"] == pytest.approx(0.2)
    assert by_arm["rlmr@1"]["margin_in_spreads"] == pytest.approx(2.0)
    assert by_arm["rlmr@2sd"]["margin_in_spreads"] == 2.0 and by_arm["rlmr@2sd"]["mode"] == "relative"
    for row in table:
        assert row["words"] == pytest.approx(edge_means(rows, row["arm"], WORDS)[1])
        assert row["violation_rate"] == pytest.approx(edge_means(rows, row["arm"], VIOLATION)[1])
        assert math.isnan(row["compliant_score"])  # not logged in these rows: NaN, not 0
    write_gamma(tmp_path, rows, 0.5, "# sweep", word_limit=50, lengths={"rlmr@1": (30.0, 10.0)})
    text = (tmp_path / "gamma.md").read_text()
    assert "| rlmr@1 | absolute | 1 | 2.00 | 0.261 | 19.0 |" in text and (tmp_path / "gamma.png").stat().st_size > 0
    assert "| 10.0 | 2.00 |" in text  # limit gap (50 - 30) / 10
    header = (tmp_path / "gamma.csv").read_text().splitlines()[0].split(",")
    assert header[4:] == [c for _, c, _, _ in COLUMNS] + ["words_std", "limit_gap"]


@given(
    st.lists(st.tuples(st.integers(0, 3), st.floats(-50, 50, allow_nan=False), st.booleans()), min_size=0, max_size=30)
)
def test_step_one_spread_is_the_mean_population_std_of_groups_with_two_compliant_answers(records):
    spread = step_one_spread([{"group": g, "score": s, "violates": v} for g, s, v in records])
    groups = {}
    for group, score, violates in records:
        if not violates:
            groups.setdefault(group, []).append(score)
    stds = [statistics.pstdev(scores) for scores in groups.values() if len(scores) >= 2]
    if stds:
        assert spread == pytest.approx(statistics.fmean(stds), abs=1e-9)
    else:
        assert math.isnan(spread)


def test_rollout_spread_reads_step_one_and_recomputes_verdicts(tmp_path):
    spec = {"version": 1, "constraints": [{"type": "rule", "instruction_id": "length_constraints:number_words",
            "kwargs": {"num_words": 4, "relation": "less than"}}]}  # fmt: skip
    dumped = [
        ("g1_0_0", "one two", 1.0),
        ("g1_1_0", "one two three", 2.0),
        ("g1_2_0", "one two three four five", 9.0),  # violates: left out of the spread
        ("g2_0_0", "one", 5.0),  # the only compliant answer of its group: no spread
    ]
    (tmp_path / "rollouts").mkdir()
    lines = [
        json.dumps({"uid": u, "input": "p", "output": o, "gts": json.dumps(spec), "score": s}) for u, o, s in dumped
    ]
    (tmp_path / "rollouts" / "1.jsonl").write_text("\n".join(lines) + "\n")
    assert rollout_spread(tmp_path) == pytest.approx(0.5)
    mean_words, words_std = rollout_lengths([tmp_path], steps=[1])
    assert mean_words == pytest.approx((2 + 3 + 5 + 1) / 4)
    assert words_std == pytest.approx((statistics.pstdev([2, 3, 5]) + 0.0) / 2)  # g1 and g2, violators included
    assert math.isnan(rollout_lengths([tmp_path], steps=[2])[0])
    assert math.isnan(rollout_spread(tmp_path / "nothing"))


def test_a_gamma_sweep_is_parsed_and_a_bad_gamma_arm_refused(capsys):
    args = parse_args(["--workdir", "w", "--arms", "rlmr@0.1,rlmr@1sd", "--seeds", "0"])
    assert gamma_arms(args.arms) == ["rlmr@0.1", "rlmr@1sd"]
    with pytest.raises(SystemExit):
        parse_args(["--workdir", "w", "--arms", "rlmr@-1"])
    assert "must be positive" in capsys.readouterr().err
