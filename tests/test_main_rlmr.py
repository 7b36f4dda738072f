"""The recipe's entry point composes the RLMR config and refuses what RLMR cannot run with."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import recipe.rlmr
from recipe.rlmr.dry_run import compose_recipe
from recipe.rlmr.main_rlmr import validate_rlmr_config

CONFIG_DIR = str(Path(recipe.rlmr.__file__).parent / "config")


def config(*overrides):
    return compose_recipe(list(overrides))


def test_entry_point_prints_the_composed_rlmr_config(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "recipe.rlmr.main_rlmr",
            "--cfg",
            "job",
            "algorithm.rlmr.mode=fixed_weight",
            "data.train_batch_size=64",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("adv_estimator: rlmr", "mode: fixed_weight", "metric: rlmr", "name: rlmr", "train_batch_size: 64"):
        assert expected in out


def test_defaults_pass():
    validate_rlmr_config(config())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.use_v1=false"], "trainer.use_v1=true"),
        (["algorithm.rlmr.mode=vibes"], "algorithm.rlmr.mode"),
        (["algorithm.rlmr.filter.high=1.0", "algorithm.rlmr.filter.low=2.0"], "algorithm.rlmr.filter.low"),
        (["reward.reward_model.enable=true"], "enable_resource_pool"),
    ],
)
def test_settings_rlmr_cannot_run_with_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate_rlmr_config(config(*overrides))


def test_other_estimators_are_not_checked():
    validate_rlmr_config(config("algorithm.adv_estimator=grpo", "trainer.use_v1=false"))
