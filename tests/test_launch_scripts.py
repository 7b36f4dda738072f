"""Every launch script composes and validates against the pinned verl in dry-run mode, so a stale
or misspelled key fails here rather than on a cluster."""

import os
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


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_dry_run_composes_and_validates(script, tmp_path):
    result = dry_run(script, {**EXTERNAL_RM, **JUDGE, "DATA_DIR": "/data/rlmr"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "DRY RUN OK" in out
    model_id = next(line.split("=", 1)[1] for line in script.read_text().splitlines() if line.startswith("MODEL_ID="))
    assert field(out, "model") == model_id
    assert field(out, "batch").startswith("128 prompts x 8 samples")  # the paper's defaults
    assert "response 14336 tokens" in out and "lr 1e-06, 1 epoch(s), temperature 1.0" in out
    assert ("megatron TP" in out) == script.name.endswith("_megatron.sh")
    assert "external http://rm-host:8000" in out and "http://judge-host:8000" in out
    assert "/data/rlmr/train.parquet" in out


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
