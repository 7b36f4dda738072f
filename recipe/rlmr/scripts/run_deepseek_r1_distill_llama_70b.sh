#!/usr/bin/env bash
# RLMR on deepseek-ai/DeepSeek-R1-Distill-Llama-70B with FSDP, 8 node(s) x 8 GPUs by default.
# Usage: [MODEL_PATH=...] [DATA_DIR=...] [NNODES=...] RM_URL=... RM_MODEL=... RM_TOKENIZER=... [JUDGE_URL=... JUDGE_MODEL=...] \
#        bash run_deepseek_r1_distill_llama_70b.sh [hydra overrides...]      (DRY_RUN=1 to compose and validate only; see README)
MODEL_ID=deepseek-ai/DeepSeek-R1-Distill-Llama-70B
EXPERIMENT=rlmr-r1-distill-llama-70b
BACKEND=fsdp
DEFAULT_NNODES=8
DEFAULT_GPUS_PER_NODE=8
: "${ROLLOUT_TP:=8}"
: "${MAX_TOKENS_PER_GPU:=16384}"
: "${GPU_MEMORY_UTILIZATION:=0.6}"
: "${SP_SIZE:=8}"
: "${PARAM_OFFLOAD:=true}"
: "${OPTIMIZER_OFFLOAD:=true}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh" "$@"
