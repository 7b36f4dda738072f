#!/usr/bin/env bash
# RLMR on Qwen/Qwen3-8B with FSDP, 1 node(s) x 8 GPUs by default.
# Usage: [MODEL_PATH=...] [DATA_DIR=...] [NNODES=...] RM_URL=... RM_MODEL=... RM_TOKENIZER=... [JUDGE_URL=... JUDGE_MODEL=...] \
#        bash run_qwen3_8b.sh [hydra overrides...]      (DRY_RUN=1 to compose and validate only; see README)
MODEL_ID=Qwen/Qwen3-8B
EXPERIMENT=rlmr-qwen3-8b
BACKEND=fsdp
DEFAULT_NNODES=1
DEFAULT_GPUS_PER_NODE=8
: "${ROLLOUT_TP:=2}"
: "${MAX_TOKENS_PER_GPU:=32768}"
: "${GPU_MEMORY_UTILIZATION:=0.6}"
: "${SP_SIZE:=2}"
: "${PARAM_OFFLOAD:=false}"
: "${OPTIMIZER_OFFLOAD:=false}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh" "$@"
