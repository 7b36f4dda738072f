"""The recipe's Hydra config composes on top of verl's ppo_trainer and passes verl's validation."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import get_adv_estimator_fn
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config

import recipe.rlmr

CONFIG_DIR = Path(recipe.rlmr.__file__).parent / "config"

# What a user must add for validation to pass without GPUs in sight: micro batch sizes.
SMALL_RUN = [
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2",
]


def compose_rlmr(overrides=()):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name="rlmr_trainer", overrides=list(overrides))


def validate(config):
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


def test_defaults_are_rlmr_and_the_paper_hyperparameters():
    config = compose_rlmr()
    assert config.algorithm.adv_estimator == "rlmr"
    assert config.algorithm.rlmr.gamma == 1.0
    assert config.algorithm.rlmr.epsilon == 1e-6
    assert config.data.train_batch_size == 128
    assert config.actor_rollout_ref.rollout.n == 8
    assert config.actor_rollout_ref.rollout.temperature == 1.0
    assert config.actor_rollout_ref.actor.optim.lr == 1e-6
    assert config.trainer.total_epochs == 1
    # verl's own defaults come through untouched
    assert config.trainer.use_v1 is True
    assert config.trainer.v1.trainer_mode == "sync"
    assert get_adv_estimator_fn(config.algorithm.adv_estimator) is not None


def test_composes_with_overrides_and_passes_verl_validation():
    config = compose_rlmr(
        SMALL_RUN
        + [
            "algorithm.rlmr.gamma=0.5",
            "algorithm.norm_adv_by_std_in_grpo=false",
            "data.train_batch_size=16",
            "actor_rollout_ref.rollout.n=4",
            "actor_rollout_ref.actor.ppo_mini_batch_size=8",
            "trainer.n_gpus_per_node=8",
        ]
    )
    assert config.algorithm.rlmr.gamma == 0.5
    assert config.algorithm.norm_adv_by_std_in_grpo is False
    OmegaConf.resolve(config)
    validate(config)


def test_verl_validation_still_rejects_a_bad_batch():
    """The composed config is really validated: a batch that cannot split over the GPUs fails."""
    config = compose_rlmr(
        SMALL_RUN + ["data.train_batch_size=3", "actor_rollout_ref.rollout.n=1", "trainer.n_gpus_per_node=8"]
    )
    with pytest.raises((AssertionError, ValueError)):
        validate(config)


def test_misspelled_rlmr_key_is_not_silently_accepted():
    with pytest.raises(Exception, match="gama"):
        compose_rlmr(["algorithm.rlmr.gama=2.0"])
