#!/usr/bin/env bash
# Writing reward model (pointwise Bradley-Terry, TRL RewardTrainer) on Qwen/Qwen2.5-32B-Instruct,
# zero3, 2 node(s) x 8 GPUs by default. Global batch 128 pairs; optimizer states offloaded to CPU.
# Usage: TRAIN=pairs.jsonl OUTPUT=dir [VAL=held_out.jsonl] [MODEL_PATH=...] [NNODES=... MACHINE_RANK=...
#        MAIN_PROCESS_IP=...] bash train_rm_32b.sh [train_rm flags...]   (DRY_RUN=1: print, start nothing)
MODEL_ID=Qwen/Qwen2.5-32B-Instruct
STRATEGY=zero3
DEFAULT_NNODES=2
DEFAULT_GPUS_PER_NODE=8
: "${BATCH_SIZE:=1}"
: "${GRAD_ACCUM:=8}"
: "${MAX_LENGTH:=8192}"
source "$(dirname "${BASH_SOURCE[0]}")/common_train_rm.sh" "$@"
