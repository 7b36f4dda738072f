"""Which finished prompt groups RLMR drops (and resamples) before training on them.

The paper filters groups DAPO-style. A group of n responses to one prompt is dropped when

- ``invalid_reward``: any response has ``reward_valid = 0`` (its score is a placeholder);
- ``all_violate``: every response violates a constraint (no compliant response to prefer);
- ``all_high`` / ``all_low``: every writing score is >= ``high`` / <= ``low`` (no useful contrast;
  both thresholds optional);
- ``no_signal``: all writing scores are equal and all verdicts are equal, so every advantage would
  be zero (a single-response group is always this, unless an earlier reason applies).

Reasons are checked in that order and the first that applies is returned. ``drop_reason`` is pure;
``recipe.rlmr.replay_buffer`` applies it inside verl's V1 replay buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DROP_REASONS = ("invalid_reward", "all_violate", "all_high", "all_low", "no_signal")


def drop_reason(
    writing_scores: Sequence[float],
    constraints_ok: Sequence[Any],
    reward_valid: Sequence[Any] | None = None,
    high: float | None = None,
    low: float | None = None,
) -> str | None:
    """``None`` to keep the group, else the first reason (see module docstring) to drop it."""
    scores = np.asarray(writing_scores, dtype=np.float64)
    ok = np.asarray(constraints_ok).astype(bool)
    if scores.shape != ok.shape or scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"a group needs matching non-empty score and verdict lists, got {scores.shape} and {ok.shape}")
    if reward_valid is not None and not np.asarray(reward_valid).astype(bool).all():
        return "invalid_reward"
    if np.isnan(scores).any():  # a NaN writing score is an invalid reward even if the flag was lost
        return "invalid_reward"
    if not ok.any():
        return "all_violate"
    if high is not None and (scores >= high).all():
        return "all_high"
    if low is not None and (scores <= low).all():
        return "all_low"
    if (scores == scores[0]).all() and (ok == ok[0]).all():
        return "no_signal"
    return None
