#!/usr/bin/env bash
# RLMR on Qwen/Qwen2.5-32B-Instruct with FSDP, 4 node(s) x 8 GPUs by default.
# Usage: [MODEL_PATH=...] [DATA_DIR=...] [NNODES=...] RM_URL=... RM_MODEL=... RM_TOKENIZER=... [JUDGE_URL=... JUDGE_MODEL=...] \
#        bash run_qwen2_5_32b_instruct.sh [hydra overrides...]      (DRY_RUN=1 to compose and validate only; see README)
MODEL_ID=Qwen/Qwen2.5-32B-Instruct
EXPERIMENT=rlmr-qwen2.5-32b
BACKEND=fsdp
DEFAULT_NNODES=4
DEFAULT_GPUS_PER_NODE=8
: "${ROLLOUT_TP:=8}"
: "${MAX_TOKENS_PER_GPU:=24576}"
: "${GPU_MEMORY_UTILIZATION:=0.6}"
: "${SP_SIZE:=8}"
: "${PARAM_OFFLOAD:=false}"
: "${OPTIMIZER_OFFLOAD:=true}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh" "$@"
