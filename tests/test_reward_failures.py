"""What reaches the estimator from reward_extra_info: the verdict flags must be binary, and a bad
one is refused with an error naming the key and the trajectory."""

import re

import numpy as np
import pytest

from recipe.rlmr.verdicts import verdicts_from_extra_infos
from rewards.reward_info import MissingVerdictError

KEYS = ["u1_0_0", "u1_0_1", "u1_0_2"]


def infos(**bad):
    """Three well-formed reward_extra_info dicts; ``bad`` overrides keys of the second one."""
    rows = [{"constraints_ok": 1, "reward_valid": 1} for _ in KEYS]
    rows[1].update(bad)
    return rows


def test_binary_flags_of_every_spelling_are_read():
    rows = [
        {"constraints_ok": True, "reward_valid": np.int64(1)},
        {"constraints_ok": 0, "reward_valid": 0.0},
        {"constraints_ok": np.bool_(True)},  # reward_valid absent means valid
    ]
    ok, valid = verdicts_from_extra_infos(rows, KEYS)
    assert ok.tolist() == [True, False, True] and valid.tolist() == [True, False, True]


@pytest.mark.parametrize("value", [2, 0.5, -1, "1", None, float("nan")])
def test_non_binary_reward_valid_is_refused_naming_the_key(value):
    with pytest.raises(MissingVerdictError, match=re.escape(f"u1_0_1: reward_valid={value!r}")):
        verdicts_from_extra_infos(infos(reward_valid=value), KEYS)


@pytest.mark.parametrize("value", [2, 0.5])
def test_non_binary_constraints_ok_is_refused_naming_the_key(value):
    with pytest.raises(MissingVerdictError, match=re.escape(f"u1_0_1: constraints_ok={value!r}")):
        verdicts_from_extra_infos(infos(constraints_ok=value), KEYS)
