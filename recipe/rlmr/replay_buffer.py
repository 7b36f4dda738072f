"""RLMR's group filter inside verl's V1 replay buffer.

verl's replay buffer already does DAPO-style filtering: it classifies each finished group, evicts
the ones to drop, refills the batch by resampling prompts and drains in-flight work. We keep all
of that and replace only the classification (``_dapo_filtered_keys``) with ``drop_reason``.

It is switched on with verl's own keys, ``algorithm.filter_groups.enable=true`` and
``algorithm.filter_groups.metric=rlmr`` (so verl also sets up exact refills and checks that rewards
stream), and the RLMR trainer classes build this buffer instead of verl's. Settings live under
``algorithm.rlmr.filter``.

Poll interval: verl's trainer leaves its buffers at a fixed 2 s between polls of TransferQueue,
and a step's sampling can only end on a poll. The RLMR trainer rebuilds whichever buffer it uses,
this one or verl's own (filter off), with ``algorithm.rlmr.replay_poll_interval_s`` (``rebuilt``).

Bound: at most ``max_dropped_groups`` groups are dropped per training step. Past it, the buffer
keeps what it has (groups that are invalid or all-violating then train with zero advantage, which
the estimator guarantees), logs a warning and reports ``rlmr/filter/bound_hit = 1``, instead of
resampling forever.

Metrics per step: ``rlmr/filter/dropped_<reason>``, ``rlmr/filter/dropped_groups``,
``rlmr/filter/resampled_prompts``, ``rlmr/filter/resample_rounds``, ``rlmr/filter/bound_hit``.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter, defaultdict

import numpy as np
import transfer_queue as tq
from verl.trainer.ppo.v1.replay_buffer import DAPO_FILTERED_REWARD_COUNTS_KEY, ReplayBuffer, ReplayBufferAsync

from recipe.rlmr.group_filter import DROP_REASONS, drop_reason
from recipe.rlmr.schema import FilterConfig
from rewards.reward_info import (
    CONSTRAINTS_OK,
    REWARD_ERROR,
    REWARD_VALID,
    VERDICT_PROVIDER,
    WRITING_SCORE,
    MissingVerdictError,
)

logger = logging.getLogger(__name__)

RLMR_FILTER_METRIC = "rlmr"  # the algorithm.filter_groups.metric value that selects RLMR's criteria


def rebuilt(buffer: ReplayBuffer, cls: type[ReplayBuffer] | None = None, **changes) -> ReplayBuffer:
    """A buffer of ``cls`` (default: ``buffer``'s own class) built with exactly the constructor
    arguments verl gave ``buffer``, except ``changes`` (e.g. ``poll_interval``, which verl's trainer
    does not pass and so leaves at its 2 s default)."""
    names = [n for n in inspect.signature(ReplayBuffer.__init__).parameters if n != "self"]
    kwargs = {name: getattr(buffer, name) for name in names}
    return (cls or type(buffer))(**{**kwargs, **changes})


class RLMRGroupFilterMixin:
    """Mix into a verl ``ReplayBuffer`` class; see the module docstring."""

    def __init__(self, *args, rlmr_filter: FilterConfig, max_dropped_groups: int, **kwargs):
        """``max_dropped_groups``: ``rlmr_filter.drop_bound(data.train_batch_size)``, resolved by the caller
        because verl's asynchronous buffers are not told the train batch size."""
        super().__init__(*args, **kwargs)
        self.rlmr_filter = rlmr_filter
        self.max_dropped_groups = max_dropped_groups
        self._step = Counter()  # per sample() call: dropped groups by reason, resampled prompts, refills
        self._bound_warned = False
        self._reward_outcomes: dict[str, dict] = {}  # trajectory key -> reward_valid/error, until taken
        refill = self.refill_fn

        def counting_refill(num_prompts: int) -> int:
            self._step["resampled_prompts"] += num_prompts
            self._step["resample_rounds"] += 1
            return refill(num_prompts)

        self.refill_fn = counting_refill if refill is not None else None

    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        self._step = Counter()
        batch, metrics = super().sample(global_steps, partition_id, batch_size)
        if partition_id != "val":
            step = self._step
            metrics["rlmr/filter/dropped_groups"] = sum(step[r] for r in DROP_REASONS)
            for reason in DROP_REASONS:
                metrics[f"rlmr/filter/dropped_{reason}"] = step[reason]
            metrics["rlmr/filter/resampled_prompts"] = step["resampled_prompts"]
            metrics["rlmr/filter/resample_rounds"] = step["resample_rounds"]
            metrics["rlmr/filter/bound_hit"] = int(step["bound_hit"] > 0)
        return batch, metrics

    def take_reward_outcomes(self) -> dict[str, dict]:
        """``{trajectory key: {reward_valid, reward_error}}`` of every trajectory classified since the last call,
        kept, dropped or discarded alike: the reward failure budget (``recipe.rlmr.reward_health``) counts them all."""
        outcomes, self._reward_outcomes = self._reward_outcomes, {}
        return outcomes

    def _evict_terminal_groups(self, global_steps, partition_id, eviction_reasons):
        evicted, stale, dropped, metrics = super()._evict_terminal_groups(global_steps, partition_id, eviction_reasons)
        # verl logs this diagnostic as {reward value: count}; ours are {reason: count}, counted above.
        metrics.pop(DAPO_FILTERED_REWARD_COUNTS_KEY, None)
        return evicted, stale, dropped, metrics

    def _dapo_filtered_keys(self, partition_id: str):
        if partition_id == "val" or self.filter_groups_metric != RLMR_FILTER_METRIC:
            return super()._dapo_filtered_keys(partition_id)
        finished = self.finished_keys[partition_id]
        cache = self._dapo_classification_cache[partition_id]  # uid -> reason or None, groups are immutable
        for uid in cache.keys() - finished:
            del cache[uid]
        new_uids = finished - cache.keys()
        for uid, reason in self._classify(partition_id, new_uids).items():
            if reason is not None and sum(self._step[r] for r in DROP_REASONS) >= self.max_dropped_groups:
                self._step["bound_hit"] += 1
                if not self._bound_warned:
                    logger.warning(
                        "RLMR group filter dropped %d groups this step (algorithm.rlmr.filter.max_dropped_groups); "
                        "keeping the rest rather than resampling further",
                        self.max_dropped_groups,
                    )
                    self._bound_warned = True
                reason = None
            elif reason is not None:
                self._step[reason] += 1
            cache[uid] = reason
        dropped = {uid for uid, reason in cache.items() if reason is not None}
        return dropped, Counter()

    def _classify(self, partition_id: str, uids: set[str]) -> dict[str, str | None]:
        if not uids:
            return {}
        keys = [key for key in self.partitions[partition_id] if key.split("_")[0] in uids]
        groups: dict[str, list[dict]] = defaultdict(list)
        if keys:
            data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=["extra_fields"])
            for key, value in zip(keys, data["extra_fields"], strict=True):
                extra = getattr(value, "data", value)
                info = extra.get("reward_extra_info", {}) if isinstance(extra, dict) else {}
                if CONSTRAINTS_OK not in info:
                    raise MissingVerdictError(
                        f"RLMR group filter: trajectory {key} has no reward_extra_info[{CONSTRAINTS_OK!r}]; "
                        f"it is provided by {VERDICT_PROVIDER}"
                    )
                groups[key.split("_")[0]].append(info)
                self._reward_outcomes[key] = {
                    REWARD_VALID: info.get(REWARD_VALID, 1),
                    REWARD_ERROR: info.get(REWARD_ERROR),
                }
        reasons = {}
        for uid in uids:
            infos = groups.get(uid)
            if not infos:  # finished with no trajectories: leave it to verl's failure handling
                reasons[uid] = None
                continue
            scores = [float(info.get(WRITING_SCORE, np.nan)) for info in infos]
            reasons[uid] = drop_reason(
                scores,
                [info[CONSTRAINTS_OK] for info in infos],
                [info.get(REWARD_VALID, 1) for info in infos],
                high=self.rlmr_filter.high,
                low=self.rlmr_filter.low,
            )
        return reasons


class RLMRReplayBuffer(RLMRGroupFilterMixin, ReplayBuffer):
    """verl's synchronous replay buffer with RLMR's group filter."""


class RLMRReplayBufferAsync(RLMRGroupFilterMixin, ReplayBufferAsync):
    """verl's asynchronous replay buffer with RLMR's group filter."""
