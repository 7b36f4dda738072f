#!/usr/bin/env bash
# RLMR on deepseek-ai/DeepSeek-R1-Distill-Qwen-14B with FSDP, 2 node(s) x 8 GPUs by default.
# Usage: [MODEL_PATH=...] [DATA_DIR=...] [NNODES=...] RM_URL=... RM_MODEL=... RM_TOKENIZER=... [JUDGE_URL=... JUDGE_MODEL=...] \
#        bash run_deepseek_r1_distill_qwen_14b.sh [hydra overrides...]      (DRY_RUN=1 to compose and validate only; see README)
MODEL_ID=deepseek-ai/DeepSeek-R1-Distill-Qwen-14B
EXPERIMENT=rlmr-r1-distill-qwen-14b
BACKEND=fsdp
DEFAULT_NNODES=2
DEFAULT_GPUS_PER_NODE=8
: "${ROLLOUT_TP:=4}"
: "${MAX_TOKENS_PER_GPU:=32768}"
: "${GPU_MEMORY_UTILIZATION:=0.6}"
: "${SP_SIZE:=4}"
: "${PARAM_OFFLOAD:=false}"
: "${OPTIMIZER_OFFLOAD:=false}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh" "$@"
