"""``algorithm.rlmr``: the RLMR estimator's, group filter's and replay buffer's settings, declared once.

Read with ``RLMRConfig.from_algorithm(config.algorithm)``; an unknown key, a wrong type or an
out-of-range value raises ``ConfigError`` naming the key (and the closest valid name).
``docs/config.md`` is generated from these models (``make docs``) and the recipe yaml is tested
against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from rewards.config import ConfigError, StrictConfig, load_section

__all__ = ["MODES", "ConfigError", "FilterConfig", "RLMRConfig"]

# The paper's ablations, selectable with algorithm.rlmr.mode; all share the group normalisation:
#   rlmr           penalised writing scores r' (recipe/rlmr/advantage.py)
#   writing_only   writing scores r, verdicts ignored (the reward-hacking baseline)
#   verifier_only  the verdict alone, 1 compliant / 0 violating
#   fixed_weight   r + w * verdict, w = fixed_weight (a high-scoring violator can stay positive)
#   gdpo           GDPO (arXiv 2601.05242): each of writing score and verdict normalised within its group,
#                  weighted sum (gdpo_weights), then whitened over the batch's response tokens
Mode = Literal["rlmr", "writing_only", "verifier_only", "fixed_weight", "gdpo"]
MODES: tuple[str, ...] = Mode.__args__


class FilterConfig(StrictConfig):
    """``algorithm.rlmr.filter``: RLMR's group filter, used with algorithm.filter_groups.enable=true, .metric=rlmr."""

    high: float | None = Field(None, description="Drop groups whose writing scores are all >= high (null: off).")
    low: float | None = Field(None, description="Drop groups whose writing scores are all <= low (null: off).")
    max_dropped_groups: int | None = Field(
        None,
        ge=0,
        description="At most this many groups dropped (and resampled) per step; past it the rest are kept. "
        "null: 4 x data.train_batch_size.",
    )

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "poll_interval_s" in data:
            raise ValueError(
                "poll_interval_s moved to algorithm.rlmr.replay_poll_interval_s (it applies with the filter off too)"
            )
        return data

    @field_validator("low")
    @classmethod
    def _below_high(cls, low: float | None, info: ValidationInfo) -> float | None:
        high = info.data.get("high")  # declared first, so already validated
        if low is not None and high is not None and low >= high:
            raise ValueError(f"must be below high ({high})")
        return low

    def drop_bound(self, train_batch_size: int | None) -> int:
        """``max_dropped_groups``, with null resolved to 4 x the train batch size (prompts)."""
        if self.max_dropped_groups is not None:
            return self.max_dropped_groups
        return 4 * int(train_batch_size or 1)


class RLMRConfig(StrictConfig):
    """``algorithm.rlmr``: the RLMR advantage estimator and its baselines."""

    gamma: float = Field(
        1.0,
        ge=0,
        description="Margin by which the best-scored violator must end below the penalised group mean, in "
        "gamma_mode's units. Larger means harsher penalties and flatter writing signal among "
        "compliant answers; 0 only guarantees 'not above the mean'. 1.0 is the paper's, kept by the gamma sweep "
        "(docs/experiment.md): smaller margins traded obedience for writing signal.",
    )
    gamma_mode: Literal["absolute", "relative"] = Field(
        "absolute",
        description="Units of gamma: absolute (writing-RM units, the paper's) or relative (units of the group's "
        "compliant-score std; the whole group's std when the compliant answers do not spread, 1 when no score "
        "does). relative leaves std-normalised advantages unchanged when the RM's scores are scaled.",
    )
    epsilon: float = Field(1e-6, ge=0, description="Added to the group std before dividing (as in verl's GRPO).")
    mode: Mode = Field(
        "rlmr",
        description="rlmr, or one of the paper's baselines (same reward manager, metrics and normalisation): "
        "writing_only (writing score alone), verifier_only (verdict alone, 1/0), "
        "fixed_weight (writing score + fixed_weight x verdict), gdpo (GDPO: writing score and verdict each "
        "normalised within the group, summed with gdpo_weights, then whitened over the batch, as verl's gdpo).",
    )
    fixed_weight: float = Field(1.0, description="Weight of the verdict in mode=fixed_weight, in writing-RM units.")
    gdpo_weights: list[float] = Field(
        default_factory=lambda: [1.0, 1.0],
        min_length=2,
        max_length=2,
        description="mode=gdpo: weights of the group-normalised [writing score, verdict] before the batch "
        "whitening (verl's algorithm.gdpo_reward_weights). Equal weights are GDPO's default.",
    )
    replay_poll_interval_s: float = Field(
        2.0,
        gt=0,
        description="Seconds between the replay buffer's polls of TransferQueue for finished groups, with the "
        "group filter on or off (verl hard-codes 2.0; a step's sampling ends on a poll, so small runs want less).",
    )
    filter: FilterConfig = Field(default_factory=FilterConfig, description="RLMR's group filter.")

    @classmethod
    def from_algorithm(cls, algorithm: Any) -> RLMRConfig:
        """From verl's ``algorithm`` section (its ``rlmr`` key; absent means all defaults)."""
        section = algorithm.get("rlmr", None) if algorithm is not None else None
        return load_section(cls, section, "algorithm.rlmr")


def check_sections(config: Any) -> tuple[RLMRConfig, Any]:
    """Validate both RLMR sections of a whole verl config; ConfigError naming every bad key."""
    from rewards.config import RewardConfig

    problems, built = [], []
    for build in (
        lambda: RLMRConfig.from_algorithm(config.get("algorithm", None)),
        lambda: RewardConfig.from_verl(config),
    ):
        try:
            built.append(build())
        except ConfigError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError("\n".join(problems))
    return built[0], built[1]
