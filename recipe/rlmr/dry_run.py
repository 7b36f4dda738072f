"""`DRY_RUN=1 bash recipe/rlmr/scripts/run_*.sh`: compose and check a launch, start nothing.

    python -m recipe.rlmr.dry_run [--preflight] [hydra overrides...]

Composes ``rlmr_trainer`` with the overrides against the installed verl (an unknown or misspelled
key fails here, as Hydra's struct mode refuses it), runs verl's ``validate_config``, builds verl's
rollout config dataclass, runs every rule the run checks (``recipe.rlmr.config_check.check_config``,
the same function the trainer and ``main_rlmr`` call: verl's ignored legacy keys, a writing RM placed,
...; the dry run has no rule of its own, so it refuses exactly what a launch refuses) and prints the
settings that matter. No Ray, no GPU.

The reward endpoints are not contacted (a dry run works on a laptop far from the cluster's servers)
unless ``--preflight`` is given (``PREFLIGHT=1`` in the launch scripts): then ``rewards.preflight``
also probes the writing RM and the judge, as the real launch does before any weight loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import recipe.rlmr
from recipe.rlmr.config_check import check_config

CONFIG_DIR = str(Path(recipe.rlmr.__file__).parent / "config")


def compose_recipe(overrides: list[str]) -> DictConfig:
    """The recipe config (``rlmr_trainer`` over verl's ``ppo_trainer``) with Hydra ``overrides``."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(config_name="rlmr_trainer", overrides=overrides)


def check(overrides: list[str]) -> DictConfig:
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    config = compose_recipe(overrides)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    omega_conf_to_dataclass(config.actor_rollout_ref.rollout)  # verl's own checks of the rollout settings
    check_config(config)  # every rule the run itself checks (recipe.rlmr.config_check): no rule of its own here
    return config


def summary(config: DictConfig) -> str:
    actor, rollout, trainer = config.actor_rollout_ref.actor, config.actor_rollout_ref.rollout, config.trainer
    rlmr, rm, algorithm = config.reward.rlmr, config.reward.reward_model, config.algorithm
    if actor.strategy == "megatron":
        megatron = actor.megatron
        parallel = f"megatron TP {megatron.tensor_model_parallel_size} x PP {megatron.pipeline_model_parallel_size}"
        offload = f"param {megatron.param_offload}, optimizer {megatron.optimizer_offload}"
    else:
        parallel = f"FSDP, Ulysses SP {actor.fsdp_config.ulysses_sequence_parallel_size}"
        offload = f"param {actor.fsdp_config.param_offload}, optimizer {actor.fsdp_config.optimizer_offload}"
    writing_rm = rlmr.writing_rm
    if writing_rm.url:
        rm_place = f"external {writing_rm.url} (model {writing_rm.model}, {writing_rm.backend or 'vllm_classify'})"
    else:
        rm_tp = rm.rollout.tensor_model_parallel_size
        rm_place = (
            f"served by verl: {rm.model_path} on {rm.nnodes} x {rm.n_gpus_per_node} GPUs, TP {rm_tp}, {rm.rollout.name}"
        )
    judge = (
        f"{rlmr.judge.url} (model {rlmr.judge.model})"
        if rlmr.judge.url
        else "none (prompts with free-text constraints become invalid)"
    )
    rows = [
        ("model", config.actor_rollout_ref.model.path),
        ("nodes x GPUs", f"{trainer.nnodes} x {trainer.n_gpus_per_node}"),
        ("training", f"{parallel}; offload {offload}"),
        (
            "rollout",
            f"{rollout.name}, TP {rollout.tensor_model_parallel_size}, "
            f"gpu_memory_utilization {rollout.gpu_memory_utilization}",
        ),
        (
            "batch",
            f"{config.data.train_batch_size} prompts x {rollout.n} samples, "
            f"mini-batch {actor.ppo_mini_batch_size} prompts",
        ),
        ("lengths", f"prompt {config.data.max_prompt_length}, response {config.data.max_response_length} tokens"),
        ("dynamic batch", f"{actor.use_dynamic_bsz}, max {actor.ppo_max_token_len_per_gpu} tokens per GPU"),
        ("optimiser", f"lr {actor.optim.lr}, {trainer.total_epochs} epoch(s), temperature {rollout.temperature}"),
        (
            "advantage",
            f"{algorithm.adv_estimator} (mode {algorithm.rlmr.mode}, gamma {algorithm.rlmr.gamma})",
        ),
        ("group filter", f"{config.algorithm.filter_groups.enable} (metric {config.algorithm.filter_groups.metric})"),
        ("writing RM", rm_place),
        ("judge", judge),
        (
            "preflight",
            f"{'on' if rlmr.preflight.enable else 'off'} (timeout {rlmr.preflight.timeout_s} s per endpoint)",
        ),
        (
            "failure budget",
            f"stop after {rlmr.failure_budget.consecutive_steps} steps in a row with more than "
            f"{rlmr.failure_budget.max_invalid_fraction:.0%} invalid rewards"
            if rlmr.failure_budget.enable
            else "off",
        ),
        ("data", f"{config.data.train_files} / {config.data.val_files}"),
        ("outputs", trainer.default_local_dir),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    probe = "--preflight" in overrides
    overrides = [arg for arg in overrides if arg != "--preflight"]
    try:
        config = check(overrides)
    except Exception as err:  # composition, validation: all are the user's to fix
        print(f"DRY RUN FAILED: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(summary(config))
    if probe:
        from rewards.preflight import preflight

        config.reward.rlmr.preflight.enable = True  # asked for explicitly
        try:
            preflight(config)
        except Exception as err:
            print(f"DRY RUN FAILED: {type(err).__name__}: {err}", file=sys.stderr)
            return 1
    print(f"DRY RUN OK: config composed and validated{'; reward endpoints answered' if probe else ''}; nothing started")
    return 0


if __name__ == "__main__":
    sys.exit(main())
