"""The recipe's config: it composes on verl's ppo_trainer, validates as shipped, agrees with the
schemas it is read through, and refuses typos and bad values in every section and entry point."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import get_adv_estimator_fn
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config

import recipe.rlmr
from recipe.rlmr import dry_run
from recipe.rlmr.dev import gen_docs
from recipe.rlmr.dry_run import compose_recipe
from recipe.rlmr.schema import ConfigError, RLMRConfig, check_sections
from rewards import reward_info
from rewards.config import RewardConfig

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = Path(recipe.rlmr.__file__).parent / "config"

# Everything a user must supply: the model, the data, where the writing RM is, micro-batch sizes.
USER_KEYS = [
    "actor_rollout_ref.model.path=/models/policy",
    "data.train_files=/data/train.parquet",
    "data.val_files=/data/val.parquet",
    "reward.rlmr.writing_rm.url=http://rm-host:8000",
    "reward.rlmr.writing_rm.model=writing-rm",
    "reward.rlmr.writing_rm.tokenizer=/models/writing-rm",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
]


def compose_rlmr(overrides=()):
    return compose_recipe(list(overrides))


def validate(config):
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


def test_the_shipped_config_validates_with_only_the_keys_a_user_must_supply():
    """verl's validate_config, verl's rollout dataclass and the recipe's own checks, nothing else overridden."""
    config = dry_run.check(USER_KEYS)
    assert config.actor_rollout_ref.actor.ppo_mini_batch_size == 32  # divides the paper's 128 prompts
    assert config.data.train_batch_size % config.actor_rollout_ref.actor.ppo_mini_batch_size == 0


@pytest.mark.parametrize(
    "missing, error, message",
    [
        ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", InstantiationException, "actor.ppo_micro_batch_size"),
        ("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu", ValueError, "rollout.log_prob_micro_batch"),
        ("reward.rlmr.writing_rm.url", ValueError, "no writing reward model"),
    ],
    ids=["actor", "rollout", "writing-rm"],
)
def test_each_user_key_is_really_needed(missing, error, message):
    with pytest.raises(error, match=re.escape(message)):
        dry_run.check([k for k in USER_KEYS if not k.startswith(missing + "=")])


@pytest.mark.parametrize("dropped", ["model", "tokenizer"])
def test_the_dry_run_refuses_an_rm_url_without_model_or_tokenizer_with_the_preflight_off(dropped):
    """The rule the reward manager enforces once workers are up (rewards.config.writing_rm_problems) is
    checked by the dry run too (recipe.rlmr.config_check), with no endpoint contacted."""
    keys = [k for k in USER_KEYS if not k.startswith(f"reward.rlmr.writing_rm.{dropped}=")]
    with pytest.raises(ValueError, match=f"reward.rlmr.writing_rm.{dropped} must name"):
        dry_run.check([*keys, "reward.rlmr.preflight.enable=false"])


@pytest.mark.parametrize("mode, refused", [("sync", False), ("colocate_async", False), ("separate_async", True)])
def test_the_cpu_backend_refuses_separate_async_at_launch_with_the_reason(mode, refused):
    """tests/test_trainer_modes_e2e.py runs colocate_async on CPU; separate_async needs a GPU checkpoint engine.
    Checked through ``check_config``, the one function every entry calls, so dropping the rule from it fails."""
    from recipe.rlmr.config_check import ConfigError, check_config

    config = compose_rlmr()
    for key, value in (("url", "http://127.0.0.1:9"), ("model", "rm"), ("tokenizer", "rm-tokenizer")):
        OmegaConf.update(config, f"reward.rlmr.writing_rm.{key}", value)
    OmegaConf.update(config, "trainer.v1.trainer_mode", mode)
    OmegaConf.update(config, "trainer.device", "cpu")
    if refused:
        with pytest.raises(ConfigError, match="separate_async cannot run on the CPU backend") as refusal:
            check_config(config, notice=None)
        assert "checkpoint_engine" in str(refusal.value)
    else:
        check_config(config, notice=None)
    OmegaConf.update(config, "trainer.device", "cuda")
    check_config(config, notice=None)  # on GPUs RLMR registers a trainer class for all three modes


def test_defaults_are_rlmr_and_the_paper_hyperparameters():
    config = compose_rlmr()
    assert config.algorithm.adv_estimator == "rlmr"
    assert config.algorithm.rlmr.gamma == 1.0
    assert config.algorithm.rlmr.epsilon == 1e-6
    assert config.data.train_batch_size == 128
    assert config.actor_rollout_ref.rollout.n == 8
    assert config.actor_rollout_ref.rollout.temperature == 1.0
    assert config.actor_rollout_ref.actor.optim.lr == 1e-6
    assert config.trainer.total_epochs == 1
    # verl's own defaults come through untouched
    assert config.trainer.use_v1 is True
    assert config.trainer.v1.trainer_mode == "sync"
    assert get_adv_estimator_fn(config.algorithm.adv_estimator) is not None


def test_composes_with_overrides_and_passes_verl_validation():
    config = compose_rlmr(
        USER_KEYS
        + [
            "algorithm.rlmr.gamma=0.5",
            "algorithm.norm_adv_by_std_in_grpo=false",
            "data.train_batch_size=16",
            "actor_rollout_ref.rollout.n=4",
            "actor_rollout_ref.actor.ppo_mini_batch_size=8",
            "trainer.n_gpus_per_node=8",
        ]
    )
    assert config.algorithm.rlmr.gamma == 0.5
    assert config.algorithm.norm_adv_by_std_in_grpo is False
    OmegaConf.resolve(config)
    validate(config)


def test_verl_validation_still_rejects_a_bad_batch():
    """The composed config is really validated: a batch that cannot split over the GPUs fails."""
    config = compose_rlmr(
        USER_KEYS + ["data.train_batch_size=3", "actor_rollout_ref.rollout.n=1", "trainer.n_gpus_per_node=8"]
    )
    with pytest.raises(AssertionError, match=r"real_train_batch_size \(3\) must be divisible"):
        validate(config)


# --- the yaml, the schemas and the docs agree ----------------------------------------------------


@pytest.mark.parametrize(
    "section, schema", [("algorithm.rlmr", RLMRConfig), ("reward.rlmr", RewardConfig)], ids=["algorithm", "reward"]
)
def test_the_yaml_has_exactly_the_schema_keys_and_defaults(section, schema):
    yaml_section = OmegaConf.to_container(OmegaConf.select(compose_rlmr(), section), resolve=True)
    assert yaml_section == schema().model_dump()


def test_every_schema_field_is_documented():
    def fields(model):
        for name, field in model.model_fields.items():
            yield name, field
            if hasattr(field.annotation, "model_fields"):
                yield from fields(field.annotation)

    for model in (RLMRConfig, RewardConfig):
        assert [name for name, field in fields(model) if not (field.description or "").strip()] == []


def test_the_generated_docs_are_current():
    assert gen_docs.main(["--check"]) == 0, "a generated docs page is stale: run `make docs`"
    from recipe.rlmr.pipeline import gen_docs as pipeline_docs

    assert gen_docs.main(["--check"], pages={pipeline_docs.PAGE: pipeline_docs.presets_page}) == 0, "run `make docs`"
    page = (REPO / "docs" / "config.md").read_text()
    assert "| `algorithm.rlmr.replay_poll_interval_s` | float | `2.0` |" in page
    assert "| `reward.rlmr.judge.timeout_s` | float | `120.0` |" in page


def test_reward_info_key_names_are_spelled_only_in_their_module():
    """Source files (not tests) read and write reward_extra_info through rewards/reward_info.py.

    One exception: the parquet rows' own ``extra_info.num_constraints`` (data_prep/convert.py) is part
    of the data format, not of the reward contract; it only shares the name."""
    names = "|".join(map(re.escape, reward_info.KEYS))
    pattern = re.compile(rf"""["']({names})["']""")
    offenders = []
    for path in sorted(REPO.glob("**/*.py")):
        relative = path.relative_to(REPO)
        if relative.parts[0] in ("tests", ".venv", "build") or relative == Path("rewards/reward_info.py"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if pattern.search(line) and not (relative == Path("data_prep/convert.py") and "num_constraints" in line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []


# --- typos and bad values are refused, naming the key --------------------------------------------

BAD_SETTINGS = [
    ("+algorithm.rlmr.gama=0.5", "algorithm.rlmr.gama: unknown key; did you mean gamma?"),
    ("+algorithm.rlmr.filter.hihg=3.0", "algorithm.rlmr.filter.hihg: unknown key; did you mean high?"),
    ("+reward.rlmr.writing_rm.timeout=5", "reward.rlmr.writing_rm.timeout: unknown key; did you mean timeout_s?"),
    ("+reward.rlmr.judge.vote=3", "reward.rlmr.judge.vote: unknown key; did you mean votes?"),
    ("+reward.rlmr.short_circut=false", "reward.rlmr.short_circut: unknown key; did you mean short_circuit?"),
    ("algorithm.rlmr.gamma=-1", "algorithm.rlmr.gamma: Input should be greater than or equal to 0"),
    ("algorithm.rlmr.mode=vibes", "algorithm.rlmr.mode: Input should be 'rlmr', 'writing_only'"),
    ("reward.rlmr.judge.votes=0", "reward.rlmr.judge.votes: Input should be greater than or equal to 1"),
    ("reward.rlmr.writing_rm.timeout_s=soon", "reward.rlmr.writing_rm.timeout_s: Input should be a valid number"),
    ("reward.rlmr.writing_rm.backend=triton", "reward.rlmr.writing_rm.backend: Input should be 'vllm_classify'"),
]


@pytest.mark.parametrize("override, message", BAD_SETTINGS, ids=[o.split("=")[0] for o, _ in BAD_SETTINGS])
def test_a_bad_setting_is_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_sections(compose_rlmr([override]))


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as err:
        check_sections(compose_rlmr(["+algorithm.rlmr.gama=0.5", "reward.rlmr.judge.votes=0"]))
    assert "algorithm.rlmr.gama" in str(err.value) and "reward.rlmr.judge.votes" in str(err.value)


def test_hydra_itself_refuses_a_new_key_without_plus():
    with pytest.raises(Exception, match="gama") as err:
        compose_rlmr(["algorithm.rlmr.gama=2.0"])
    assert type(err.value).__name__ == "ConfigCompositionException"


def _run(command, cwd, env=None, timeout=300):
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def test_main_rlmr_refuses_a_typo_before_starting_ray(tmp_path):
    result = _run([sys.executable, "-m", "recipe.rlmr.main_rlmr", *USER_KEYS, "+algorithm.rlmr.gama=0.5"], tmp_path)
    assert result.returncode != 0
    assert "algorithm.rlmr.gama: unknown key; did you mean gamma?" in result.stderr
    assert "ray init" not in result.stdout + result.stderr  # failed in the driver, before Ray


def test_a_launch_script_dry_run_refuses_a_typo(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, "RM_URL": "http://rm:8000", "RM_MODEL": "rm"}
    env["RM_TOKENIZER"] = "/models/rm"
    script = CONFIG_DIR.parent / "scripts" / "run_qwen3_8b.sh"
    result = _run(["bash", str(script), "+reward.rlmr.writing_rm.timeout=5"], tmp_path, env)
    assert result.returncode == 1
    assert "reward.rlmr.writing_rm.timeout: unknown key; did you mean timeout_s?" in result.stderr


# verl's own entry point: the RLMR trainer classes check both sections when the trainer is built,
# which is before any worker starts or any weight loads (the model and data paths here do not exist,
# so reaching either would fail with another error).
MAIN_PPO_CPU = [
    "actor_rollout_ref.model.path=/nonexistent/policy",
    "data.train_files=/nonexistent/train.parquet",
    "data.val_files=/nonexistent/val.parquet",
    "actor_rollout_ref.rollout.name=hf",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.actor.ppo_mini_batch_size=8",
    "data.train_batch_size=8",
    "trainer.device=cpu",
    "trainer.n_gpus_per_node=1",
    "ray_kwargs.ray_init.num_cpus=8",
    "+ray_kwargs.ray_init.num_gpus=1",
    "+ray_kwargs.ray_init.include_dashboard=false",
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "config_args, override, message",
    [
        ([], "+algorithm.rlmr.gama=0.5", "algorithm.rlmr.gama: unknown key; did you mean gamma?"),
        (
            ["--config-path", str(CONFIG_DIR), "--config-name", "rlmr_trainer"],
            "+reward.rlmr.judge.vote=3",
            "reward.rlmr.judge.vote: unknown key; did you mean votes?",
        ),
    ],
    ids=["verl-config", "recipe-config"],
)
def test_verl_main_ppo_refuses_a_typo_before_loading_weights(tmp_path, config_args, override, message):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(VERL_PLATFORM="cpu", RAY_DEDUP_LOGS="0", HYDRA_FULL_ERROR="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "verl.trainer.main_ppo", *config_args, "algorithm.adv_estimator=rlmr"]
    result = _run(command + MAIN_PPO_CPU + [override], tmp_path, env, timeout=420)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    section = ".".join(message.split(".")[:2])
    assert f"rewards.config.ConfigError: invalid {section} config" in output and message in output
    for sign_of_loading in ("FileNotFoundError", "OSError", "HFValidationError"):  # the paths were never opened
        assert sign_of_loading not in output
