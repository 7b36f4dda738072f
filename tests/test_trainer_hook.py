"""The verdict travels: verl's real V1 advantage step, on a real TransferQueue, on a private Ray.

Trajectories are written to TransferQueue the way verl's agent loop writes them (keys
``{uid}_{session}_{output}``, token-level ``rm_scores``, ``extra_fields["reward_extra_info"]``), then
the trainer's ``_compute_advantage`` runs and the advantages are read back from TransferQueue.
"""

import math
import uuid

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

pytestmark = pytest.mark.ray

tq = pytest.importorskip("transfer_queue")

from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync  # noqa: E402
from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402

from recipe.rlmr.trainer import RLMRTrainerSync  # noqa: E402
from recipe.rlmr.verdicts import MissingVerdictError  # noqa: E402


def algorithm_config(adv_estimator="rlmr", gamma=1.0, norm=True, n=4):
    return OmegaConf.create(
        {
            "algorithm": {
                "adv_estimator": adv_estimator,
                "use_kl_in_reward": False,
                "gamma": 1.0,
                "lam": 1.0,
                "norm_adv_by_std_in_grpo": norm,
                "rlmr": {"gamma": gamma, "epsilon": 1e-6},
            },
            "actor_rollout_ref": {"rollout": {"n": n}},
        }
    )


def trainer(cls, config):
    """A trainer with only the config its advantage step reads (no workers, no GPUs)."""
    instance = object.__new__(cls)
    instance.config = config
    return instance


def put_trajectories(scores, verdicts, lengths, group_size, extra=None, valid=None, output=0):
    """Write one trajectory per sample into a fresh partition; returns (batch meta, keys)."""
    partition = f"train-{uuid.uuid4().hex[:8]}"
    keys, fields = [], []
    for i, (score, ok, length) in enumerate(zip(scores, verdicts, lengths, strict=False)):
        uid = f"p{uuid.uuid4().hex[:6]}" if i % group_size == 0 else keys[-1].split("_")[0]
        rm_scores = torch.zeros(length)
        rm_scores[-1] = score
        reward_extra_info = {"writing_score": float(score), "reward_valid": 1 if valid is None else valid[i]}
        if ok is not None:
            reward_extra_info["constraints_ok"] = int(ok)
        reward_extra_info.update(extra or {})
        keys.append(f"{uid}_{i % group_size}_{output}")
        fields.append(
            {
                "uid": uid,
                "response_mask": torch.ones(length, dtype=torch.int64),
                "rm_scores": rm_scores,
                "extra_fields": {"reward_extra_info": reward_extra_info},
            }
        )
    meta = tq.kv_batch_put(
        keys=keys,
        partition_id=partition,
        fields=list_of_dict_to_tensordict(fields),
        tags=[{"status": "success"}] * len(keys),
    )
    return meta, keys


def read_advantages(meta, keys):
    nested = tq.kv_batch_get(keys=keys, partition_id=meta.partition_id, select_fields=["advantages"])["advantages"]
    return [row for row in nested.unbind(0)]


SCORES = [9.0, 2.0, 3.0, 1.0, 5.0, 5.0, 4.0, 8.0, 0.5, 0.7, 0.1, 0.3]
VERDICTS = [0, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0]  # group 1: best is a violator; group 3: all violate
LENGTHS = [3, 5, 2, 4, 4, 3, 5, 1, 2, 2, 3, 1]


@pytest.mark.parametrize("norm", [True, False])
def test_verdicts_from_reward_extra_info_reach_the_estimator(transfer_queue, norm):
    meta, keys = put_trajectories(SCORES, VERDICTS, LENGTHS, group_size=4)
    metrics = {}
    trainer(RLMRTrainerSync, algorithm_config(norm=norm))._compute_advantage(meta, metrics)
    rows = read_advantages(meta, keys)

    per_sample = torch.tensor([float(row[0]) for row in rows], dtype=torch.float64)
    for row, length in zip(rows, LENGTHS, strict=True):
        assert row.shape == (length,) and torch.all(row == row[0])
    # Worked by hand. Group 0 [9, 2, 3, 1], the 9 violates: delta = (4*9 + 4*1 - 15) / 3 = 25/3,
    # r' = [2/3, 2, 3, 1], mean 5/3, centred [-1, 1/3, 4/3, -2/3], unbiased std sqrt(10/9).
    # Group 1 [5, 5, 4, 8], the second 5 violates: delta = (4*5 + 4 - 22) / 3 = 2/3,
    # r' = [5, 13/3, 4, 8], mean 16/3, centred [-1/3, -1, -4/3, 8/3], std sqrt(10/3). Group 2 all violate: 0.
    centred = [-1, 1 / 3, 4 / 3, -2 / 3, -1 / 3, -1, -4 / 3, 8 / 3] + [0.0] * 4
    stds = [math.sqrt(10 / 9) + 1e-6] * 4 + [math.sqrt(10 / 3) + 1e-6] * 4 + [1.0] * 4
    expected = torch.tensor([c / s if norm else c for c, s in zip(centred, stds, strict=True)], dtype=torch.float64)
    torch.testing.assert_close(per_sample, expected, rtol=1e-5, atol=1e-6)

    adv = expected.numpy()
    assert metrics["rlmr/violation_rate"] == 0.5  # 6 of 12
    assert metrics["rlmr/groups_mixed"] == 2 and metrics["rlmr/groups_all_violate"] == 1
    assert metrics["rlmr/groups_invalid"] == 0
    assert metrics["rlmr/delta_mean"] == pytest.approx((25 / 3 + 2 / 3) / 2)
    assert metrics["rlmr/delta_max"] == pytest.approx(25 / 3)
    assert metrics["rlmr/adv_violators_mean"] == pytest.approx((adv[0] + adv[5]) / 2, rel=1e-5)
    assert metrics["rlmr/adv_violators_max"] == pytest.approx(adv[5], rel=1e-5)
    assert metrics["rlmr/adv_compliant_mean"] == pytest.approx(np.mean(adv[[1, 2, 3, 4, 6, 7]]), rel=1e-5, abs=1e-6)
    # reward-side figures, from the extra info written above
    assert metrics["rlmr/writing_score_violating_mean"] == pytest.approx(np.mean([9.0, 5.0, 0.5, 0.7, 0.1, 0.3]))
    assert metrics["rlmr/writing_score_compliant_mean"] == pytest.approx(np.mean([2.0, 3.0, 1.0, 5.0, 4.0, 8.0]))
    assert metrics["rlmr/invalid_rewards"] == 0
    assert math.isnan(metrics["rlmr/adv_invalid_abs_max"])  # no invalid sample to look at


def test_several_outputs_per_session_are_refused(transfer_queue):
    """A multi-turn agent loop writes "{uid}_{session}_{output}" keys with output > 0; RLMR scores one response."""
    meta, _ = put_trajectories(SCORES, VERDICTS, LENGTHS, group_size=4, output=1)
    with pytest.raises(NotImplementedError, match="one response per session"):
        trainer(RLMRTrainerSync, algorithm_config())._compute_advantage(meta, {})


def test_groups_with_an_invalid_reward_get_no_advantage(transfer_queue):
    valid = [1] * 12
    valid[5] = 0  # one sample of group 1 failed to get a reward
    meta, keys = put_trajectories(SCORES, VERDICTS, LENGTHS, group_size=4, valid=valid)
    metrics = {}
    trainer(RLMRTrainerSync, algorithm_config())._compute_advantage(meta, metrics)
    per_sample = torch.tensor([float(row[0]) for row in read_advantages(meta, keys)])
    assert torch.all(per_sample[4:8] == 0) and torch.all(per_sample[:4] != 0)
    assert metrics["rlmr/groups_invalid"] == 1 and metrics["rlmr/groups_mixed"] == 1
    assert metrics["rlmr/adv_invalid_abs_max"] == 0  # the invalid sample's placeholder moved nothing


def test_missing_verdict_fails_at_once_and_names_key_and_provider(transfer_queue):
    verdicts = list(VERDICTS)
    verdicts[6] = None
    meta, keys = put_trajectories(SCORES, verdicts, LENGTHS, group_size=4)
    with pytest.raises(MissingVerdictError, match=r"constraints_ok.*1 of 12.*reward\.reward_manager\.name=rlmr") as err:
        trainer(RLMRTrainerSync, algorithm_config())._compute_advantage(meta, {})
    assert keys[6] in str(err.value)
    assert "advantages" not in tq.kv_batch_get(keys=keys, partition_id=meta.partition_id).keys()


def test_non_binary_verdict_is_refused(transfer_queue):
    meta, _ = put_trajectories(SCORES, VERDICTS, LENGTHS, group_size=4, extra={"constraints_ok": 0.5})
    with pytest.raises(MissingVerdictError, match="bool or 0/1"):
        trainer(RLMRTrainerSync, algorithm_config())._compute_advantage(meta, {})


def test_plain_verl_trainer_refuses_rlmr_instead_of_falling_back_to_grpo(transfer_queue):
    meta, _ = put_trajectories(SCORES, VERDICTS, LENGTHS, group_size=4)
    with pytest.raises(MissingVerdictError, match="not RLMR-aware"):
        trainer(PPOTrainerSync, algorithm_config())._compute_advantage(meta, {})


def test_other_estimators_go_through_verl_unchanged(transfer_queue):
    meta_ours, keys_ours = put_trajectories(SCORES, VERDICTS, LENGTHS, group_size=4)
    meta_verl, keys_verl = put_trajectories(SCORES, VERDICTS, LENGTHS, group_size=4)
    metrics = {}
    trainer(RLMRTrainerSync, algorithm_config("grpo"))._compute_advantage(meta_ours, metrics)
    trainer(PPOTrainerSync, algorithm_config("grpo"))._compute_advantage(meta_verl, {})
    for ours, verls in zip(read_advantages(meta_ours, keys_ours), read_advantages(meta_verl, keys_verl), strict=False):
        torch.testing.assert_close(ours, verls)
    assert not any(key.startswith("rlmr/") for key in metrics)
