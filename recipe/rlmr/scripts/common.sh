#!/usr/bin/env bash
# Shared body of the run_<model>.sh scripts: they set the per-model defaults below, then source
# this file with their arguments. Every setting can be overridden from the environment, and extra
# arguments are passed to Hydra as overrides (they win over everything here).
#
# Per-model variables a script sets: MODEL_ID, EXPERIMENT, BACKEND (fsdp|megatron),
# DEFAULT_NNODES, DEFAULT_GPUS_PER_NODE, ROLLOUT_TP, MAX_TOKENS_PER_GPU, GPU_MEMORY_UTILIZATION,
# and SP_SIZE, PARAM_OFFLOAD, OPTIMIZER_OFFLOAD (fsdp) or MEGATRON_TP, MEGATRON_PP,
# PARAM_OFFLOAD, OPTIMIZER_OFFLOAD (megatron).
set -euo pipefail

: "${PYTHON:=python3}"
: "${MODEL_PATH:=$MODEL_ID}"
: "${NNODES:=$DEFAULT_NNODES}"
: "${GPUS_PER_NODE:=$DEFAULT_GPUS_PER_NODE}"
: "${DATA_DIR:=$PWD/data/rlmr}"
: "${TRAIN_FILES:=$DATA_DIR/train.parquet}"
: "${VAL_FILES:=$DATA_DIR/val.parquet}"
: "${OUTPUT_DIR:=$PWD/outputs/$EXPERIMENT}"
: "${EXPERIMENT_NAME:=$EXPERIMENT}"
: "${MAX_PROMPT_LENGTH:=2048}"
: "${MAX_RESPONSE_LENGTH:=14336}"

ARGS=(
    "data.train_files=$TRAIN_FILES"
    "data.val_files=$VAL_FILES"
    "data.max_prompt_length=$MAX_PROMPT_LENGTH"
    "data.max_response_length=$MAX_RESPONSE_LENGTH"
    "data.filter_overlong_prompts=true"
    "actor_rollout_ref.model.path=$MODEL_PATH"
    "actor_rollout_ref.model.enable_gradient_checkpointing=true"
    "actor_rollout_ref.model.use_remove_padding=true"
    "actor_rollout_ref.actor.use_dynamic_bsz=true"
    "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=$MAX_TOKENS_PER_GPU"
    "actor_rollout_ref.rollout.tensor_model_parallel_size=$ROLLOUT_TP"
    "actor_rollout_ref.rollout.gpu_memory_utilization=$GPU_MEMORY_UTILIZATION"
    "trainer.nnodes=$NNODES"
    "trainer.n_gpus_per_node=$GPUS_PER_NODE"
    "trainer.experiment_name=$EXPERIMENT_NAME"
    "trainer.default_local_dir=$OUTPUT_DIR/checkpoints"
    "trainer.logger=[console,tensorboard]"
)

# The paper's hyper-parameters are set once, in config/rlmr_trainer.yaml (the composed config and the
# dry run show them); each of these variables, when set, overrides one.
declare -A PAPER_KEYS=(
    [TRAIN_BATCH_SIZE]=data.train_batch_size
    [N_SAMPLES]=actor_rollout_ref.rollout.n
    [LR]=actor_rollout_ref.actor.optim.lr
    [TEMPERATURE]=actor_rollout_ref.rollout.temperature
    [TOTAL_EPOCHS]=trainer.total_epochs
    [PPO_MINI_BATCH_SIZE]=actor_rollout_ref.actor.ppo_mini_batch_size
    [ROLLOUT_ENGINE]=actor_rollout_ref.rollout.name
    [PROJECT_NAME]=trainer.project_name
)
for variable in "${!PAPER_KEYS[@]}"; do
    if [[ -n "${!variable:-}" ]]; then
        ARGS+=("${PAPER_KEYS[$variable]}=${!variable}")
    fi
done

if [[ "$BACKEND" == "megatron" ]]; then
    ARGS+=(
        "model_engine=megatron"
        "actor_rollout_ref.actor.megatron.tensor_model_parallel_size=$MEGATRON_TP"
        "actor_rollout_ref.actor.megatron.pipeline_model_parallel_size=$MEGATRON_PP"
        "actor_rollout_ref.actor.megatron.param_offload=$PARAM_OFFLOAD"
        "actor_rollout_ref.actor.megatron.optimizer_offload=$OPTIMIZER_OFFLOAD"
    )
else
    ARGS+=(
        "actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size=$SP_SIZE"
        "actor_rollout_ref.ref.fsdp_config.ulysses_sequence_parallel_size=$SP_SIZE"
        "actor_rollout_ref.actor.fsdp_config.param_offload=$PARAM_OFFLOAD"
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload=$OPTIMIZER_OFFLOAD"
    )
fi

# The writing reward model: an external server (RM_URL) or served by verl on its own GPUs (RM_PATH).
if [[ -n "${RM_URL:-}" ]]; then
    ARGS+=(
        "reward.rlmr.writing_rm.url=$RM_URL"
        "reward.rlmr.writing_rm.model=${RM_MODEL:?RM_MODEL: the model name served at RM_URL}"
        "reward.rlmr.writing_rm.tokenizer=${RM_TOKENIZER:?RM_TOKENIZER: local path of the reward model tokenizer}"
        "reward.rlmr.writing_rm.backend=${RM_BACKEND:-vllm_classify}"
    )
elif [[ -n "${RM_PATH:-}" ]]; then
    manager_file=$("$PYTHON" -c 'import importlib.util; print(importlib.util.find_spec("rewards.manager").origin)')
    ARGS+=(
        "reward.reward_model.enable=true"
        "reward.reward_model.model_path=$RM_PATH"
        "reward.reward_model.enable_resource_pool=true"
        "reward.reward_model.nnodes=${RM_NNODES:-1}"
        "reward.reward_model.n_gpus_per_node=${RM_GPUS_PER_NODE:-8}"
        "reward.reward_model.rollout.name=\${actor_rollout_ref.rollout.name}"  # the policy's engine
        "reward.reward_model.rollout.tensor_model_parallel_size=${RM_TP:-1}"
        "reward.reward_model.rollout.free_cache_engine=false"
        "reward.custom_reward_function.path=$manager_file"
        "reward.custom_reward_function.name=unused_compute_score"
    )
fi

# The generative judge for free-text constraints (any OpenAI-compatible endpoint).
if [[ -n "${JUDGE_URL:-}" ]]; then
    ARGS+=(
        "reward.rlmr.judge.url=$JUDGE_URL"
        "reward.rlmr.judge.model=${JUDGE_MODEL:?JUDGE_MODEL: the judge model served at JUDGE_URL}"
    )
    if [[ -n "${JUDGE_API_KEY_ENV:-}" ]]; then
        ARGS+=("reward.rlmr.judge.api_key_env=$JUDGE_API_KEY_ENV")
    fi
fi

# DRY_RUN=1: compose and check, start nothing, contact nothing; with PREFLIGHT=1 also probe the
# reward endpoints. A real launch always probes them before any weight loads (main_rlmr), unless
# reward.rlmr.preflight.enable=false is passed.
if [[ "${DRY_RUN:-0}" == "1" ]]; then
    if [[ "${PREFLIGHT:-0}" == "1" ]]; then
        exec "$PYTHON" -m recipe.rlmr.dry_run --preflight "${ARGS[@]}" "$@"
    fi
    exec "$PYTHON" -m recipe.rlmr.dry_run "${ARGS[@]}" "$@"
fi
mkdir -p "$OUTPUT_DIR"
exec "$PYTHON" -m recipe.rlmr.main_rlmr "${ARGS[@]}" "$@"
