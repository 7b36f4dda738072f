"""Everything a small training run needs besides verl: tiny assets, a reward-model server, the
environment and the Hydra overrides. Used by the end-to-end test, ``make demo`` and
``make experiment`` (``recipe.rlmr.experiment``).

    python -m recipe.rlmr.dev.launch WORKDIR [--steps 3] [--entry verl|recipe] [--data sample|word_limit]
                                     [--device cpu|cuda] [--rm tiny|length|scaled|RM_DIR] [--policy DIR]
                                     [--ray-address HOST:PORT --nnodes N] [overrides...]

builds the tiny policy, reward model and sample data under WORKDIR, serves the reward model on
a loopback port (``python -m rewards.serve_rm``, at the input length the RM was trained with, which the
client's ``writing_rm.max_input_tokens`` is set to as well; ``--rm RM_DIR``: a trained RM folder;
``--rm length``: the scripted length-biased RM of
``recipe.rlmr.dev.servers.reward``), and runs

    VERL_PLATFORM=cpu python -m verl.trainer.main_ppo \\
        --config-path <recipe/rlmr/config> --config-name rlmr_trainer  <cpu_overrides(...)>

(``--entry recipe`` runs ``python -m recipe.rlmr.main_rlmr`` instead). The overrides are the
ones a CPU machine needs (device, fake GPU slots for Ray's placement, FSDP2, the ``hf`` rollout,
one agent-loop and one reward worker) plus a small problem size: 4 prompts x 4 samples, 48
response tokens.

``--ray-address`` trains on a running Ray cluster of ``--nnodes`` nodes (``recipe.rlmr.dev.ray_cluster``
starts one on this machine) with the trainer's environment carried to every node in the job's
runtime environment; a cluster with token authentication needs ``RAY_AUTH_MODE=token`` and the token.

``--device cuda`` runs verl's own CUDA platform instead (no ``VERL_PLATFORM``, ``trainer.device=cuda``,
the machine's real GPUs counted by Ray, NCCL); the ``hf`` rollout and the rest stay the same.
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
LENGTH_RM_NAME = "length-rm"
DEVICES = ("cpu", "cuda")
# tiny: the tiny Qwen2 reward model served by rewards.serve_rm (random scores, the real serving path);
# length: recipe.rlmr.dev.servers.reward.LengthBiasedRM, score = characters / 100 (a deliberately length-biased RM)
# scaled: recipe.rlmr.dev.servers.reward.CategoryScaledRM, length's score x the prompt category's scale (0.2, 1, 5)
# or a folder: a trained writing RM (rewards.train_rm's output) served by rewards.serve_rm at its trained length
REWARD_MODELS = ("tiny", "length", "scaled")
RM_MAX_LENGTH = 4096  # rewards.serve_rm's and train_rm's default; a trained folder records its own


def is_rm_folder(reward_model: str | Path) -> bool:
    """A reward model given as a folder (a trained RM) rather than one of ``REWARD_MODELS``."""
    return str(reward_model) not in REWARD_MODELS and (Path(reward_model) / "config.json").exists()


def rm_max_length(model_dir: str | Path) -> int:
    """The input length a trained RM was trained at (``rm_training.json``), else serve_rm's default:
    the trainer, the server (``--max-length``) and the client (``writing_rm.max_input_tokens``) all use it."""
    import json

    meta = Path(model_dir) / "rm_training.json"
    if meta.is_file():
        return int(json.loads(meta.read_text()).get("max_input_tokens") or RM_MAX_LENGTH)
    return RM_MAX_LENGTH


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


DATA_SETS = ("sample", "word_limit", "word_limit_categories")
WORD_LIMIT_DATA = ("word_limit", "word_limit_categories")


def build_assets(
    workdir: str | Path,
    seed: int = 0,
    data: str = "sample",
    word_limit: int | None = None,
    policy: str | Path | None = None,
) -> TinyAssets:
    """Tiny policy, reward model and a data set under ``workdir`` (reused if present).

    ``data``: ``sample`` (the sample prompts with augmented constraints) or ``word_limit`` (one
    "fewer than N words" limit per prompt, which the untrained tiny policy breaks about half the time;
    ``word_limit`` sets N, default ``sample_data.WORD_LIMIT_TINY``, and a non-default N gets its own folder)
    or ``word_limit_categories`` (the same, each prompt marked with a ``CATEGORY_SCALES`` category).
    ``policy``: a model folder to train instead of the tiny policy (which is then not built).
    ``data`` may also be a folder holding a prepared ``train.parquet`` and ``val.parquet`` (``data_prep
    convert``'s output, the pipeline's prompts), used as it is.
    """
    from recipe.rlmr.dev import sample_data, tiny_assets

    prepared = data not in DATA_SETS and Path(data).is_dir()
    if data not in DATA_SETS and not prepared:
        raise ValueError(f"data must be one of {DATA_SETS} or a folder with train.parquet, got {data!r}")
    if word_limit is not None and data not in WORD_LIMIT_DATA:
        raise ValueError(f"word_limit={word_limit} only applies to data='word_limit', not {data!r}")
    workdir = Path(workdir)
    limit = word_limit or sample_data.WORD_LIMIT_TINY
    data_dir = workdir / (f"data_{data}" if limit == sample_data.WORD_LIMIT_TINY else f"data_{data}_{limit}")
    if prepared:
        data_dir = Path(data)
        if not (data_dir / "train.parquet").exists() or not (data_dir / "val.parquet").exists():
            raise FileNotFoundError(f"data folder {data_dir} lacks train.parquet or val.parquet (data_prep convert)")
    assets = TinyAssets(Path(policy) if policy else workdir / "policy", workdir / "reward_model", data_dir)
    if policy is None and not (assets.policy / "config.json").exists():
        tiny_assets.build_policy_model(assets.policy, seed=seed)
    if policy is not None and not (assets.policy / "config.json").exists():
        raise FileNotFoundError(f"policy folder {assets.policy} has no config.json (expected a Hugging Face model)")
    if not (assets.reward_model / "config.json").exists():
        tiny_assets.build_reward_model(assets.reward_model, seed=seed + 1)
    if not assets.train_files.exists():
        if data in WORD_LIMIT_DATA:
            from recipe.rlmr.dev.servers.reward import CATEGORY_SCALES

            categories = list(CATEGORY_SCALES) if data == "word_limit_categories" else ()
            sample_data.build_word_limit(assets.data, num_words=limit, seed=seed, categories=categories)
        else:
            sample_data.build(assets.data, seed=seed)
    return assets


@contextlib.contextmanager
def serve_reward_model(model_dir: str | Path, log_path: str | Path | None = None, max_length: int | None = None):
    """``python -m rewards.serve_rm`` for ``model_dir`` on a free loopback port; yields its URL."""
    from recipe.rlmr.dev.servers.base import serve_in_subprocess

    max_length = max_length or rm_max_length(model_dir)
    with serve_in_subprocess(model_dir, served_model_name=RM_NAME, log_path=log_path, max_length=max_length) as port:
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def serve_length_rm():
    """``recipe.rlmr.dev.servers.reward.LengthBiasedRM`` (vLLM ``/classify``, score = characters / 100) on a
    free loopback port, in a thread of this process; yields its URL. It stands in for a length-biased writing RM."""
    from recipe.rlmr.dev.servers.reward import LengthBiasedRM

    with LengthBiasedRM() as server:
        yield server.url


@contextlib.contextmanager
def serve_scaled_rm():
    """``recipe.rlmr.dev.servers.reward.CategoryScaledRM`` (the length-biased score times the prompt
    category's scale) on a free loopback port, in a thread of this process; yields its URL."""
    from recipe.rlmr.dev.servers.reward import CategoryScaledRM

    with CategoryScaledRM() as server:
        yield server.url


def trainer_env(workdir: str | Path, device: str = "cpu") -> dict[str, str]:
    """Environment for the trainer process (Ray's workers inherit it); ``cpu`` switches the CPU backend on."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    workdir = Path(workdir)
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # always a private local Ray
    if device == "cpu":
        env["VERL_PLATFORM"] = "cpu"  # switches the CPU backend on (recipe.rlmr.cpu)
    else:
        env.pop("VERL_PLATFORM", None)  # verl's own CUDA platform
    env.update(
        TENSORBOARD_DIR=str(workdir / "tensorboard"),
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
        RAY_DEDUP_LOGS="0",
        HYDRA_FULL_ERROR="1",
    )
    return env


def cpu_env(workdir: str | Path) -> dict[str, str]:
    """``trainer_env`` for the CPU backend."""
    return trainer_env(workdir, "cpu")


def gpus_per_node(device: str, num_gpus: int | None = None) -> int:
    """The devices each node trains on: one (fake) slot on ``cpu``; on ``cuda`` ``num_gpus``, by default
    every GPU torch sees here (at least one)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return 1
    if num_gpus is None:
        import torch

        num_gpus = torch.cuda.device_count()
    if num_gpus < 1:
        raise RuntimeError("device=cuda but torch sees no CUDA GPU (torch.cuda.device_count() == 0)")
    return num_gpus


def device_overrides(
    device: str = "cpu", num_gpus: int | None = None, ray_address: str | None = None, nnodes: int = 1
) -> list[str]:
    """The machine part of the overrides.

    ``cpu``: Ray's placement counts GPU slots, so declare one fake slot; the CPU does the work.
    ``cuda``: verl's real CUDA platform on this node's ``num_gpus`` GPUs (default: all torch sees),
    which Ray detects itself; no fake slot.
    ``ray_address``: join a running Ray cluster of ``nnodes`` nodes (``ray start``; on CPU each node
    declares its fake GPU slot itself, ``recipe.rlmr.dev.ray_cluster``) instead of starting a private
    one: Ray refuses resource counts from a driver that joins, so none are passed.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if ray_address is None and nnodes != 1:
        raise ValueError(f"nnodes={nnodes} needs a running multi-node cluster: pass its ray_address")
    if ray_address is not None:
        per_node = 1 if device == "cpu" else num_gpus
        if per_node is None:
            raise ValueError("device=cuda with ray_address: pass num_gpus, the GPUs of each node")
        return [
            f"trainer.device={device}",
            f"trainer.n_gpus_per_node={per_node}",
            f"trainer.nnodes={nnodes}",
            "ray_kwargs.ray_init.num_cpus=null",
            f"+ray_kwargs.ray_init.address={ray_address}",
        ]
    if device == "cpu":
        return [
            "trainer.device=cpu",
            "trainer.n_gpus_per_node=1",
            "trainer.nnodes=1",
            "ray_kwargs.ray_init.num_cpus=8",  # scheduling slots, not cores (4 stalls worker creation)
            "+ray_kwargs.ray_init.num_gpus=1",
        ]
    num_gpus = gpus_per_node(device, num_gpus)
    return [
        "trainer.device=cuda",
        f"trainer.n_gpus_per_node={num_gpus}",
        "trainer.nnodes=1",
        f"ray_kwargs.ray_init.num_cpus={max(8, os.cpu_count() or 1)}",
    ]


# What the trainer's processes must see wherever Ray places them. A private Ray inherits them from the
# launcher; on a running cluster a worker inherits its raylet's environment, so they travel in the job's
# runtime environment instead (with the plugin named, for nodes where it is not an installed entry point).
RUNTIME_ENV_VARS = ("VERL_PLATFORM", "TENSORBOARD_DIR", "TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS")
PLUGIN_MODULE = "recipe.rlmr.plugin"


def runtime_env_overrides(env: dict[str, str]) -> list[str]:
    """``+ray_kwargs.ray_init.runtime_env.env_vars.*`` carrying ``RUNTIME_ENV_VARS`` from ``env`` and
    ``VERL_USE_EXTERNAL_MODULES`` (the plugin) to every process of the job, on every node."""
    carried = {key: env[key] for key in RUNTIME_ENV_VARS if key in env}
    carried["VERL_USE_EXTERNAL_MODULES"] = PLUGIN_MODULE
    # quoted: Ray takes only strings, and Hydra would read false or 1 as a bool or an int
    bad = {key: value for key, value in carried.items() if "'" in value or "\\" in value}
    if bad:
        raise ValueError(f"cannot carry values with quotes or backslashes through a Hydra override: {bad}")
    return [f"+ray_kwargs.ray_init.runtime_env.env_vars.{key}='{value}'" for key, value in carried.items()]


def cpu_overrides(
    assets: TinyAssets,
    rm_url: str,
    workdir: str | Path,
    steps: int = 3,
    prompts_per_step: int = 4,
    samples_per_prompt: int = 4,
    response_length: int = 48,
    device: str = "cpu",
    num_gpus: int | None = None,
    lr: float = 1e-4,
    reward_model: str = "tiny",
    ray_address: str | None = None,
    nnodes: int = 1,
) -> list[str]:
    """Hydra overrides (on ``rlmr_trainer``) for an RLMR run with tiny assets, on the CPU backend by
    default (``device="cuda"``: verl's CUDA platform, see ``device_overrides``)."""
    trained_rm = is_rm_folder(reward_model)
    if reward_model not in REWARD_MODELS and not trained_rm:
        raise ValueError(f"reward_model must be one of {REWARD_MODELS} or a model folder, got {reward_model!r}")
    workdir = Path(workdir)
    rollout_batch = prompts_per_step * samples_per_prompt
    num_gpus = gpus_per_node(device, num_gpus)
    world_size = nnodes * num_gpus  # FSDP ranks: each gets its share
    if rollout_batch % world_size:
        raise ValueError(f"{rollout_batch} responses per step do not split over {world_size} FSDP ranks")
    per_rank = rollout_batch // world_size  # one micro-batch per rank
    # the length RM reads only characters; the policy's own tokenizer formats its input
    rm_name, rm_tokenizer = (RM_NAME, assets.reward_model)
    if reward_model in ("length", "scaled"):
        rm_name, rm_tokenizer = LENGTH_RM_NAME, assets.policy
    if trained_rm:
        rm_tokenizer = Path(reward_model)
    rm_length = rm_max_length(rm_tokenizer if trained_rm else assets.reward_model)
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
        f"actor_rollout_ref.actor.optim.lr={lr}",  # default 1e-4: a tiny random model needs a visible step size
        # fp32 compute (verl's FSDP default is bf16 params): CPUs gain nothing from bf16, and the
        # rollout (fp32) and the actor then agree on log-probs to ~1e-6, not ~1e-2
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32",
        "+actor_rollout_ref.ref.fsdp_config.mixed_precision.param_dtype=fp32",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={prompts_per_step}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={per_rank}",
        "actor_rollout_ref.actor.use_kl_loss=false",
        "actor_rollout_ref.actor.use_dynamic_bsz=false",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={per_rank}",
        # the rollout: transformers generate behind verl's replica interface (recipe.rlmr.rollout.hf), on the
        # worker's GPU when it has one
        "actor_rollout_ref.rollout.name=hf",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        f"actor_rollout_ref.rollout.n={samples_per_prompt}",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.rollout.calculate_log_probs=true",
        # the reward: RLMR's manager, the served tiny RM, rule-checked constraints (no judge)
        f"reward.rlmr.writing_rm.url={rm_url}",
        f"reward.rlmr.writing_rm.model={rm_name}",
        f"reward.rlmr.writing_rm.tokenizer={rm_tokenizer}",
        f"reward.rlmr.writing_rm.max_input_tokens={rm_length}",  # what the served RM takes (serve_reward_model)
        "reward.num_workers=1",
        # poll the replay buffer often, filter on or off (a CPU step is short; verl polls every 2 s)
        "algorithm.rlmr.replay_poll_interval_s=0.2",
        # the machine (device_overrides)
        *device_overrides(device, num_gpus, ray_address, nnodes),
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
    device: str = "cpu",
    reward_model: str = "tiny",
    policy: str | Path | None = None,
    assets_dir: str | Path | None = None,
    word_limit: int | None = None,
    prompts_per_step: int = 4,
    response_length: int = 48,
    lr: float = 1e-4,
    ray_address: str | None = None,
    nnodes: int = 1,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Build assets, serve the RM, run the trainer; the trainer's output goes to ``log_path``.

    ``assets_dir`` (default ``workdir``) holds the built models and data, so several runs can share
    them; ``workdir`` gets the run's logs, tensorboard and checkpoints. ``extra`` overrides come last
    and win. ``ray_address``: train on that running cluster of ``nnodes`` nodes (``device_overrides``),
    the trainer's environment carried to every node (``runtime_env_overrides``). ``env``: added to the
    trainer's environment (a cluster's ``driver_env()``, say).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    assets = build_assets(assets_dir or workdir, data=data, word_limit=word_limit, policy=policy)
    log_path = Path(log_path or workdir / "trainer.log")
    if reward_model == "length":
        server = serve_length_rm()
    elif reward_model == "scaled":
        server = serve_scaled_rm()
    elif is_rm_folder(reward_model):
        server = serve_reward_model(reward_model, workdir / "reward_model_server.log")
    else:
        server = serve_reward_model(assets.reward_model, workdir / "reward_model_server.log")
    with server as rm_url:
        overrides = cpu_overrides(
            assets,
            rm_url,
            workdir,
            steps,
            prompts_per_step=prompts_per_step,
            samples_per_prompt=samples_per_prompt,
            response_length=response_length,
            device=device,
            lr=lr,
            reward_model=reward_model,
            ray_address=ray_address,
            nnodes=nnodes,
        )
        env = {**trainer_env(workdir, device), **(env or {})}
        if ray_address is not None:
            overrides += runtime_env_overrides(env)
        command = trainer_command(entry, overrides + list(extra or []))
        with open(log_path, "w") as log:
            return subprocess.run(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--entry", choices=["verl", "recipe"], default="verl")
    parser.add_argument(
        "--data", default="sample", help=f"one of {DATA_SETS}, or a folder with train.parquet and val.parquet"
    )
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="cpu: the CPU backend; cuda: verl's own")
    parser.add_argument(
        "--rm", default="tiny", help="tiny: served tiny RM; length: chars/100; scaled; or a trained RM folder"
    )
    parser.add_argument("--policy", default=None, help="a model folder to train instead of the tiny policy")
    parser.add_argument(
        "--ray-address",
        default=None,
        help="host:port of a running Ray cluster to train on (default: a private local Ray); with --nnodes",
    )
    parser.add_argument("--nnodes", type=int, default=1, help="the running cluster's nodes (with --ray-address)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = parser.parse_intermixed_args()
    result = run(
        args.workdir,
        args.steps,
        args.entry,
        args.overrides,
        data=args.data,
        device=args.device,
        reward_model=args.rm,
        policy=args.policy,
        ray_address=args.ray_address,
        nnodes=args.nnodes,
    )
    print(f"trainer exited with {result.returncode}; log: {Path(args.workdir) / 'trainer.log'}")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
