"""How the per-sample constraint verdict reaches the RLMR estimator inside verl.

verl 0.9.1 calls a registered advantage estimator with ``token_level_rewards``,
``response_mask``, ``index`` and ``config`` only. The verdict ``constraints_ok`` that the reward
manager returns lives in each trajectory's ``extra_fields["reward_extra_info"]`` in
TransferQueue, which the trainer's advantage step does not read.

So the RLMR trainer hook (``recipe.rlmr.trainer``) reads the verdicts for the batch it is about
to score, and *supplies* them for the duration of that one advantage step; ``rlmr_estimator``,
the function registered with verl as ``rlmr``, takes them from there. The supply is a
``ContextVar`` scoped by a ``with`` block: nothing outlives the step, and an estimator call
without a supply (a trainer that is not RLMR-aware) fails loudly instead of silently
degrading to GRPO.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from recipe.rlmr.advantage import compute_rlmr_outcome_advantage
from recipe.rlmr.metrics import advantage_metrics
from recipe.rlmr.schema import RLMRConfig
from rewards.reward_info import CONSTRAINTS_OK, REWARD_VALID, VERDICT_PROVIDER, MissingVerdictError

# Estimator names whose advantage step needs the verdicts.
VERDICT_ESTIMATORS = frozenset({"rlmr"})


@dataclass
class AdvantageStep:
    """What the trainer hook hands to the estimator for one advantage step, and gets back."""

    constraints_ok: np.ndarray  # [B] bool, aligned with the rows the trainer will score
    reward_valid: np.ndarray | None = None  # [B] bool; groups with an invalid reward get zero advantages
    metrics: dict[str, float] = field(default_factory=dict)  # filled by the estimator


_current_step: ContextVar[AdvantageStep | None] = ContextVar("rlmr_advantage_step", default=None)


@contextmanager
def supply_verdicts(constraints_ok: np.ndarray, reward_valid: np.ndarray | None = None) -> Iterator[AdvantageStep]:
    """Make the verdicts available to ``rlmr_estimator`` inside the ``with`` block."""
    step = AdvantageStep(
        constraints_ok=np.asarray(constraints_ok, dtype=bool),
        reward_valid=None if reward_valid is None else np.asarray(reward_valid, dtype=bool),
    )
    token = _current_step.set(step)
    try:
        yield step
    finally:
        _current_step.reset(token)


def needs_verdicts(adv_estimator: Any) -> bool:
    name = getattr(adv_estimator, "value", adv_estimator)
    return str(name) in VERDICT_ESTIMATORS


def verdicts_from_extra_infos(
    reward_extra_infos: Sequence[Mapping[str, Any] | None], keys: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """([B] constraints_ok, [B] reward_valid) from each trajectory's ``reward_extra_info``.

    Raises MissingVerdictError if any lacks ``constraints_ok`` or holds a non-binary flag;
    ``keys`` name the trajectories (TransferQueue keys) so the error can say which ones.
    """
    verdicts = np.zeros(len(keys), dtype=bool)
    valid = np.ones(len(keys), dtype=bool)
    missing, malformed = [], []
    for row, (key, info) in enumerate(zip(keys, reward_extra_infos, strict=True)):
        if not isinstance(info, Mapping) or CONSTRAINTS_OK not in info:
            missing.append(key)
            continue
        for flags, name in ((verdicts, CONSTRAINTS_OK), (valid, REWARD_VALID)):
            value = info.get(name, True)
            if isinstance(value, (bool, np.bool_)) or value in (0, 1):
                flags[row] = bool(value)
            else:
                malformed.append(f"{key}: {name}={value!r}")
    if missing:
        present = sorted(reward_extra_infos[0].keys()) if isinstance(reward_extra_infos[0], Mapping) else []
        raise MissingVerdictError(
            f"algorithm.adv_estimator=rlmr needs reward_extra_info[{CONSTRAINTS_OK!r}] for every trajectory, "
            f"but {len(missing)} of {len(keys)} lack it (first: {missing[:3]}; keys present: {present}). "
            f"It is provided by {VERDICT_PROVIDER}; a custom reward manager must return it too."
        )
    if malformed:
        raise MissingVerdictError(
            f"reward_extra_info flags {CONSTRAINTS_OK!r} and {REWARD_VALID!r} must be bool or 0/1, got {malformed[:3]}"
        )
    return verdicts, valid


def rlmr_estimator(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any = None,
    config: Any = None,
    constraints_ok: Any = None,
    reward_valid: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The estimator registered with verl as ``rlmr``: verdicts from the trainer hook, then the math."""
    step = _current_step.get()
    if constraints_ok is None:
        if step is None:
            raise MissingVerdictError(
                "algorithm.adv_estimator=rlmr was called without constraint verdicts. The trainer running it is "
                "not RLMR-aware: use verl's V1 trainer (trainer.use_v1=true, modes sync/colocate_async/"
                "separate_async, which verl-rlmr extends when it is installed or listed in "
                "VERL_USE_EXTERNAL_MODULES), or mix recipe.rlmr.trainer.RLMRAdvantageMixin into a custom trainer. "
                "The legacy trainer (trainer.use_v1=false) is not supported. "
                f"The verdicts themselves come from {VERDICT_PROVIDER}."
            )
        constraints_ok, reward_valid = step.constraints_ok, step.reward_valid
    if index is None:
        raise MissingVerdictError("algorithm.adv_estimator=rlmr needs the group ids (`uid`) of the batch")
    # verl passes only ``config`` (the algorithm section) to registered estimators.
    settings = RLMRConfig.from_algorithm(config)
    norm_adv_by_std_in_grpo = bool(config.get("norm_adv_by_std_in_grpo", True)) if config is not None else True
    advantages, returns = compute_rlmr_outcome_advantage(
        token_level_rewards, response_mask, index, constraints_ok, settings, norm_adv_by_std_in_grpo, reward_valid
    )
    if step is not None:
        step.metrics.update(
            advantage_metrics(
                token_level_rewards,
                advantages,
                response_mask,
                constraints_ok,
                index,
                settings.gamma,
                reward_valid,
                settings.gamma_mode,
            )
        )
    return advantages, returns
