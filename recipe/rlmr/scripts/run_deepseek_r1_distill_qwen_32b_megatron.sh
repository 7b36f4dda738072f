#!/usr/bin/env bash
# RLMR on deepseek-ai/DeepSeek-R1-Distill-Qwen-32B with Megatron, 4 node(s) x 8 GPUs by default.
# Usage: [MODEL_PATH=...] [DATA_DIR=...] [NNODES=...] RM_URL=... RM_MODEL=... RM_TOKENIZER=... [JUDGE_URL=... JUDGE_MODEL=...] \
#        bash run_deepseek_r1_distill_qwen_32b_megatron.sh [hydra overrides...]      (DRY_RUN=1 to compose and validate only; see README)
MODEL_ID=deepseek-ai/DeepSeek-R1-Distill-Qwen-32B
EXPERIMENT=rlmr-r1-distill-qwen-32b-megatron
BACKEND=megatron
DEFAULT_NNODES=4
DEFAULT_GPUS_PER_NODE=8
: "${ROLLOUT_TP:=8}"
: "${MAX_TOKENS_PER_GPU:=24576}"
: "${GPU_MEMORY_UTILIZATION:=0.6}"
: "${MEGATRON_TP:=8}"
: "${MEGATRON_PP:=1}"
: "${PARAM_OFFLOAD:=false}"
: "${OPTIMIZER_OFFLOAD:=false}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh" "$@"
