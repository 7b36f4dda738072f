"""RLMR's group filter: the pure decision, and the replay buffer built on verl's, on a real
TransferQueue, in the style of verl's own replay buffer tests (producers write finished groups,
the buffer samples, a refiller supplies replacements)."""

import time
import types
import uuid

import numpy as np
import pytest
import torch

from recipe.rlmr.group_filter import DROP_REASONS, drop_reason
from recipe.rlmr.schema import ConfigError, FilterConfig, RLMRConfig


@pytest.mark.parametrize(
    "scores, ok, valid, high, low, expected",
    [
        ([1.0, 2.0, 3.0], [1, 0, 1], None, None, None, None),
        ([1.0, 2.0, 3.0], [1, 1, 1], [1, 0, 1], None, None, "invalid_reward"),
        ([1.0, float("nan"), 3.0], [1, 1, 1], None, None, None, "invalid_reward"),
        ([1.0, 2.0, 3.0], [0, 0, 0], None, None, None, "all_violate"),
        ([1.0, 2.0, 3.0], [0, 0, 0], [1, 0, 1], None, None, "invalid_reward"),  # first reason wins
        ([8.0, 9.0, 9.5], [1, 1, 0], None, 8.0, None, "all_high"),  # ties at the threshold count
        ([8.0, 7.9, 9.5], [1, 1, 0], None, 8.0, None, None),
        ([-3.0, -2.0, -2.5], [1, 0, 1], None, None, -2.0, "all_low"),
        ([2.0, 2.0, 2.0], [1, 1, 1], None, None, None, "no_signal"),  # ties everywhere: zero advantages
        ([2.0, 2.0, 2.0], [1, 0, 1], None, None, None, None),  # tied scores, mixed verdicts: RLMR has signal
        ([2.0, 3.0, 2.0], [1, 1, 1], None, None, None, None),
        ([5.0], [1], None, None, None, "no_signal"),  # single-sample group
        ([5.0], [0], None, None, None, "all_violate"),
        ([5.0], [1], [0], None, None, "invalid_reward"),
    ],
)
def test_drop_reason(scores, ok, valid, high, low, expected):
    assert drop_reason(scores, ok, valid, high=high, low=low) == expected


def test_drop_reason_refuses_mismatched_groups():
    with pytest.raises(ValueError, match="matching"):
        drop_reason([1.0, 2.0], [1])
    with pytest.raises(ValueError, match="matching"):
        drop_reason([], [])


def test_filter_settings_are_checked():
    def settings(**filter_section):
        return RLMRConfig.from_algorithm({"rlmr": {"filter": filter_section}}).filter

    assert settings(high=9.0, low=1.0).high == 9.0
    with pytest.raises(ConfigError, match=r"algorithm\.rlmr\.filter\.low: must be below high \(1\.0\) \(got 2\.0\)"):
        settings(high=1.0, low=2.0)
    with pytest.raises(ConfigError, match=r"algorithm\.rlmr\.filter\.max_dropped_groups: Input should be greater"):
        settings(max_dropped_groups=-1)
    assert RLMRConfig.from_algorithm({}).filter == FilterConfig()
    # the poll interval applies with the filter off too, so it moved out of the filter's section
    with pytest.raises(ConfigError, match=r"poll_interval_s moved to algorithm\.rlmr\.replay_poll_interval_s"):
        settings(poll_interval_s=0.2)
    assert RLMRConfig.from_algorithm({"rlmr": {"replay_poll_interval_s": 0.2}}).replay_poll_interval_s == 0.2
    with pytest.raises(ConfigError, match=r"algorithm\.rlmr\.replay_poll_interval_s: Input should be greater"):
        RLMRConfig.from_algorithm({"rlmr": {"replay_poll_interval_s": 0}})
    assert (
        FilterConfig().drop_bound(train_batch_size=32) == 128 and FilterConfig(max_dropped_groups=5).drop_bound(32) == 5
    )


# --- the replay buffer, on a real TransferQueue -------------------------------------------------

GOOD = ([3.0, 1.0, 2.0, 4.0], [1, 0, 1, 1], [1, 1, 1, 1])
ALL_VIOLATE = ([3.0, 1.0, 2.0, 4.0], [0, 0, 0, 0], [1, 1, 1, 1])
INVALID = ([3.0, float("nan"), 2.0, 4.0], [1, 1, 1, 0], [1, 0, 1, 1])
NO_SIGNAL = ([2.0, 2.0, 2.0, 2.0], [1, 1, 1, 1], [1, 1, 1, 1])


def produce(partition_id, groups, global_steps=0):
    """Write each group's trajectories, then mark its prompt finished (as the agent loop does)."""
    import transfer_queue as tq

    uids = []
    for scores, ok, valid in groups:
        uid = uuid.uuid4().hex
        for i, (score, verdict, is_valid) in enumerate(zip(scores, ok, valid, strict=False)):
            info = {"writing_score": score, "constraints_ok": verdict, "reward_valid": is_valid}
            tq.kv_put(
                key=f"{uid}_{i}_0",
                partition_id=partition_id,
                fields={"input_ids": torch.tensor([1, 2, 3]), "extra_fields": {"reward_extra_info": info}},
                tag={"is_prompt": False, "seq_len": 3, "global_steps": global_steps},
            )
        tq.kv_put(
            key=uid,
            partition_id=partition_id,
            tag={"is_prompt": True, "status": "finished", "global_steps": global_steps},
        )
        uids.append(uid)
    return uids


class Refiller:
    """Answers the buffer's refill requests with fresh groups of the given kind."""

    def __init__(self, partition_id, group=GOOD):
        self.partition_id, self.group, self.calls, self.uids = partition_id, group, [], []

    def __call__(self, num_prompts):
        self.calls.append(num_prompts)
        self.uids += produce(self.partition_id, [self.group] * num_prompts)
        return num_prompts


def make_buffer(refill, mode="sync", train_batch_size=2, **filter_settings):
    """An RLMR buffer as the trainer builds it: sync ones get verl's DAPO sizing, async ones do not."""
    from recipe.rlmr.replay_buffer import RLMRReplayBuffer, RLMRReplayBufferAsync

    sync_sizing = dict(train_batch_size=train_batch_size, gen_batch_size=1, max_inflight_gen_batches=2)
    return (RLMRReplayBuffer if mode == "sync" else RLMRReplayBufferAsync)(
        trainer_mode=mode,
        trainer_config={},
        max_off_policy_threshold=8,
        max_off_policy_strategy="drop",
        sampler_kwargs={},
        refill_fn=refill,
        poll_interval=0.05,
        filter_groups_metric="rlmr",
        rlmr_filter=(rlmr_filter := FilterConfig(**filter_settings)),
        max_dropped_groups=rlmr_filter.drop_bound(train_batch_size),
        **(sync_sizing if mode == "sync" else {}),
    )


def sampled_uids(batch):
    return {key.split("_")[0] for key in batch.keys}


@pytest.mark.ray
def test_dropped_groups_are_evicted_and_counted_by_reason(transfer_queue):
    partition = f"train-{uuid.uuid4().hex[:8]}"
    good = produce(partition, [GOOD, GOOD])
    produce(partition, [ALL_VIOLATE, INVALID, NO_SIGNAL])
    refill = Refiller(partition)
    batch, metrics = make_buffer(refill).sample(global_steps=0, partition_id=partition, batch_size=2)
    assert sampled_uids(batch) == set(good)
    assert refill.calls == []  # enough good groups: nothing resampled
    assert metrics["rlmr/filter/dropped_groups"] == 3
    assert (
        metrics["rlmr/filter/dropped_all_violate"],
        metrics["rlmr/filter/dropped_invalid_reward"],
        metrics["rlmr/filter/dropped_no_signal"],
    ) == (1, 1, 1)
    assert metrics["rlmr/filter/bound_hit"] == 0
    assert set(DROP_REASONS) == {
        k.removeprefix("rlmr/filter/dropped_")
        for k in metrics
        if k.startswith("rlmr/filter/dropped_") and k != "rlmr/filter/dropped_groups"
    }


@pytest.mark.ray
def test_dropped_groups_are_refilled_by_resampling(transfer_queue):
    partition = f"train-{uuid.uuid4().hex[:8]}"
    good = produce(partition, [GOOD])
    produce(partition, [ALL_VIOLATE, ALL_VIOLATE])
    refill = Refiller(partition)
    batch, metrics = make_buffer(refill).sample(global_steps=0, partition_id=partition, batch_size=2)
    uids = sampled_uids(batch)
    assert len(uids) == 2 and uids <= set(good) | set(refill.uids)  # no dropped group made it in
    assert sum(refill.calls) == metrics["rlmr/filter/resampled_prompts"] > 0
    assert metrics["rlmr/filter/resample_rounds"] == len(refill.calls)
    assert metrics["rlmr/filter/dropped_all_violate"] == 2


@pytest.mark.ray
def test_the_bound_stops_resampling_and_says_so(transfer_queue, caplog):
    partition = f"train-{uuid.uuid4().hex[:8]}"
    produce(partition, [ALL_VIOLATE, ALL_VIOLATE, ALL_VIOLATE])
    refill = Refiller(partition, group=ALL_VIOLATE)  # every resampled group violates too
    with caplog.at_level("WARNING"):
        batch, metrics = make_buffer(refill, max_dropped_groups=2).sample(
            global_steps=0, partition_id=partition, batch_size=2
        )
    assert len(sampled_uids(batch)) == 2  # training goes on with what there is
    assert metrics["rlmr/filter/bound_hit"] == 1 and metrics["rlmr/filter/dropped_groups"] == 2
    assert "max_dropped_groups" in caplog.text


@pytest.mark.ray
def test_missing_verdict_in_a_finished_group_is_a_clear_error(transfer_queue):
    import transfer_queue as tq

    from recipe.rlmr.verdicts import MissingVerdictError

    partition = f"train-{uuid.uuid4().hex[:8]}"
    uid = uuid.uuid4().hex
    tq.kv_put(
        key=f"{uid}_0_0",
        partition_id=partition,
        fields={"input_ids": torch.tensor([1]), "extra_fields": {"reward_extra_info": {"acc": 1.0}}},
        tag={"is_prompt": False, "global_steps": 0},
    )
    tq.kv_put(key=uid, partition_id=partition, tag={"is_prompt": True, "status": "finished", "global_steps": 0})
    with pytest.raises(MissingVerdictError, match="constraints_ok"):
        make_buffer(Refiller(partition)).sample(global_steps=0, partition_id=partition, batch_size=1)


def trainer_building_buffers(cls_name="RLMRTrainerSync", mode="sync", filter_metric="rlmr", poll_interval_s=0.5):
    """An RLMR trainer with just what ``_build_replay_buffer`` reads (no workers, no Ray)."""
    from omegaconf import OmegaConf

    from recipe.rlmr import trainer as trainers

    trainer = object.__new__(getattr(trainers, cls_name))
    trainer.trainer_mode = mode
    trainer._add_prompts_to_generate = lambda n: n
    filter_groups = {"enable": filter_metric is not None, "metric": filter_metric, "max_inflight_gen_batches": 3}
    trainer.config = OmegaConf.create(
        {
            "algorithm": {
                "filter_groups": filter_groups,
                "rlmr": {"filter": {"high": 9.0}, "replay_poll_interval_s": poll_interval_s},
            },
            "reward": {"reward_model": {"enable": False, "enable_resource_pool": False}},
            "data": {"train_batch_size": 16},
            "trainer": {
                "v1": {
                    "sampler": {"max_off_policy_threshold": 2, "max_off_policy_strategy": "drop", "sampler_kwargs": {}}
                }
            },
        }
    )
    return trainer


def test_rlmr_trainer_builds_the_rlmr_buffer_with_verls_arguments():
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

    from recipe.rlmr.replay_buffer import RLMRReplayBuffer

    trainer = trainer_building_buffers()
    buffer = trainer._build_replay_buffer()
    assert type(buffer) is RLMRReplayBuffer and isinstance(buffer, ReplayBuffer)
    assert (buffer.train_batch_size, buffer.gen_batch_size, buffer.max_inflight_gen_batches) == (16, 1, 3)
    assert buffer.poll_interval == 0.5 and buffer.rlmr_filter.high == 9.0 and buffer.max_dropped_groups == 64
    # plain DAPO, or no filter at all: verl's own buffer, built with verl's arguments and the recipe's interval
    for metric, gen_batch_size in (("acc", 1), (None, 16)):
        trainer.config.algorithm.filter_groups.enable = metric is not None
        trainer.config.algorithm.filter_groups.metric = metric
        buffer = trainer._build_replay_buffer()
        assert type(buffer) is ReplayBuffer and buffer.filter_groups_metric == metric
        assert (buffer.poll_interval, buffer.gen_batch_size, buffer.refill_fn(7)) == (0.5, gen_batch_size, 7)

    from recipe.rlmr.replay_buffer import RLMRReplayBufferAsync

    buffer = trainer_building_buffers("RLMRTrainerColocateAsync", "colocate_async")._build_replay_buffer()
    assert type(buffer) is RLMRReplayBufferAsync and buffer.poll_interval == 0.5
    assert buffer.train_batch_size is None and buffer.max_dropped_groups == 64  # bound still from data.train_batch_size
    async_buffer = trainer_building_buffers("RLMRTrainerColocateAsync", "colocate_async", None)._build_replay_buffer()
    assert type(async_buffer) is ReplayBufferAsync and async_buffer.poll_interval == 0.5


def test_a_custom_sampler_is_left_as_verl_built_it(tmp_path):
    """trainer.v1.sampler.custom_sampler owns its settings; the recipe does not rebuild it."""
    (tmp_path / "my_sampler.py").write_text(
        "from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer\n\nclass MySampler(ReplayBuffer):\n    pass\n"
    )
    trainer = trainer_building_buffers(filter_metric=None)
    trainer.config.trainer.v1.sampler.custom_sampler = {"path": str(tmp_path / "my_sampler.py"), "name": "MySampler"}
    buffer = trainer._build_replay_buffer()
    assert type(buffer).__name__ == "MySampler" and buffer.poll_interval == 2.0


def test_reward_metrics_summarise_the_reward_side():
    from recipe.rlmr.metrics import reward_metrics

    infos = [
        {
            "writing_score": 4.0,
            "constraints_ok": 1,
            "reward_valid": 1,
            "judge_calls": 1,
            "judge_calls_saved": 0,
            "reward_latency_s": 0.1,
            "response_words": 100,
        },
        {
            "writing_score": 8.0,
            "constraints_ok": 0,
            "reward_valid": 1,
            "judge_calls": 0,
            "judge_calls_saved": 1,
            "reward_latency_s": 0.3,
            "response_words": 300,
        },
        {
            "writing_score": float("nan"),
            "constraints_ok": 0,
            "reward_valid": 0,
            "judge_calls": 1,
            "judge_calls_saved": 0,
            "reward_latency_s": 5.0,
            "response_words": 50,
        },
    ]
    metrics = reward_metrics(infos)
    assert metrics["rlmr/invalid_rewards"] == 1
    assert metrics["rlmr/writing_score_compliant_mean"] == 4.0 and metrics["rlmr/writing_score_violating_mean"] == 8.0
    assert (metrics["rlmr/judge_calls"], metrics["rlmr/judge_calls_saved"]) == (2, 1)
    assert metrics["rlmr/reward_latency_p50_s"] == pytest.approx(0.3)
    assert metrics["rlmr/reward_latency_p95_s"] == pytest.approx(np.percentile([0.1, 0.3, 5.0], 95))
    assert metrics["rlmr/response_words_mean"] == pytest.approx(150)
    assert reward_metrics([{"acc": 1.0}]) == {}


@pytest.mark.ray
def test_async_buffer_evicts_and_refills_exactly(transfer_queue):
    partition = f"train-{uuid.uuid4().hex[:8]}"
    good = produce(partition, [GOOD])
    produce(partition, [NO_SIGNAL, INVALID])
    refill = Refiller(partition)
    batch, metrics = make_buffer(refill, mode="colocate_async").sample(
        global_steps=0, partition_id=partition, batch_size=3
    )
    assert refill.calls == [2]  # async mode refills exactly what it evicted
    assert sampled_uids(batch) == set(good) | set(refill.uids)
    assert (metrics["rlmr/filter/dropped_no_signal"], metrics["rlmr/filter/dropped_invalid_reward"]) == (1, 1)
    assert metrics["rlmr/filter/resampled_prompts"] == 2


@pytest.mark.ray
def test_with_the_filter_off_every_group_is_kept_and_polled_at_the_recipes_interval(transfer_queue, monkeypatch):
    """The buffer the RLMR trainer builds with the filter off is verl's: it drops nothing, not even groups
    RLMR's filter would drop, and it waits ``replay_poll_interval_s`` between polls (recorded, not slept)."""
    from verl.trainer.ppo.v1 import replay_buffer as verl_replay_buffer

    partition = f"train-{uuid.uuid4().hex[:8]}"
    produced = produce(partition, [GOOD, ALL_VIOLATE])
    waits = []

    def sleep(seconds):  # the buffer found too few groups: the last one finishes while it waits
        waits.append(seconds)
        produced.extend(produce(partition, [NO_SIGNAL]))

    clock = types.SimpleNamespace(sleep=sleep, time=time.time)  # the buffer module's own view of `time` only
    monkeypatch.setattr(verl_replay_buffer, "time", clock)
    trainer = trainer_building_buffers(filter_metric=None, poll_interval_s=0.05)
    trainer._add_prompts_to_generate = Refiller(partition)
    batch, metrics = trainer._build_replay_buffer().sample(global_steps=0, partition_id=partition, batch_size=3)
    assert waits == [0.05]
    assert sampled_uids(batch) == set(produced) and len(batch.keys) == 3 * 4
    assert trainer._add_prompts_to_generate.calls == [] and not any("filter" in key for key in metrics)
