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


# a launch needs a writing RM; the recipe's defaults name none (each user's own server or folder)
WITH_RM = (
    "reward.rlmr.writing_rm.url=http://127.0.0.1:9",
    "reward.rlmr.writing_rm.model=rm",
    "reward.rlmr.writing_rm.tokenizer=rm-tokenizer",
)


def test_defaults_pass_once_a_writing_rm_is_named():
    validate_rlmr_config(config(*WITH_RM))
    validate_rlmr_config(config("reward.reward_model.enable=true", "reward.reward_model.enable_resource_pool=true"))
    with pytest.raises(ValueError, match="no writing reward model: set reward.rlmr.writing_rm.url"):
        validate_rlmr_config(config())


@pytest.mark.parametrize(
    "legacy", ["reward_model.enable=true", "custom_reward_function.path=/tmp/reward.py", "reward_model.model.path=m"]
)
def test_verls_ignored_legacy_keys_are_refused_at_launch(legacy):
    """verl 0.9.1 declares its old top-level reward keys and ignores them; every entry refuses a value set there."""
    with pytest.raises(ValueError, match=rf"legacy keys \['{legacy.split('=')[0]}'\] are silently ignored"):
        validate_rlmr_config(config(*WITH_RM, legacy))


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
    validate_rlmr_config(config(*WITH_RM, "algorithm.adv_estimator=grpo", "trainer.use_v1=false"))
