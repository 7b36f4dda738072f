"""The verdict travels: verl's real V1 advantage step, on a real TransferQueue, on a private Ray.

Trajectories are written to TransferQueue the way verl's agent loop writes them (keys
``{uid}_{session}_{output}``, token-level ``rm_scores``, ``extra_fields["reward_extra_info"]``), then
the trainer's ``_compute_advantage`` runs and the advantages are read back from TransferQueue.
"""

import uuid

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

pytestmark = pytest.mark.ray

tq = pytest.importorskip("transfer_queue")

from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync  # noqa: E402
from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402

from recipe.rlmr.advantage import compute_rlmr_outcome_advantage  # noqa: E402
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


def put_trajectories(scores, verdicts, lengths, group_size, extra=None, valid=None):
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
        keys.append(f"{uid}_{i % group_size}_0")
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

    per_sample = torch.tensor([float(row[0]) for row in rows])
    for row, length in zip(rows, LENGTHS, strict=False):
        assert row.shape == (length,) and torch.all(row == row[0])
    # what the pure estimator gives on the same batch
    rewards = torch.zeros(len(SCORES), 1)
    rewards[:, 0] = torch.tensor(SCORES)
    index = np.array([key.split("_")[0] for key in keys], dtype=object)
    expected, _ = compute_rlmr_outcome_advantage(
        rewards, torch.ones_like(rewards), index, VERDICTS, norm_adv_by_std_in_grpo=norm
    )
    torch.testing.assert_close(per_sample, expected[:, 0])
    # and the promise itself: the top-scored sample of group 1 violates, yet ends negative
    assert per_sample[0] < 0 and per_sample[5] < 0
    assert torch.all(per_sample[8:] == 0)  # group 3: everyone violates

    assert metrics["rlmr/violation_rate"] == pytest.approx(np.mean(np.array(VERDICTS) == 0))
    assert metrics["rlmr/groups_mixed"] == 2 and metrics["rlmr/groups_all_violate"] == 1
    assert metrics["rlmr/adv_violators_max"] < 0 < metrics["rlmr/adv_compliant_mean"]
    assert metrics["rlmr/delta_max"] > 0


def test_groups_with_an_invalid_reward_get_no_advantage(transfer_queue):
    valid = [1] * 12
    valid[5] = 0  # one sample of group 1 failed to get a reward
    meta, keys = put_trajectories(SCORES, VERDICTS, LENGTHS, group_size=4, valid=valid)
    metrics = {}
    trainer(RLMRTrainerSync, algorithm_config())._compute_advantage(meta, metrics)
    per_sample = torch.tensor([float(row[0]) for row in read_advantages(meta, keys)])
    assert torch.all(per_sample[4:8] == 0) and torch.all(per_sample[:4] != 0)
    assert metrics["rlmr/groups_invalid"] == 1 and metrics["rlmr/groups_mixed"] == 1


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
