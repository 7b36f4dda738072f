"""The recipe's entry point: verl's PPO trainer with the RLMR config as its default.

    python -m recipe.rlmr.main_rlmr [hydra overrides...]

Same as ``python -m verl.trainer.main_ppo --config-path <recipe/rlmr/config> --config-name
rlmr_trainer``, plus RLMR's own checks before anything starts (Ray, GPUs, rollout): a misconfigured
run fails in seconds instead of after its first rollout. The checks include the reward endpoints'
preflight (``rewards.preflight``), here in the driver before Ray starts; the trainer runs it once more
when it is built (that covers verl's own ``main_ppo``), which costs one request per endpoint.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recipe.rlmr.schema import check_sections
from recipe.rlmr.verdicts import needs_verdicts
from rewards.reward_info import CONSTRAINTS_OK


def validate_rlmr_config(config: DictConfig) -> None:
    """Raise ValueError on settings RLMR cannot run with; the message names the key.

    ``algorithm.rlmr`` and ``reward.rlmr`` are checked against their schemas whenever they are
    present (a typo fails even with another estimator); the rest only for ``adv_estimator=rlmr``.
    """
    check_sections(config)
    algorithm = config.algorithm
    if not needs_verdicts(algorithm.adv_estimator):
        return
    if not config.trainer.use_v1:
        raise ValueError("algorithm.adv_estimator=rlmr needs verl's V1 trainer: set trainer.use_v1=true")
    reward = config.reward
    if reward.reward_manager.name != "rlmr" and reward.reward_manager.source == "register":
        # Another manager is allowed if it returns constraints_ok, but say so up front.
        print(
            f"NOTICE: reward.reward_manager.name={reward.reward_manager.name}; it must return "
            f"reward_extra_info[{CONSTRAINTS_OK!r}] for every trajectory, or the first advantage step fails"
        )
    if reward.reward_model.enable and not reward.reward_model.enable_resource_pool:
        raise ValueError(
            "RLMR needs streaming rewards: with reward.reward_model.enable=True also set "
            "reward.reward_model.enable_resource_pool=True (the colocated mode drops the constraint spec)"
        )


@hydra.main(config_path="config", config_name="rlmr_trainer", version_base=None)
def main(config: DictConfig) -> None:
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    validate_rlmr_config(config)
    from rewards.preflight import preflight

    preflight(config)
    run_ppo(config, task_runner_class=TaskRunnerV1)


if __name__ == "__main__":
    main()
