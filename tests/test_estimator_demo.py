"""The estimator demo keeps showing what RLMR promises."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("args", [[], ["--no-std", "--gamma", "0.5"]])
def test_estimator_demo_shows_grpo_rewarding_violators_and_rlmr_not(args, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "recipe.rlmr.dev.estimator_demo", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = next(
        line for line in result.stdout.splitlines() if line.startswith("violators with a positive advantage")
    )
    grpo = int(summary.split("GRPO ")[1].split(",")[0])
    rlmr = int(summary.split("RLMR ")[1].split(" ")[0])
    assert grpo > 0 and rlmr == 0
    assert "rlmr/adv_violators_max" in result.stdout
