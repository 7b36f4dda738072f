"""The recipe's entry point: verl's PPO trainer with the RLMR config as its default.

    python -m recipe.rlmr.main_rlmr [hydra overrides...]

Same as ``python -m verl.trainer.main_ppo --config-path <recipe/rlmr/config> --config-name
rlmr_trainer``, plus RLMR's own checks (``recipe.rlmr.config_check``) before anything starts (Ray,
GPUs, rollout): a misconfigured run fails in seconds instead of after its first rollout. The checks
include the reward endpoints' preflight (``rewards.preflight``), here in the driver before Ray starts;
the trainer runs it once more when it is built (that covers verl's own ``main_ppo``), which costs one
request per endpoint.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recipe.rlmr.config_check import check_config


def validate_rlmr_config(config: DictConfig) -> None:
    """Raise ValueError on settings RLMR cannot run with; the message names the key (``check_config``)."""
    check_config(config)


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
