"""``reward.rlmr``: the settings of the `rlmr` reward manager, declared once.

Every field has its default and a one-line description here; the yaml
(``recipe/rlmr/config/rlmr_trainer.yaml``) and ``docs/config.md`` are checked against, or
generated from, these models. Unknown keys are refused with the closest valid name.

``StrictConfig`` and ``load_section`` are the shared machinery: the recipe's ``algorithm.rlmr``
schema (``recipe/rlmr/schema.py``) uses them too.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

M = TypeVar("M", bound="StrictConfig")


class ConfigError(ValueError):
    """A config section that does not fit its schema; the message names each bad key."""


class StrictConfig(BaseModel):
    """A config section: typed, documented fields; unknown keys refused; immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _model_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The nested model class found by following ``path`` (field names) from ``model``."""
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def describe_errors(err: ValidationError, model: type[BaseModel], section: str) -> str:
    """One line per problem: the full dotted key, what is wrong, and for an unknown key the closest name."""
    lines = []
    for error in err.errors():
        loc = tuple(error["loc"])
        key = ".".join([section, *map(str, loc)])
        if error["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            known = list(parent.model_fields) if parent is not None else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"valid keys: {', '.join(known)}"
            lines.append(f"{key}: unknown key; {hint}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            lines.append(
                f"{key}: {message}" if error["type"] == "missing" else f"{key}: {message} (got {error.get('input')!r})"
            )
    return "\n".join(lines)


def load_section(model: type[M], raw: Any, section: str) -> M:
    """Build ``model`` from a config section (DictConfig, dict or None); ConfigError naming each bad key."""
    if raw is None:
        raw = {}
    elif not isinstance(raw, Mapping) or type(raw).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        if OmegaConf.is_config(raw):
            raw = OmegaConf.to_container(raw, resolve=True)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{section}: expected a mapping of settings, got {raw!r}")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as err:
        raise ConfigError(f"invalid {section} config:\n{describe_errors(err, model, section)}") from None


class BackendConfig(StrictConfig):
    """What both HTTP backends take: where they are and how hard to try."""

    url: str | None = Field(None, description="Base URL of the server (http://host:port).")
    model: str | None = Field(None, description="Model name sent with each request (vLLM: the served model name).")
    timeout_s: float = Field(60.0, gt=0, description="Seconds per HTTP attempt.")
    max_concurrency: int = Field(
        32,
        ge=1,
        description="Requests in flight at once (and pooled connections), per reward worker: verl runs "
        "reward.num_workers of them, so the server sees up to that many times this.",
    )
    max_retries: int = Field(
        3,
        ge=0,
        description="Retries after the first attempt, on connection errors, timeouts, 429, 5xx, malformed answers.",
    )
    backoff_s: float = Field(0.5, ge=0, description="First backoff in seconds (exponential with jitter).")
    backoff_max_s: float = Field(10.0, ge=0, description="Cap of the exponential backoff, in seconds (before jitter).")


class WritingRMConfig(BackendConfig):
    """``reward.rlmr.writing_rm``: the served writing reward model (a discriminative Bradley-Terry RM)."""

    url: str | None = Field(
        None,
        description="Base URL of an external RM server (http://host:port). null: the RM verl serves "
        "(reward.reward_model.enable=True), reached through verl's reward router.",
    )
    model: str | None = Field(
        None,
        description="Model name sent with each request (vLLM: the served model name). null with verl's RM: its path.",
    )
    backend: Literal["vllm_classify", "vllm_pooling", "sglang"] | None = Field(
        None,
        description="vllm_classify (POST /classify), vllm_pooling (POST /pooling) or sglang (POST /v1/embeddings). "
        "null: vllm_classify, or as verl's reward_model.rollout.name says when verl serves the RM.",
    )
    tokenizer: str | None = Field(
        None, description="Local path of the RM's tokenizer (its chat template formats the pair). Required with url."
    )
    max_input_tokens: int = Field(16384, ge=16, description="Longer inputs keep their last tokens.")
    micro_batch_size: int = Field(16, ge=1, description="Texts sent together in one request (the APIs take lists).")
    micro_batch_wait_ms: float = Field(
        2.0, ge=0, description="How long a text waits for company before its micro-batch is sent."
    )


class JudgeConfig(BackendConfig):
    """``reward.rlmr.judge``: the generative judge for free-text constraints (OpenAI-compatible chat)."""

    url: str | None = Field(
        None,
        description="Server root (http://host:port; a /v1 suffix is accepted), serving /v1/chat/completions. "
        "null: no judge; prompts with free-text constraints then give reward_valid=0.",
    )
    model: str | None = Field(None, description="Model name sent with each request.")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding an API key, if the endpoint needs one."
    )
    timeout_s: float = Field(
        120.0, gt=0, description="Seconds per HTTP attempt (a judge writes its verdict: slower than a score)."
    )
    max_concurrency: int = Field(
        64, ge=1, description="Requests in flight at once, per reward worker (see writing_rm.max_concurrency)."
    )
    votes: int = Field(
        1,
        ge=1,
        description="Answers per sample; each constraint takes the majority. >1 only makes sense with temperature > 0.",
    )
    temperature: float = Field(0.0, ge=0, description="Sampling temperature of the judge.")
    max_tokens: int = Field(1024, ge=16, description="Completion token limit of a verdict.")


class PreflightConfig(StrictConfig):
    """``reward.rlmr.preflight``: probe every configured reward endpoint before any model weight loads."""

    enable: bool = Field(
        True,
        description="Before any worker starts, score one tiny sample with the writing RM (its tokenizer loaded) "
        "and ask the judge for one verdict, with the clients training uses; a failure stops the run naming "
        "the endpoint and the error. An RM that verl serves is not probed (it does not exist yet).",
    )
    timeout_s: float = Field(
        60.0,
        gt=0,
        description="Seconds each endpoint's probe may take, retries included (connection refused, 4xx and wrong "
        "answers fail sooner; only a hanging endpoint takes this long).",
    )


class FailureBudgetConfig(StrictConfig):
    """``reward.rlmr.failure_budget``: stop a run whose rewards keep failing instead of training on nothing."""

    enable: bool = Field(True, description="Check every training step's share of failed rewards.")
    max_invalid_fraction: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="A step fails when more than this fraction of the trajectories scored for it (trained on, "
        "dropped by the group filter, or discarded as surplus) have reward_valid = 0.",
    )
    consecutive_steps: int = Field(
        3,
        ge=1,
        description="The run stops with an error naming the failing backends after this many failing steps in a "
        "row; a step within the budget resets the count.",
    )


class RewardConfig(StrictConfig):
    """``reward.rlmr``: the `rlmr` reward manager (writing score + all-or-nothing constraint verdict)."""

    writing_rm: WritingRMConfig = Field(default_factory=WritingRMConfig, description="The served writing reward model.")
    judge: JudgeConfig = Field(
        default_factory=JudgeConfig, description="The generative judge for free-text constraints."
    )
    short_circuit: bool = Field(
        True, description="Skip the judge when a deterministic check already failed (the verdict is all-or-nothing)."
    )
    sample_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Upper bound in seconds for one sample's whole reward; past it the sample is reward_valid=0.",
    )
    overlap_backends: bool = Field(
        True,
        description="Ask the writing RM and the verifier at the same time (true) or one after the other "
        "(false, for measurement and debugging only).",
    )

    preflight: PreflightConfig = Field(
        default_factory=PreflightConfig, description="Probe the reward endpoints before any weight loads."
    )
    failure_budget: FailureBudgetConfig = Field(
        default_factory=FailureBudgetConfig, description="Stop the run when rewards keep failing."
    )

    @classmethod
    def from_verl(cls, config: Any) -> RewardConfig:
        """From verl's whole config (its ``reward.rlmr`` section; absent means all defaults)."""
        reward = config.get("reward", None) if config is not None else None
        return load_section(cls, reward.get("rlmr", None) if reward is not None else None, "reward.rlmr")


def uses_rlmr_rewards(config: Any) -> bool:
    """Whether ``config`` (verl's whole config) scores with the `rlmr` reward manager (registered by name)."""
    reward = config.get("reward", None) if config is not None else None
    manager = reward.get("reward_manager", None) if reward is not None else None
    if manager is None or manager.get("source", "register") != "register":
        return False
    return manager.get("name", None) == "rlmr"


def verl_serves_rm(config: Any) -> bool:
    """Whether verl serves the reward model itself (``reward.reward_model.enable``)."""
    reward = config.get("reward", None) if config is not None else None
    reward_model = reward.get("reward_model", None) if reward is not None else None
    return bool(reward_model is not None and reward_model.get("enable", False))


def writing_rm_problems(settings: RewardConfig, verl_serves: bool) -> list[str]:
    """What is missing for the `rlmr` manager to reach a writing RM; one message per broken rule."""
    rm = settings.writing_rm
    problems = []
    if rm.url:
        if rm.tokenizer is None:
            problems.append(
                "reward.rlmr.writing_rm.tokenizer must name the reward model's tokenizer (its chat template)"
            )
        if rm.model is None:
            problems.append("reward.rlmr.writing_rm.model must name the served reward model")
    elif not verl_serves:
        problems.append(
            "no writing reward model: set reward.rlmr.writing_rm.url (+ model, tokenizer) for an external server, "
            "or reward.reward_model.enable=True for one served by verl"
        )
    return problems


def reward_rules(config: Any) -> list[str]:
    """The cross-section rules of ``reward.rlmr`` on verl's whole config (only with the `rlmr` manager):
    what the reward manager would refuse once the workers are up. ``recipe.rlmr.config_check`` runs them
    with every other rule; the manager and the preflight use ``writing_rm_problems`` directly."""
    if not uses_rlmr_rewards(config):
        return []
    return writing_rm_problems(RewardConfig.from_verl(config), verl_serves_rm(config))
