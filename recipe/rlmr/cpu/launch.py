"""Everything a CPU training run needs besides verl: tiny assets, a reward-model server, the
environment and the Hydra overrides. Used by the end-to-end test and by ``make demo``.

    python -m recipe.rlmr.cpu.launch WORKDIR [--steps 3] [--entry verl|recipe] [--data sample|word_limit] [overrides...]

builds the tiny policy, reward model and sample data under WORKDIR, serves the reward model on
a loopback port (``python -m rewards.serve_rm``), and runs

    VERL_PLATFORM=cpu python -m verl.trainer.main_ppo \\
        --config-path <recipe/rlmr/config> --config-name rlmr_trainer  <cpu_overrides(...)>

(``--entry recipe`` runs ``python -m recipe.rlmr.main_rlmr`` instead). The overrides are the
ones a CPU machine needs (device, fake GPU slots for Ray's placement, FSDP2, the ``hf`` rollout,
one agent-loop and one reward worker) plus a small problem size: 4 prompts x 4 samples, 48
response tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
RM_NAME = "tiny-rm"


@dataclass(frozen=True)
class TinyAssets:
    policy: Path
    reward_model: Path
    data: Path

    @property
    def train_files(self) -> Path:
        return self.data / "train.parquet"

    @property
    def val_files(self) -> Path:
        return self.data / "val.parquet"


DATA_SETS = ("sample", "word_limit")


def build_assets(workdir: str | Path, seed: int = 0, data: str = "sample") -> TinyAssets:
    """Tiny policy, reward model and a data set under ``workdir`` (reused if present).

    ``data``: ``sample`` (the sample prompts with augmented constraints) or ``word_limit`` (one
    "fewer than N words" limit per prompt, which the untrained tiny policy breaks about half the time).
    """
    from recipe.rlmr.dev import sample_data, tiny_assets

    if data not in DATA_SETS:
        raise ValueError(f"data must be one of {DATA_SETS}, got {data!r}")
    workdir = Path(workdir)
    assets = TinyAssets(workdir / "policy", workdir / "reward_model", workdir / f"data_{data}")
    if not (assets.policy / "config.json").exists():
        tiny_assets.build_policy_model(assets.policy, seed=seed)
    if not (assets.reward_model / "config.json").exists():
        tiny_assets.build_reward_model(assets.reward_model, seed=seed + 1)
    if not assets.train_files.exists():
        if data == "word_limit":
            sample_data.build_word_limit(assets.data, seed=seed)
        else:
            sample_data.build(assets.data, seed=seed)
    return assets


@contextlib.contextmanager
def serve_reward_model(model_dir: str | Path, log_path: str | Path | None = None):
    """``python -m rewards.serve_rm`` for ``model_dir`` on a free loopback port; yields its URL."""
    from rewards.serve_rm import serve_in_subprocess

    with serve_in_subprocess(model_dir, served_model_name=RM_NAME, log_path=log_path) as port:
        yield f"http://127.0.0.1:{port}"


def cpu_env(workdir: str | Path) -> dict[str, str]:
    """Environment for the trainer process (Ray's workers inherit it)."""
    workdir = Path(workdir)
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # always a private local Ray
    env.update(
        VERL_PLATFORM="cpu",  # switches the CPU backend on (recipe.rlmr.cpu)
        TENSORBOARD_DIR=str(workdir / "tensorboard"),
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
        RAY_DEDUP_LOGS="0",
        HYDRA_FULL_ERROR="1",
    )
    return env


def cpu_overrides(
    assets: TinyAssets,
    rm_url: str,
    workdir: str | Path,
    steps: int = 3,
    prompts_per_step: int = 4,
    samples_per_prompt: int = 4,
    response_length: int = 48,
) -> list[str]:
    """Hydra overrides (on ``rlmr_trainer``) for an RLMR run with the CPU backend and tiny assets."""
    workdir = Path(workdir)
    rollout_batch = prompts_per_step * samples_per_prompt
    return [
        # data: the project's sample set; prompts are a few hundred byte-level tokens at most
        f"data.train_files={assets.train_files}",
        f"data.val_files={assets.val_files}",
        f"data.train_batch_size={prompts_per_step}",
        "data.max_prompt_length=384",
        f"data.max_response_length={response_length}",
        "data.filter_overlong_prompts=true",
        "data.dataloader_num_workers=0",
        "data.seed=0",
        # the policy: tiny Qwen2 trained by FSDP2 over gloo (FSDP1 refuses CPU parameters)
        f"actor_rollout_ref.model.path={assets.policy}",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.ref.strategy=fsdp2",
        "actor_rollout_ref.actor.optim.lr=1e-4",  # a tiny random model needs a visible step size
        # fp32 compute (verl's FSDP default is bf16 params): CPUs gain nothing from bf16, and the
        # rollout (fp32) and the actor then agree on log-probs to ~1e-6, not ~1e-2
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32",
        "+actor_rollout_ref.ref.fsdp_config.mixed_precision.param_dtype=fp32",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={prompts_per_step}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={rollout_batch}",
        "actor_rollout_ref.actor.use_kl_loss=false",
        "actor_rollout_ref.actor.use_dynamic_bsz=false",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={rollout_batch}",
        # the rollout: transformers generate behind verl's replica interface (recipe.rlmr.cpu.hf_rollout)
        "actor_rollout_ref.rollout.name=hf",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        f"actor_rollout_ref.rollout.n={samples_per_prompt}",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.rollout.calculate_log_probs=true",
        # the reward: RLMR's manager, the served tiny RM, rule-checked constraints (no judge)
        f"reward.rlmr.writing_rm.url={rm_url}",
        f"reward.rlmr.writing_rm.model={RM_NAME}",
        f"reward.rlmr.writing_rm.tokenizer={assets.reward_model}",
        "reward.num_workers=1",
        # RLMR's group filter stays on; poll the replay buffer often (a CPU step is short)
        "algorithm.rlmr.filter.poll_interval_s=0.2",
        # the machine: Ray placement counts GPU slots, so declare one fake slot; CPU does the work
        "trainer.device=cpu",
        "trainer.n_gpus_per_node=1",
        "trainer.nnodes=1",
        "ray_kwargs.ray_init.num_cpus=8",  # scheduling slots, not cores (4 stalls worker creation)
        "+ray_kwargs.ray_init.num_gpus=1",
        "+ray_kwargs.ray_init.include_dashboard=false",  # saves a process and seconds of start-up
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        # the run
        f"trainer.total_training_steps={steps}",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.resume_mode=disable",
        f"trainer.default_local_dir={workdir / 'checkpoints'}",
        "trainer.logger=[console,tensorboard]",
        "trainer.project_name=rlmr_cpu",
        "trainer.experiment_name=tiny",
    ]


def trainer_command(entry: str, overrides: list[str]) -> list[str]:
    if entry == "recipe":
        return [sys.executable, "-m", "recipe.rlmr.main_rlmr", *overrides]
    return [
        sys.executable,
        "-m",
        "verl.trainer.main_ppo",
        "--config-path",
        str(CONFIG_DIR),
        "--config-name",
        "rlmr_trainer",
        *overrides,
    ]


def run(
    workdir: str | Path,
    steps: int = 3,
    entry: str = "verl",
    extra: list[str] | None = None,
    log_path: str | Path | None = None,
    timeout_s: float | None = None,
    samples_per_prompt: int = 4,
    data: str = "sample",
) -> subprocess.CompletedProcess:
    """Build assets, serve the RM, run the trainer; the trainer's output goes to ``log_path``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    assets = build_assets(workdir, data=data)
    log_path = Path(log_path or workdir / "trainer.log")
    with serve_reward_model(assets.reward_model, workdir / "reward_model_server.log") as rm_url:
        command = trainer_command(
            entry,
            cpu_overrides(assets, rm_url, workdir, steps, samples_per_prompt=samples_per_prompt) + list(extra or []),
        )
        with open(log_path, "w") as log:
            return subprocess.run(
                command, env=cpu_env(workdir), stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--entry", choices=["verl", "recipe"], default="verl")
    parser.add_argument("--data", choices=DATA_SETS, default="sample", help="which tiny data set to train on")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = parser.parse_intermixed_args()
    result = run(args.workdir, args.steps, args.entry, args.overrides, data=args.data)
    print(f"trainer exited with {result.returncode}; log: {Path(args.workdir) / 'trainer.log'}")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
