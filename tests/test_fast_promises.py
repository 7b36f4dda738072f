"""Promises the docs make that only slow or Ray runs used to exercise, each checked fast and without Ray:
the exact-similarity re-check of near-duplicate candidates (data_prep/dedup.py), the failure budget seeing
what the group filter dropped (take_reward_outcomes), the rlmr/* training metrics on a hand-built batch
(recipe/rlmr/metrics.py advantage_metrics), and main_rlmr's own validation before Ray starts."""

import os
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import recipe.rlmr
from data_prep.dedup import NearDuplicateIndex, jaccard, shingles
from recipe.rlmr.dry_run import compose_recipe

CONFIG_DIR = str(Path(recipe.rlmr.__file__).parent / "config")

# ---- data_prep/dedup.py: LSH proposes, the exact Jaccard decides ----

BASE = [f"w{i}" for i in range(40)]  # 39 distinct word bigrams


def variant(replaced: int) -> str:
    """BASE with ``replaced`` words swapped, 9 apart: each swap changes 2 bigrams, so the exact Jaccard of
    the bigram sets is (39 - 2r) / (39 + 2r): 3 swaps 0.733, 4 swaps 0.660."""
    words = list(BASE)
    for j in range(replaced):
        words[2 + 9 * j] = f"x{j}"
    return " ".join(words)


def candidate_and_similarity(index: NearDuplicateIndex, text: str) -> tuple[bool, float]:
    item = index._prepare(text)
    return 0 in index._lsh.query(item.keys), jaccard(item.grams, shingles(BASE))


def test_a_candidate_under_the_threshold_is_kept_and_one_above_is_dropped():
    index = NearDuplicateIndex(threshold=0.7)
    index.add(" ".join(BASE), "base")
    below, above = variant(4), variant(3)
    # both pairs are proposed by the LSH (deterministic: fixed permutations), so only the re-check separates them
    assert candidate_and_similarity(index, below) == (True, pytest.approx(31 / 47))
    assert candidate_and_similarity(index, above) == (True, pytest.approx(33 / 45))
    assert index.find(below) is None
    match = index.find(above)
    assert match is not None and match.reason == "near_duplicate" and match.similarity == round(33 / 45, 3)
    assert index.check_and_add(below, "below") is None and len(index) == 2  # kept: added


# ---- take_reward_outcomes: the failure budget counts what the filter dropped ----


def fake_transfer_queue(monkeypatch, store: dict):
    """TransferQueue faked at its boundary (kv_batch_get) for the buffer and the trainer."""
    import recipe.rlmr.replay_buffer as replay_buffer_module
    import recipe.rlmr.trainer as trainer_module

    def kv_batch_get(keys, partition_id, select_fields):
        assert select_fields == ["extra_fields"]
        return {"extra_fields": [{"reward_extra_info": store[key]} for key in keys]}

    monkeypatch.setattr(replay_buffer_module.tq, "kv_batch_get", kv_batch_get)
    monkeypatch.setattr(trainer_module.tq, "kv_batch_get", kv_batch_get)


def filter_buffer(keys: list[str]):
    """An RLMR replay buffer with only the state its classification reads (verl's constructor needs Ray)."""
    from recipe.rlmr.replay_buffer import RLMRReplayBuffer
    from recipe.rlmr.schema import FilterConfig

    buffer = object.__new__(RLMRReplayBuffer)
    buffer.partitions = {"train": list(keys)}
    buffer.finished_keys = {"train": {key.split("_")[0] for key in keys}}
    buffer._dapo_classification_cache = {"train": {}}
    buffer.filter_groups_metric = "rlmr"
    buffer.max_dropped_groups = 10
    buffer.rlmr_filter = FilterConfig()
    buffer._step, buffer._bound_warned, buffer._reward_outcomes = Counter(), False, {}
    return buffer


def test_failure_budget_counts_the_groups_the_filter_dropped(monkeypatch):
    from recipe.rlmr.reward_health import RewardHealth, RewardsKeepFailingError
    from recipe.rlmr.trainer import RLMRAdvantageMixin
    from rewards.config import FailureBudgetConfig

    valid = {"constraints_ok": 1, "reward_valid": 1, "writing_score": 1.0, "reward_error": ""}
    store = {
        "kept_0_0": {**valid, "writing_score": 2.0},
        "kept_1_0": {**valid, "constraints_ok": 0},
        "down_0_0": {**valid, "reward_valid": 0, "reward_error": "writing_rm: http://rm/classify: HTTP 503"},
        "down_1_0": {**valid, "reward_valid": 0, "reward_error": "writing_rm: http://rm/classify: HTTP 503"},
    }
    fake_transfer_queue(monkeypatch, store)
    buffer = filter_buffer(list(store))
    dropped, _ = buffer._dapo_filtered_keys("train")
    assert dropped == {"down"} and buffer._step["invalid_reward"] == 1

    # the trainer's step end: the batch trained on holds only the kept group
    budget = FailureBudgetConfig(max_invalid_fraction=0.4, consecutive_steps=2)
    trainer = SimpleNamespace(replay_buffer=buffer, global_steps=1, _reward_health=RewardHealth(budget))
    batch = SimpleNamespace(keys=["kept_0_0", "kept_1_0"], partition_id="train")
    metrics = RLMRAdvantageMixin._check_reward_health(trainer, batch)
    assert metrics["rlmr/reward_health/scored"] == 4.0  # 2 trained on + 2 dropped
    assert metrics["rlmr/reward_health/invalid_fraction"] == 0.5
    assert metrics["rlmr/reward_health/failing_steps"] == 1.0
    assert buffer.take_reward_outcomes() == {}  # taken once

    # a second such step stops the run, naming the backend
    buffer._dapo_classification_cache["train"].clear()
    buffer._dapo_filtered_keys("train")
    trainer.global_steps = 2
    with pytest.raises(RewardsKeepFailingError, match="writing RM"):
        RLMRAdvantageMixin._check_reward_health(trainer, batch)


# ---- recipe/rlmr/metrics.py advantage_metrics on a hand-built batch ----


def test_rlmr_training_metrics_on_a_batch_with_known_values():
    from recipe.rlmr.metrics import advantage_metrics

    # group: scores, constraints_ok, reward_valid, the sample advantages handed in
    groups = {
        "a": ([3.0, 1.0, 2.0, 0.0], [1, 0, 1, 1], [1, 1, 1, 1], [0.5, -1.0, 0.3, 0.2]),  # mixed: delta 2/3
        "b": ([5.0, 1.0], [0, 1], [1, 1], [-2.0, 2.0]),  # mixed: delta (2*5 + 2*1 - 6) / 1 = 6
        "c": ([1.0, 2.0], [0, 0], [1, 1], [0.0, 0.0]),  # all violate
        "d": ([4.0, 4.0], [1, 0], [1, 0], [0.0, 0.25]),  # invalid (a placeholder that moved: 0.25)
        "e": ([1.0, 2.0], [1, 1], [1, 1], [-0.7, 0.7]),  # all compliant
    }
    scores, ok, valid, adv, index = [], [], [], [], []
    for name, (s, o, v, a) in groups.items():
        scores += s
        ok += o
        valid += v
        adv += a
        index += [name] * len(s)
    batch, length = len(scores), 3
    mask = torch.tensor([[1, 1, 0]] * batch)
    rewards = torch.zeros(batch, length)
    rewards[:, 1] = torch.tensor(scores)  # the score sits on the last response token
    advantages = torch.tensor(adv)[:, None] * mask
    metrics = advantage_metrics(rewards, advantages, mask, ok, index, gamma=1.0, reward_valid=valid)
    expected = {
        "rlmr/delta_mean": (2 / 3 + 6) / 2,
        "rlmr/delta_max": 6.0,
        "rlmr/margin_mean": 1.0,
        "rlmr/adv_compliant_std": float(np.std([0.5, 0.3, 0.2])),  # a; b has one compliant answer
        "rlmr/groups_mixed": 2.0,  # a, b (d is mixed but invalid)
        "rlmr/groups_all_violate": 1.0,
        "rlmr/groups_invalid": 1.0,
        "rlmr/violation_rate": 5 / 12,
        "rlmr/adv_violators_mean": (-1.0 - 2.0) / 2,
        "rlmr/adv_violators_max": -1.0,
        "rlmr/adv_compliant_mean": (0.5 + 0.3 + 0.2 + 2.0) / 4,
        "rlmr/adv_invalid_abs_max": 0.25,
        "rlmr/nonfinite_scores": 0.0,
        "rlmr/groups_nonfinite": 0.0,
        "rlmr/adv_nonfinite": 0.0,
    }
    assert metrics == pytest.approx(expected)


# ---- main_rlmr validates in the driver, before Ray starts ----


VERL_VALID = [
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1",
    # a launch needs a writing RM (check_config); this one is never contacted here
    "reward.rlmr.writing_rm.url=http://127.0.0.1:9",
    "reward.rlmr.writing_rm.model=rm",
    "reward.rlmr.writing_rm.tokenizer=rm-tokenizer",
]


def test_main_rlmr_refuses_a_bad_key_before_ray_starts(monkeypatch):
    import ray
    import verl.trainer.main_ppo

    from recipe.rlmr import main_rlmr
    from recipe.rlmr.config_check import ConfigError

    def not_yet(*args, **kwargs):
        raise AssertionError("Ray (or the trainer) was reached before the config was checked")

    monkeypatch.setattr(ray, "init", not_yet)
    monkeypatch.setattr(verl.trainer.main_ppo, "run_ppo", not_yet)
    monkeypatch.setattr("rewards.preflight.preflight", not_yet)
    good = compose_recipe(VERL_VALID)  # verl's own validate_config passes
    bad = compose_recipe(VERL_VALID + ["algorithm.rlmr.mode=vibes"])
    with pytest.raises(ConfigError, match="algorithm.rlmr.mode"):
        main_rlmr.main.__wrapped__(bad)

    # the same path with a good config does reach the preflight and then run_ppo (the test is not vacuous)
    reached = []
    monkeypatch.setattr("rewards.preflight.preflight", lambda config: reached.append("preflight"))
    monkeypatch.setattr(verl.trainer.main_ppo, "run_ppo", lambda config, **kw: reached.append("run_ppo"))
    main_rlmr.main.__wrapped__(good)
    assert reached == ["preflight", "run_ppo"]


# ---- the failure budget's count survives a resume ----


def test_failure_budget_count_is_checkpointed_and_restored(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from recipe.rlmr.reward_health import RewardHealth, RewardsKeepFailingError
    from recipe.rlmr.trainer import REWARD_HEALTH_FILE, RLMRAdvantageMixin
    from rewards.config import FailureBudgetConfig

    class VerlTrainer:  # verl's checkpoint methods, reduced to what the mixin relies on
        def _save_checkpoint(self):
            os.makedirs(os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}"))

        def _load_checkpoint(self):
            self.global_steps = 2  # verl's resume: the latest global_step_N

    class Trainer(RLMRAdvantageMixin, VerlTrainer):
        pass

    monkeypatch.chdir(tmp_path)
    settings = FailureBudgetConfig(max_invalid_fraction=0.5, consecutive_steps=3)
    down = [{"reward_valid": 0, "reward_error": "judge: http://judge/v1/chat/completions: HTTP 503"}] * 4
    config = OmegaConf.create({"trainer": {"default_local_dir": "ckpts", "resume_mode": "auto"}})

    first = object.__new__(Trainer)
    first.config, first._reward_health = config, RewardHealth(settings)
    for step in (1, 2):
        first._reward_health.observe(step, down)
        first.global_steps = step
        first._save_checkpoint()
    assert os.path.exists(tmp_path / "ckpts" / "global_step_2" / REWARD_HEALTH_FILE)

    resumed = object.__new__(Trainer)
    resumed.config, resumed._reward_health = config, RewardHealth(settings)
    resumed._load_checkpoint()
    assert [r.step for r in resumed._reward_health.failing] == [1, 2]
    with pytest.raises(RewardsKeepFailingError, match=r"step 1: 4/4, step 2: 4/4, step 3: 4/4"):
        resumed._reward_health.observe(3, down)  # the third failing step in a row, counting across the resume


def test_failure_budget_count_survives_a_resume_from_an_explicit_path(tmp_path, monkeypatch):
    """``trainer.resume_mode=resume_path``: the count is read from ``trainer.resume_from_path``'s folder (here a
    copy elsewhere, while ``default_local_dir`` is a fresh, empty one), not from ``default_local_dir``."""
    import shutil

    from omegaconf import OmegaConf

    from recipe.rlmr.reward_health import RewardHealth, RewardsKeepFailingError
    from recipe.rlmr.trainer import RLMRAdvantageMixin
    from rewards.config import FailureBudgetConfig

    class VerlTrainer:
        def _save_checkpoint(self):
            os.makedirs(os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}"))

        def _load_checkpoint(self):
            self.global_steps = 2  # verl read global_step_2 from resume_from_path

    class Trainer(RLMRAdvantageMixin, VerlTrainer):
        pass

    monkeypatch.chdir(tmp_path)
    settings = FailureBudgetConfig(max_invalid_fraction=0.5, consecutive_steps=3)
    down = [{"reward_valid": 0, "reward_error": "rm: http://rm/classify: HTTP 503"}] * 4
    first = object.__new__(Trainer)
    first.config = OmegaConf.create({"trainer": {"default_local_dir": "ckpts", "resume_mode": "auto"}})
    first._reward_health = RewardHealth(settings)
    for step in (1, 2):
        first._reward_health.observe(step, down)
        first.global_steps = step
        first._save_checkpoint()
    shutil.copytree(tmp_path / "ckpts" / "global_step_2", tmp_path / "archive" / "global_step_2")
    shutil.rmtree(tmp_path / "ckpts")

    resumed = object.__new__(Trainer)
    resumed.config = OmegaConf.create(
        {
            "trainer": {
                "default_local_dir": "new_run",
                "resume_mode": "resume_path",
                "resume_from_path": "archive/global_step_2",
            }
        }
    )
    resumed._reward_health = RewardHealth(settings)
    resumed._load_checkpoint()
    assert [r.step for r in resumed._reward_health.failing] == [1, 2]
    with pytest.raises(RewardsKeepFailingError, match=r"step 1: 4/4, step 2: 4/4, step 3: 4/4"):
        resumed._reward_health.observe(3, down)
