#!/usr/bin/env bash
# Shared body of the train_rm_*.sh launch scripts (sourced, not run): builds the
# `accelerate launch ... -m rewards.train_rm ...` command from the per-size defaults the caller set
# and the environment, then runs it, or with DRY_RUN=1 prints the resolved command and accelerate
# config, checks that config parses, and starts nothing.
#
# Environment (caller's defaults in brackets):
#   TRAIN, OUTPUT (required)  VAL  MODEL_PATH [MODEL_ID]  NNODES [DEFAULT_NNODES]
#   GPUS_PER_NODE [DEFAULT_GPUS_PER_NODE]  MACHINE_RANK [0]  MAIN_PROCESS_IP [127.0.0.1]
#   MAIN_PROCESS_PORT [29500]  ACCELERATE_CONFIG [STRATEGY's yaml]  BATCH_SIZE  GRAD_ACCUM  MAX_LENGTH
#   LR  EPOCHS  CENTER_REWARDS  SEED  PYTHON [python]  DRY_RUN
# Extra arguments are passed on to rewards.train_rm (e.g. --resume, --margin-key score_gap).
set -euo pipefail

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPTS_DIR/../.." && pwd)"
: "${PYTHON:=python}"
: "${MODEL_PATH:=$MODEL_ID}"
: "${NNODES:=$DEFAULT_NNODES}"
: "${GPUS_PER_NODE:=$DEFAULT_GPUS_PER_NODE}"
: "${MACHINE_RANK:=0}"
: "${MAIN_PROCESS_IP:=127.0.0.1}"
: "${MAIN_PROCESS_PORT:=29500}"
: "${ACCELERATE_CONFIG:=$SCRIPTS_DIR/accelerate/$STRATEGY.yaml}"
: "${LR:=1e-5}"
: "${EPOCHS:=1}"
: "${CENTER_REWARDS:=0.0}"
: "${SEED:=0}"
: "${VAL:=}"

for var in TRAIN OUTPUT; do
  if [[ -z "${!var:-}" ]]; then
    echo "$(basename "$0"): set $var (see the header of ${BASH_SOURCE[0]})" >&2
    exit 2
  fi
done
if [[ ! -f "$ACCELERATE_CONFIG" ]]; then
  echo "$(basename "$0"): ACCELERATE_CONFIG=$ACCELERATE_CONFIG: no such file" >&2
  exit 2
fi

NUM_PROCESSES=$((NNODES * GPUS_PER_NODE))
COMMAND=(
  "$PYTHON" -m accelerate.commands.launch
  --config_file "$ACCELERATE_CONFIG"
  --num_machines "$NNODES" --num_processes "$NUM_PROCESSES" --machine_rank "$MACHINE_RANK"
  --main_process_ip "$MAIN_PROCESS_IP" --main_process_port "$MAIN_PROCESS_PORT"
  -m rewards.train_rm
  --model "$MODEL_PATH" --train "$TRAIN" --output "$OUTPUT"
  --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH_SIZE" --grad-accum "$GRAD_ACCUM"
  --max-length "$MAX_LENGTH" --center-rewards "$CENTER_REWARDS" --seed "$SEED"
)
if [[ -n "$VAL" ]]; then
  COMMAND+=(--val "$VAL")
fi
COMMAND+=("$@")

if [[ "${DRY_RUN:-0}" == "1" ]]; then
  echo "strategy: $STRATEGY"
  echo "processes: $NUM_PROCESSES ($NNODES node(s) x $GPUS_PER_NODE GPUs), global batch $((NUM_PROCESSES * BATCH_SIZE * GRAD_ACCUM)) pairs"
  printf 'command:'
  printf ' %q' "${COMMAND[@]}"
  printf '\n'
  echo "config: $ACCELERATE_CONFIG"
  cat "$ACCELERATE_CONFIG"
  # the config must parse as accelerate reads it, or the launch would fail on the cluster
  "$PYTHON" -c "import sys; from accelerate.commands.config.config_args import ClusterConfig; \
c = ClusterConfig.from_yaml_file(sys.argv[1]); print('config parsed:', c.distributed_type)" "$ACCELERATE_CONFIG"
  exit 0
fi

cd "$REPO_ROOT"
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "${COMMAND[@]}"
