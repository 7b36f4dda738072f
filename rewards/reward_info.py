"""The per-trajectory ``reward_extra_info`` contract: what the `rlmr` reward manager writes and
the recipe (group filter, trainer hook, estimator, metrics) reads.

verl carries a reward manager's ``reward_extra_info`` dict along with each trajectory (in
TransferQueue) and requires every trajectory to carry the same keys. This module is the only
place those key names are spelled: the manager fills a ``RewardInfo``; readers index the dicts
with the constants below. ``docs/reward_info.md`` is generated from ``RewardInfo``'s fields.

Two keys are the contract proper, the rest are diagnostics:

- ``constraints_ok`` (1/0 or bool): every constraint of the prompt holds. Required by the RLMR
  estimator and group filter; a custom reward manager used with ``adv_estimator=rlmr`` must
  return it for every trajectory, or ``MissingVerdictError`` is raised.
- ``reward_valid`` (1/0 or bool, absent means 1): 0 when the reward could not be computed. Such
  a sample's score is a placeholder; its group gets zero advantages and is dropped by the filter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields


def _doc(default, meaning: str):
    return field(default=default, metadata={"doc": meaning})


@dataclass
class RewardInfo:
    """One trajectory's ``reward_extra_info``; the defaults are the values before anything was scored."""

    writing_score: float = _doc(math.nan, "writing reward model score (raw); NaN when the RM failed")
    constraints_ok: int = _doc(0, "1 if every constraint holds, else 0: the verdict RLMR's penalty reads")
    rule_ok: int = _doc(0, "1/0: the deterministic checks all hold (IFEval's prompt-level strict)")
    rule_ok_loose: int = _doc(0, "1/0: the deterministic checks all hold under IFEval's loose semantics")
    num_rules: int = _doc(0, "deterministic (rule) constraints in the prompt's spec")
    rules_followed_strict: int = _doc(0, "rule constraints followed (IFEval's instruction-level strict, summed)")
    rules_followed_loose: int = _doc(0, "rule constraints followed under IFEval's loose semantics")
    judge_ok: int = _doc(-1, "1 satisfied or no free-text constraints, 0 violated, -1 not asked or failed")
    num_constraints: int = _doc(0, "constraints in the prompt's spec")
    failed_constraints: str = _doc("", "`;`-joined ids of failed constraints (`judge:N` for the N-th free-text one)")
    rule_ids: str = _doc(
        "", "`;`-joined instruction ids of the rule constraints checked (the per-type violation rates)"
    )
    reward_valid: int = _doc(0, "1, or 0 when a backend failed for good, the spec was unusable or the sample timed out")
    response_words: int = _doc(0, "words (`\\w+` runs) in the response")
    judge_calls: int = _doc(0, "judge chat completions answered for this sample (retries and votes included)")
    judge_calls_saved: int = _doc(0, "judge calls skipped because a deterministic check had already failed")
    writing_rm_latency_s: float = _doc(0.0, "seconds the writing RM call took (retries included)")
    judge_latency_s: float = _doc(0.0, "seconds the judge took (retries and votes included)")
    reward_latency_s: float = _doc(0.0, "seconds for the whole sample's reward")
    reward_error: str = _doc("", "empty, or what went wrong when reward_valid = 0")

    def to_dict(self) -> dict:
        return asdict(self)


KEYS: tuple[str, ...] = tuple(f.name for f in fields(RewardInfo))


def _key(name: str) -> str:
    if name not in KEYS:  # a constant that names no field is a typo in this module
        raise AssertionError(f"{name!r} is not a RewardInfo field")
    return name


WRITING_SCORE = _key("writing_score")
CONSTRAINTS_OK = _key("constraints_ok")
REWARD_VALID = _key("reward_valid")
RESPONSE_WORDS = _key("response_words")
JUDGE_CALLS = _key("judge_calls")
JUDGE_CALLS_SAVED = _key("judge_calls_saved")
REWARD_LATENCY_S = _key("reward_latency_s")
RULE_OK = _key("rule_ok")
RULE_OK_LOOSE = _key("rule_ok_loose")
NUM_RULES = _key("num_rules")
RULES_FOLLOWED_STRICT = _key("rules_followed_strict")
RULES_FOLLOWED_LOOSE = _key("rules_followed_loose")
REWARD_ERROR = _key("reward_error")
FAILED_CONSTRAINTS = _key("failed_constraints")
RULE_IDS = _key("rule_ids")
JUDGE_OK = _key("judge_ok")

# Who provides the verdicts, for error messages.
VERDICT_PROVIDER = "the `rlmr` reward manager (reward.reward_manager.name=rlmr)"


class MissingVerdictError(RuntimeError):
    """The RLMR estimator or filter was handed trajectories without a usable ``constraints_ok`` verdict."""


def docs_table() -> str:
    """The markdown table of ``docs/reward_info.md``."""
    rows = ["| key | type | before scoring | meaning |", "|---|---|---|---|"]
    for f in fields(RewardInfo):
        default = "NaN" if isinstance(f.default, float) and math.isnan(f.default) else repr(f.default)
        rows.append(f"| `{f.name}` | {f.type} | `{default}` | {f.metadata['doc']} |")
    return "\n".join(rows)
