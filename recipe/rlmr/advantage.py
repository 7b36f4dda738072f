"""RLMR outcome advantage: GRPO whose violators are pushed below the group mean.

One group = the n responses sampled for one prompt (same ``index``/``uid``). With ``r`` the raw
writing scores, ``V`` the constraint violators and ``k = |V|``:

    k = 0      : A = GRPO(r)
    0 < k < n  : delta = max(0, (n * max_{j in V} r_j + n * gamma - sum_i r_i) / (n - k))
                 r'_i  = r_i - delta * [i in V]
                 A_i   = (r'_i - mean(r')) / (std(r') + eps)      (or r'_i - mean(r') without std)
    k = n      : A = 0 for everyone (no compliant response, so no constraint signal to learn from)
    invalid    : A = 0 for everyone in a group holding a sample whose reward failed
                 (``reward_valid = 0``) or whose score is not finite (NaN, +-inf): such a score is a
                 placeholder or an overflow, never something to learn from, and one inf would turn
                 every advantage of its group into NaN

Why this delta: mean(r') = (sum r - k * delta) / n, and asking the best-scored violator to sit
``gamma`` below that mean, ``max_V r - delta <= mean(r') - gamma``, solves to the bound above.

Margin units (``algorithm.rlmr.gamma_mode``): ``absolute`` (the paper's): gamma is in writing-RM units.
``relative``: the margin of group g is ``gamma * s_g``, with s_g the (unbiased) std of the group's
compliant scores; when fewer than two compliant answers or all alike (s_g = 0), the std of all the
group's raw scores; when every score of the group is equal, 1 (a spread below 1e-9 of the group's
largest |score| counts as none: round-off of equal scores) (then the group holds two values,
violators and compliant, which std normalisation maps to the same advantages at any gap). Every
branch scales with the scores, so multiplying every score by c > 0 multiplies r' by c and leaves the
std-normalised advantages unchanged (up to ``epsilon``); the absolute margin cannot promise that.

Invariant: in every group with 0 < k < n, each violator satisfies ``r'_j <= mean(r') - gamma``,
so its advantage is strictly negative (for gamma > 0) whatever its writing score; dividing by
the std keeps signs, so this holds with and without std normalisation. Compliant responses are
not shifted, so they keep their order, and a constant added to a group's scores cancels out.
With no violators the result equals verl's ``compute_grpo_outcome_advantage`` (unbiased std;
single-sample groups use mean 0 and std 1, as verl does).

Baselines (``algorithm.rlmr.mode``) replace r' by r, the verdict, or r + w * verdict before the same
group normalisation; ``gdpo`` is GDPO (arXiv 2601.05242) on the two components, see ``gdpo_advantage``.
Whatever the mode, no advantage that leaves this module is non-finite.

The group arithmetic runs in float64, so the margin survives reward models with large score
magnitudes; advantages come back in the dtype of ``token_level_rewards``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from verl.utils.groupwise import as_torch_index

from recipe.rlmr.schema import RLMRConfig
from rewards.reward_info import CONSTRAINTS_OK, REWARD_VALID

_COMPUTE_DTYPE = torch.float64


@dataclass(frozen=True)
class GroupPenalty:
    """Per-group quantities of the penalty step; tensors have shape [G] unless noted."""

    group: torch.Tensor  # [B] long, contiguous group id of each sample (0..G-1)
    violates: torch.Tensor  # [B] bool
    size: torch.Tensor  # [G] n, samples per group
    num_violators: torch.Tensor  # [G] k
    delta: torch.Tensor  # [G] penalty subtracted from each violator's score (0 unless 0 < k < n)
    margin: torch.Tensor  # [G] the margin the best violator ends below the penalised mean (gamma, or gamma * s_g)
    penalized: torch.Tensor  # [B] r' = r - delta * [violator], float64

    @property
    def all_violate(self) -> torch.Tensor:
        """[G] bool: groups with no compliant response (k = n)."""
        return self.num_violators == self.size

    @property
    def mixed(self) -> torch.Tensor:
        """[G] bool: groups with both kinds (0 < k < n), the ones RLMR penalises."""
        return (self.num_violators > 0) & ~self.all_violate


def _as_violation_mask(constraints_ok: Any, batch_size: int, name: str = CONSTRAINTS_OK) -> torch.Tensor:
    """[B] bool, True where the flag is 0/False; accepts bool or 0/1 tensors, arrays and lists."""
    if torch.is_tensor(constraints_ok):
        ok = constraints_ok.detach().reshape(-1).cpu()
    else:
        try:
            ok = torch.from_numpy(np.asarray(constraints_ok, dtype=np.float64).reshape(-1))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must hold bool or 0/1 values: {err}") from err
    if ok.numel() != batch_size:
        raise ValueError(f"{name} has {ok.numel()} entries but the batch has {batch_size} samples")
    if ok.dtype != torch.bool:
        if not torch.all((ok == 0) | (ok == 1)):
            raise ValueError(f"{name} must be bool or 0/1, got values {torch.unique(ok).tolist()[:8]}")
        ok = ok != 0
    return ~ok


def _relative_unit(r: torch.Tensor, violates: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """[G] s_g of the relative margin: compliant std, else whole-group std, else 1 (module docstring)."""
    zeros = torch.zeros(num_groups, dtype=_COMPUTE_DTYPE)
    compliant = (~violates).to(_COMPUTE_DTYPE)
    count = zeros.index_add(0, group, compliant)
    mean = zeros.index_add(0, group, r * compliant) / count.clamp_min(1)
    squares = zeros.index_add(0, group, (r - mean[group]) ** 2 * compliant)
    compliant_std = torch.where(count >= 2, (squares / (count - 1).clamp_min(1)).sqrt(), zeros)
    _, all_std = _group_mean_std(r, group, num_groups)
    # a spread below 1e-9 of the group's largest |score| is round-off of equal scores, not a spread
    largest = zeros.scatter_reduce(0, group, r.abs(), reduce="amax", include_self=True)
    floor = 1e-9 * largest
    unit = torch.where(compliant_std > floor, compliant_std, all_std)
    return torch.where(unit > floor, unit, torch.ones_like(unit))


def group_penalty(
    scores: torch.Tensor, constraints_ok: Any, index: Any, gamma: float, gamma_mode: str = "absolute"
) -> GroupPenalty:
    """Compute ``delta`` per group and the penalised scores, vectorised over the whole batch.

    Args:
        scores: [B] raw writing scores.
        constraints_ok: [B] verdicts, bool or 0/1 (True/1 = every constraint satisfied).
        index: [B] group id per sample (str or int, like verl's ``uid``).
        gamma: margin by which the best violator must trail the group mean: in reward-model units
            (``gamma_mode="absolute"``) or in units of the group's compliant-score spread (``"relative"``).
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if gamma_mode not in ("absolute", "relative"):
        raise ValueError(f"gamma_mode must be 'absolute' or 'relative', got {gamma_mode!r}")
    r = scores.detach().reshape(-1).to(device="cpu", dtype=_COMPUTE_DTYPE)  # [B]
    batch_size = r.numel()
    violates = _as_violation_mask(constraints_ok, batch_size)  # [B]
    group = as_torch_index(index, device="cpu")  # [B] in 0..G-1
    if group.numel() != batch_size:
        raise ValueError(f"index has {group.numel()} entries but the batch has {batch_size} samples")
    num_groups = int(group.max()) + 1 if batch_size else 0

    zeros = torch.zeros(num_groups, dtype=_COMPUTE_DTYPE)
    size = zeros.index_add(0, group, torch.ones_like(r))  # [G] n
    num_violators = zeros.index_add(0, group, violates.to(_COMPUTE_DTYPE))  # [G] k
    total = zeros.index_add(0, group, r)  # [G] sum r
    neg_inf = torch.full_like(r, -torch.inf)
    best_violator = torch.full((num_groups,), -torch.inf, dtype=_COMPUTE_DTYPE).scatter_reduce(
        0, group, torch.where(violates, r, neg_inf), reduce="amax"
    )  # [G], -inf where k = 0

    mixed = (num_violators > 0) & (num_violators < size)
    margin = torch.full_like(zeros, float(gamma))  # [G]
    if gamma_mode == "relative":
        finite = torch.where(torch.isfinite(r), r, torch.zeros_like(r))  # non-finite groups are silenced later
        margin = gamma * _relative_unit(finite, violates, group, num_groups)
    # Only mixed groups divide by n - k > 0; elsewhere the numerator is replaced so nothing is inf/nan.
    numerator = torch.where(mixed, size * best_violator + size * margin - total, zeros)
    delta = torch.where(mixed, (numerator / (size - num_violators).clamp_min(1)).clamp_min(0), zeros)  # [G]

    penalized = r - delta[group] * violates.to(_COMPUTE_DTYPE)  # [B]
    return GroupPenalty(group, violates, size, num_violators, delta, margin, penalized)


def invalid_groups(reward_valid: Any, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """[G] bool: groups holding at least one sample with ``reward_valid = 0`` (none if not given)."""
    if reward_valid is None:
        return torch.zeros(num_groups, dtype=torch.bool)
    invalid = _as_violation_mask(reward_valid, group.numel(), name=REWARD_VALID)  # True where reward_valid is 0
    return torch.zeros(num_groups, dtype=torch.bool).index_put((group,), invalid, accumulate=True)


def rlmr_penalized_scores(
    scores: torch.Tensor, constraints_ok: Any, index: Any, gamma: float = 1.0, gamma_mode: str = "absolute"
) -> torch.Tensor:
    """[B] float64 scores after the group penalty: ``r_i - delta_g * [i violates]``."""
    return group_penalty(scores, constraints_ok, index, gamma, gamma_mode).penalized


def _group_mean_std(values: torch.Tensor, group: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group mean and unbiased std ([G] each), with verl's GRPO convention for singletons (0, 1)."""
    zeros = torch.zeros(num_groups, dtype=values.dtype)
    size = zeros.index_add(0, group, torch.ones_like(values))
    mean = zeros.index_add(0, group, values) / size.clamp_min(1)
    squares = zeros.index_add(0, group, (values - mean[group]) ** 2)
    std = (squares / (size - 1).clamp_min(1)).sqrt()
    singleton = size == 1
    return torch.where(singleton, zeros, mean), torch.where(singleton, torch.ones_like(std), std)


def nonfinite_groups(scores: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """[G] bool: groups holding a score that is NaN or +-inf."""
    bad = ~torch.isfinite(scores.detach().reshape(-1).cpu())
    return torch.zeros(num_groups, dtype=torch.bool).index_put((group,), bad, accumulate=True)


def _group_normalise(values: torch.Tensor, group: torch.Tensor, num_groups: int, epsilon: float, by_std: bool):
    """[B] GRPO's group normalisation of ``values``: (v - mean_g) / (std_g + eps), or v - mean_g."""
    mean, std = _group_mean_std(values, group, num_groups)
    centered = values - mean[group]
    return centered / (std[group] + epsilon) if by_std else centered


def gdpo_advantage(
    scores: torch.Tensor,
    violates: torch.Tensor,
    group: torch.Tensor,
    response_mask: torch.Tensor,
    weights: Sequence[float],
    epsilon: float,
    norm_adv_by_std_in_grpo: bool,
    silenced: torch.Tensor,
) -> torch.Tensor:
    """[B, T] GDPO advantages from two rewards: the writing score and the verdict (1 compliant, 0 violating).

        A_s = groupnorm(r),  A_v = groupnorm(verdict)          (each GRPO-normalised within its group)
        S   = w_s * A_s + w_v * A_v                             ([B], broadcast over response tokens)
        A   = (S - mean_tok(S)) / sqrt(var_tok(S) + 1e-8)       (whitened over every response token of the batch)

    This is verl's ``compute_gdpo_outcome_advantage`` fed the same two components (its whitening is
    token-weighted, with the unbiased variance: long responses weigh more). Samples of ``silenced``
    groups ([G] bool: invalid or non-finite rewards) get 0 and are left out of the whitening statistics,
    so a placeholder score moves no one's advantage.

    No sign guarantee: a violator's A_v is -sqrt((n-k)(n-1)/(k n)) in a group with k violators of n, which
    a high writing score outweighs when most of the group violates (k = n-1: -1/sqrt(n)); the batch
    whitening's shift can move any advantage across 0.
    """
    num_groups = silenced.numel()
    verdict = (~violates).to(_COMPUTE_DTYPE)
    finite_scores = torch.where(torch.isfinite(scores), scores, torch.zeros_like(scores))
    summed = weights[0] * _group_normalise(finite_scores, group, num_groups, epsilon, norm_adv_by_std_in_grpo)
    summed = summed + weights[1] * _group_normalise(verdict, group, num_groups, epsilon, norm_adv_by_std_in_grpo)
    mask = response_mask.detach().cpu().to(_COMPUTE_DTYPE) * (~silenced[group]).to(_COMPUTE_DTYPE).unsqueeze(-1)
    tokens = mask.sum()
    if tokens < 2:  # nothing (or one token) to whiten over
        return torch.zeros_like(mask)
    per_token = summed.unsqueeze(-1).expand_as(mask)
    mean = (per_token * mask).sum() / tokens
    var = (((per_token - mean) ** 2) * mask).sum() / (tokens - 1)  # unbiased, as verl's masked_var
    return (per_token - mean) * torch.rsqrt(var + 1e-8) * mask


def _mode_values(settings: RLMRConfig, scores: torch.Tensor, penalty: GroupPenalty) -> torch.Tensor:
    compliant = (~penalty.violates).to(_COMPUTE_DTYPE)
    raw = scores.detach().reshape(-1).to(device="cpu", dtype=_COMPUTE_DTYPE)
    if settings.mode == "rlmr":
        return penalty.penalized
    if settings.mode == "writing_only":
        return raw
    if settings.mode == "verifier_only":
        return compliant
    return raw + settings.fixed_weight * compliant


def compute_rlmr_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    constraints_ok: Any,
    settings: RLMRConfig | None = None,
    norm_adv_by_std_in_grpo: bool = True,
    reward_valid: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RLMR advantages for outcome rewards; see the module docstring for the math.

    Args:
        token_level_rewards: [B, T]; the outcome score of a sample is its sum over T (as in verl).
        response_mask: [B, T]; advantages are zero where it is 0.
        index: [B] group id (verl's ``uid``).
        constraints_ok: [B] bool or 0/1 verdicts from the constraint verifier.
        settings: ``algorithm.rlmr`` (gamma, epsilon, mode, fixed_weight); None means the defaults.
        norm_adv_by_std_in_grpo: verl's ``algorithm.norm_adv_by_std_in_grpo``.
        reward_valid: optional [B] bool or 0/1; a group with any 0 gets zero advantages.

    Returns:
        (advantages, returns), both [B, T] in the dtype of ``token_level_rewards``; equal, as in GRPO.
    """
    if constraints_ok is None:
        raise ValueError("compute_rlmr_outcome_advantage needs constraints_ok, one verdict per sample")
    settings = settings if settings is not None else RLMRConfig()

    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)  # [B], summed in the input dtype like verl's GRPO
        penalty = group_penalty(scores, constraints_ok, index, settings.gamma, settings.gamma_mode)
        num_groups = penalty.size.numel()
        silenced = invalid_groups(reward_valid, penalty.group, num_groups)  # [G]
        silenced = silenced | nonfinite_groups(scores, penalty.group, num_groups)
        if settings.mode == "gdpo":
            raw = scores.detach().reshape(-1).to(device="cpu", dtype=_COMPUTE_DTYPE)
            advantage = gdpo_advantage(
                raw,
                penalty.violates,
                penalty.group,
                response_mask,
                settings.gdpo_weights,
                settings.epsilon,
                norm_adv_by_std_in_grpo,
                silenced,
            )  # [B, T], zero outside the response and in silenced groups
            advantages = advantage.to(device=token_level_rewards.device, dtype=token_level_rewards.dtype)
            return advantages, advantages
        values = _mode_values(settings, scores, penalty)  # [B] float64, what GRPO normalises
        # a silenced group's values never reach the arithmetic (an inf would make its mean NaN)
        values = torch.where(silenced[penalty.group], torch.zeros_like(values), values)
        advantage = _group_normalise(values, penalty.group, num_groups, settings.epsilon, norm_adv_by_std_in_grpo)
        if settings.mode == "rlmr":  # k = n: nothing compliant to prefer, so nobody is pushed up (or down)
            silenced = silenced | penalty.all_violate
        advantage = torch.where(silenced[penalty.group], torch.zeros_like(advantage), advantage)
        advantages = advantage.to(device=token_level_rewards.device, dtype=token_level_rewards.dtype)
        advantages = advantages.unsqueeze(-1) * response_mask  # [B, T]
    return advantages, advantages
