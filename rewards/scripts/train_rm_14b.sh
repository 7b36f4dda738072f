#!/usr/bin/env bash
# Writing reward model (pointwise Bradley-Terry, TRL RewardTrainer) on Qwen/Qwen2.5-14B-Instruct,
# fsdp, 1 node(s) x 8 GPUs by default. Global batch 128 pairs.
# Usage: TRAIN=pairs.jsonl OUTPUT=dir [VAL=held_out.jsonl] [MODEL_PATH=...] [NNODES=... MACHINE_RANK=...
#        MAIN_PROCESS_IP=...] bash train_rm_14b.sh [train_rm flags...]   (DRY_RUN=1: print, start nothing)
MODEL_ID=Qwen/Qwen2.5-14B-Instruct
STRATEGY=fsdp
DEFAULT_NNODES=1
DEFAULT_GPUS_PER_NODE=8
: "${BATCH_SIZE:=1}"
: "${GRAD_ACCUM:=16}"
: "${MAX_LENGTH:=8192}"
source "$(dirname "${BASH_SOURCE[0]}")/common_train_rm.sh" "$@"
