"""Stop a run whose rewards keep failing, instead of training on nothing.

The rule (``reward.rlmr.failure_budget``): a training step *fails* when more than
``max_invalid_fraction`` of the trajectories scored for it have ``reward_valid = 0``. "Scored for
it" means every trajectory whose reward the step saw: the ones trained on, and the ones RLMR's
group filter dropped and refilled or verl discarded as surplus (a filter that quietly replaces
failed groups must not hide a dead backend). After ``consecutive_steps`` failing steps in a row the
run stops with ``RewardsKeepFailingError``, naming the failing backends and their most frequent
errors (from ``reward_error``). A step within the budget resets the count; a step that scored
nothing leaves it as it is.

One failing step alone never stops a run: a reward server restarting for a minute costs that step's
signal (its groups get zero advantage or are dropped), which is what the per-sample rules are for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rewards.config import FailureBudgetConfig
from rewards.reward_info import REWARD_ERROR, REWARD_VALID

# reward_error prefixes the `rlmr` manager writes (rewards/manager.py) -> the backend they name.
BACKENDS = {"writing_rm": "writing RM", "judge": "judge"}
EXAMPLES_PER_BACKEND = 2


class RewardsKeepFailingError(RuntimeError):
    """More than the budgeted share of rewards failed for too many steps in a row."""


@dataclass
class StepRewards:
    """What one training step's rewards were: how many scored, how many invalid, and why."""

    step: int
    scored: int = 0
    invalid: int = 0
    errors: Counter = field(default_factory=Counter)  # reward_error text -> invalid trajectories

    @property
    def invalid_fraction(self) -> float:
        return self.invalid / self.scored if self.scored else 0.0

    @classmethod
    def of(cls, step: int, reward_extra_infos: Iterable[Mapping[str, Any] | None]) -> StepRewards:
        """Tally the trajectories' ``reward_extra_info`` dicts (``reward_valid`` absent or None counts as valid)."""
        tally = cls(step)
        for info in reward_extra_infos:
            tally.scored += 1
            valid = info.get(REWARD_VALID, 1) if isinstance(info, Mapping) else 1
            if valid is not None and not bool(valid):
                tally.invalid += 1
                tally.errors[str(info.get(REWARD_ERROR, "") or "no reward_error given")] += 1
        return tally


def backend_of(error: str) -> str:
    """The backend a ``reward_error`` names ("writing RM", "judge"), else the error's own first word."""
    head = error.split(":", 1)[0].strip()
    return BACKENDS.get(head, head or "unknown")


def describe_errors(errors: Counter) -> str:
    """Per backend: how many trajectories failed and its most frequent errors (several errors may share one)."""
    by_backend: dict[str, Counter] = {}
    for error, count in errors.items():
        for part in error.split("; "):  # the manager joins the errors of one sample with "; "
            by_backend.setdefault(backend_of(part), Counter())[part] += count
    lines = []
    for backend, messages in sorted(by_backend.items(), key=lambda item: -item[1].total()):
        examples = "; ".join(f"{n} x {text[:300]}" for text, n in messages.most_common(EXAMPLES_PER_BACKEND))
        lines.append(f"  {backend}: {messages.total()} failed trajectories, e.g. {examples}")
    return "\n".join(lines)


class RewardHealth:
    """Applies the rule step by step; ``observe`` returns the step's metrics or raises RewardsKeepFailingError."""

    def __init__(self, settings: FailureBudgetConfig):
        self.settings = settings
        self.failing: list[StepRewards] = []  # the current run of failing steps

    def observe(self, step: int, reward_extra_infos: Iterable[Mapping[str, Any] | None]) -> dict[str, float]:
        rewards = StepRewards.of(step, reward_extra_infos)
        if rewards.scored:
            if rewards.invalid_fraction > self.settings.max_invalid_fraction:
                self.failing.append(rewards)
            else:
                self.failing.clear()
        metrics = {
            "rlmr/reward_health/scored": float(rewards.scored),
            "rlmr/reward_health/invalid_fraction": rewards.invalid_fraction,
            "rlmr/reward_health/failing_steps": float(len(self.failing)),
        }
        if rewards.invalid:  # say which backend failed and how, every step it happens (verl's console log)
            print(
                f"[rlmr reward health] step {step}: {rewards.invalid} of {rewards.scored} rewards invalid "
                f"({len(self.failing)} failing step(s) in a row)\n{describe_errors(rewards.errors)}",
                flush=True,
            )
        if self.settings.enable and len(self.failing) >= self.settings.consecutive_steps:
            raise RewardsKeepFailingError(self._message())
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """The current run of failing steps, for the trainer's checkpoint (a resume keeps counting where it was)."""
        return {
            "failing": [
                {"step": r.step, "scored": r.scored, "invalid": r.invalid, "errors": dict(r.errors.most_common(20))}
                for r in self.failing
            ]
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.failing = [
            StepRewards(int(r["step"]), int(r["scored"]), int(r["invalid"]), Counter(r.get("errors", {})))
            for r in state.get("failing", [])
        ]

    def _message(self) -> str:
        steps = ", ".join(f"step {r.step}: {r.invalid}/{r.scored}" for r in self.failing)
        errors = sum((r.errors for r in self.failing), Counter())
        backends = ", ".join(sorted({backend_of(part) for e in errors for part in e.split("; ")}))
        return (
            f"rewards keep failing ({backends}): more than {self.settings.max_invalid_fraction:.0%} of the "
            f"trajectories scored had reward_valid = 0 in each of the last {len(self.failing)} training steps "
            f"({steps}), so the run stops instead of training on nothing "
            "(reward.rlmr.failure_budget.{max_invalid_fraction, consecutive_steps}; enable=false turns it off).\n"
            f"{describe_errors(errors)}"
        )
