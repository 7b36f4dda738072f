"""Every launch script composes and validates against the pinned verl in dry-run mode, so a stale
or misspelled key fails here rather than on a cluster."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import recipe.rlmr

SCRIPTS_DIR = Path(recipe.rlmr.__file__).parent / "scripts"
SCRIPTS = sorted(SCRIPTS_DIR.glob("run_*.sh"))
EXTERNAL_RM = {"RM_URL": "http://rm-host:8000", "RM_MODEL": "writing-rm", "RM_TOKENIZER": "/models/writing-rm"}
JUDGE = {"JUDGE_URL": "http://judge-host:8000", "JUDGE_MODEL": "Qwen2.5-72B-Instruct"}


def dry_run(script: Path, env_overrides: dict, *args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RM_", "JUDGE_"))}
    env.update({"DRY_RUN": "1", "PYTHON": sys.executable, **env_overrides})
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def field(output: str, name: str) -> str:
    return next(line.split(None, len(name.split()))[-1] for line in output.splitlines() if line.startswith(name))


def test_every_model_family_has_scripts():
    names = {s.name for s in SCRIPTS}
    for model in (
        "qwen3_8b",
        "qwen2_5_7b_instruct",
        "qwen2_5_14b_instruct",
        "qwen2_5_32b_instruct",
        "qwen2_5_72b_instruct",
        "deepseek_r1_distill_qwen_7b",
        "deepseek_r1_distill_qwen_14b",
        "deepseek_r1_distill_qwen_32b",
        "deepseek_r1_distill_llama_70b",
    ):
        assert f"run_{model}.sh" in names
    for model in (
        "qwen2_5_32b_instruct",
        "qwen2_5_72b_instruct",
        "deepseek_r1_distill_qwen_32b",
        "deepseek_r1_distill_llama_70b",
    ):
        assert f"run_{model}_megatron.sh" in names


@pytest.fixture(scope="module")
def composed(tmp_path_factory) -> dict[str, tuple[list[str], object]]:
    """Every script's DRY_RUN=1 launch, composed once: the script runs under bash with a stand-in
    ``$PYTHON`` that records the command line it would exec, and that command line goes through
    the dry run's own ``check`` in this process (one composition per script, one verl import)."""
    from recipe.rlmr.dry_run import check

    workdir = tmp_path_factory.mktemp("launch")
    recorder = workdir / "python"
    recorder.write_text('#!/bin/sh\nfor arg in "$@"; do printf \'%s\\0\' "$arg"; done > "$ARGV_FILE"\n')
    recorder.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RM_", "JUDGE_"))}
    env.update({**EXTERNAL_RM, **JUDGE, "DATA_DIR": "/data/rlmr", "DRY_RUN": "1", "PYTHON": str(recorder)})
    results = {}
    for script in SCRIPTS:
        argv_file = workdir / f"{script.stem}.argv"
        subprocess.run(
            ["bash", str(script)], env={**env, "ARGV_FILE": str(argv_file)}, cwd=workdir, check=True, timeout=60
        )
        argv = argv_file.read_text().split("\0")[:-1]
        assert argv[:2] == ["-m", "recipe.rlmr.dry_run"], argv[:2]
        results[script.name] = (argv[2:], check(argv[2:]))
    return results


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_dry_run_composes_and_validates(script, composed):
    from recipe.rlmr.dry_run import summary

    out = summary(composed[script.name][1])
    model_id = next(line.split("=", 1)[1] for line in script.read_text().splitlines() if line.startswith("MODEL_ID="))
    assert field(out, "model") == model_id
    assert field(out, "batch").startswith("128 prompts x 8 samples")  # the paper's defaults
    assert "response 14336 tokens" in out and "lr 1e-06, 1 epoch(s), temperature 1.0" in out
    assert ("megatron TP" in out) == script.name.endswith("_megatron.sh")
    assert "external http://rm-host:8000" in out and "http://judge-host:8000" in out
    assert "/data/rlmr/train.parquet" in out


# Reviewed parallelism per model size and training backend. Every script of that size and backend
# must compose to exactly these values, so a value copied from another size shows here.
PARALLELISM = {
    ("7-8B", "fsdp"): dict(nnodes=1, gpus=8, rollout_tp=2, tokens=32768, sp=2, param_off=False, optim_off=False),
    ("14B", "fsdp"): dict(nnodes=2, gpus=8, rollout_tp=4, tokens=32768, sp=4, param_off=False, optim_off=False),
    ("32B", "fsdp"): dict(nnodes=4, gpus=8, rollout_tp=8, tokens=24576, sp=8, param_off=False, optim_off=True),
    ("32B", "megatron"): dict(
        nnodes=4, gpus=8, rollout_tp=8, tokens=24576, tp=8, pp=1, param_off=False, optim_off=False
    ),
    ("70-72B", "fsdp"): dict(nnodes=8, gpus=8, rollout_tp=8, tokens=16384, sp=8, param_off=True, optim_off=True),
    ("70-72B", "megatron"): dict(
        nnodes=8, gpus=8, rollout_tp=8, tokens=16384, tp=8, pp=2, param_off=False, optim_off=True
    ),
}
SIZE_OF = {7: "7-8B", 8: "7-8B", 14: "14B", 32: "32B", 70: "70-72B", 72: "70-72B"}


def size_and_backend(script: Path) -> tuple[str, str]:
    billions = int(re.search(r"_(\d+)b(?:_|\.sh$)", script.name).group(1))
    return SIZE_OF[billions], "megatron" if script.name.endswith("_megatron.sh") else "fsdp"


def test_every_size_and_backend_has_scripts():
    assert {size_and_backend(script) for script in SCRIPTS} == set(PARALLELISM)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_each_script_carries_its_own_sizes_parallelism(script, composed):
    size, backend = size_and_backend(script)
    want = PARALLELISM[(size, backend)]
    config = composed[script.name][1]
    actor, rollout = config.actor_rollout_ref.actor, config.actor_rollout_ref.rollout
    got = dict(
        nnodes=config.trainer.nnodes,
        gpus=config.trainer.n_gpus_per_node,
        rollout_tp=rollout.tensor_model_parallel_size,
        tokens=actor.ppo_max_token_len_per_gpu,
    )
    if backend == "megatron":
        assert config.model_engine == "megatron" and actor.strategy == "megatron"
        megatron = actor.megatron
        got.update(
            tp=megatron.tensor_model_parallel_size,
            pp=megatron.pipeline_model_parallel_size,
            param_off=megatron.param_offload,
            optim_off=megatron.optimizer_offload,
        )
    else:
        assert actor.strategy in ("fsdp", "fsdp2")
        got.update(
            sp=actor.fsdp_config.ulysses_sequence_parallel_size,
            param_off=actor.fsdp_config.param_offload,
            optim_off=actor.fsdp_config.optimizer_offload,
        )
        # the reference model shards its sequence the same way as the actor
        assert config.actor_rollout_ref.ref.fsdp_config.ulysses_sequence_parallel_size == want["sp"]
    assert got == want, f"{script.name} ({size}, {backend})"
    # the header a user reads states the same defaults
    header = script.read_text().splitlines()[1]
    stated = f"with {'Megatron' if backend == 'megatron' else 'FSDP'}, {want['nnodes']} node(s) x {want['gpus']} GPUs"
    assert stated in header, header


def test_environment_and_extra_arguments_reach_the_config(tmp_path):
    script = SCRIPTS_DIR / "run_qwen3_8b.sh"
    result = dry_run(
        script,
        {**EXTERNAL_RM, "NNODES": "2", "GPUS_PER_NODE": "4", "MODEL_PATH": "/models/q3"},
        "data.train_batch_size=64",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert field(result.stdout, "nodes x GPUs") == "2 x 4" and field(result.stdout, "model") == "/models/q3"
    assert field(result.stdout, "batch").startswith("64 prompts")


PAPER_KEYS = (
    "data.train_batch_size",
    "actor_rollout_ref.rollout.n",
    "actor_rollout_ref.actor.optim.lr",
    "actor_rollout_ref.rollout.temperature",
    "trainer.total_epochs",
    "actor_rollout_ref.actor.ppo_mini_batch_size",
    "actor_rollout_ref.rollout.name",
    "trainer.project_name",
)


def test_the_scripts_leave_the_papers_settings_to_the_yaml_unless_a_variable_is_set(composed, tmp_path):
    """The paper's hyper-parameters are declared once, in the recipe YAML: no script passes them by itself
    (the composed fixture's command lines), and each variable, when set, overrides its key."""
    for name, (argv, _) in composed.items():
        assert not [a for a in argv if a.split("=", 1)[0] in PAPER_KEYS], name
    env = {"RM_PATH": "/models/rm", "LR": "3e-6", "N_SAMPLES": "4", "TEMPERATURE": "0.7", "ROLLOUT_ENGINE": "sglang"}
    result = dry_run(
        SCRIPTS_DIR / "run_qwen3_8b.sh", {**env, "TRAIN_BATCH_SIZE": "64", "PPO_MINI_BATCH_SIZE": "16"}, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert field(result.stdout, "batch") == "64 prompts x 4 samples, mini-batch 16 prompts"
    assert field(result.stdout, "optimiser").startswith("lr 3e-06") and "temperature 0.7" in result.stdout
    assert field(result.stdout, "rollout").startswith("sglang")
    assert field(result.stdout, "writing RM").endswith("TP 1, sglang")  # a verl-served RM uses the policy's engine


def test_reward_model_served_by_verl(tmp_path):
    result = dry_run(
        SCRIPTS_DIR / "run_qwen2_5_72b_instruct.sh", {"RM_PATH": "/models/writing-rm", "RM_TP": "2"}, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "served by verl: /models/writing-rm on 1 x 8 GPUs, TP 2" in result.stdout


@pytest.mark.parametrize(
    "env, args, message",
    [
        (EXTERNAL_RM, ["reward_model.enable=True"], "silently ignored"),  # verl's legacy top-level key
        (EXTERNAL_RM, ["custom_reward_function.path=/x.py"], "silently ignored"),
        (EXTERNAL_RM, ["actor_rollout_ref.actor.ppo_mini_batch_sise=8"], "Could not override"),  # misspelled
        ({}, [], "no writing reward model"),
        (EXTERNAL_RM, ["algorithm.rlmr.mode=vibes"], "algorithm.rlmr.mode"),
    ],
)
def test_bad_launches_fail_the_dry_run(env, args, message, tmp_path):
    result = dry_run(SCRIPTS_DIR / "run_qwen3_8b.sh", env, *args, cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
