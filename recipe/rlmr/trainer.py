"""The V1 trainer hook that brings constraint verdicts to the RLMR estimator.

Choice of hook. verl 0.9.1's V1 trainer picks its class by ``trainer.v1.trainer_mode``
("sync", "colocate_async", "separate_async"), and the mode string also steers behaviour elsewhere
(replay buffer choice, refills, checkpoints), so a new mode name would change more than the
advantage step. Instead verl-rlmr subclasses each of verl's three mode classes with
``RLMRAdvantageMixin`` and registers the subclass under verl's own mode name. The subclass
overrides ``_compute_advantage``:

- for any estimator other than ``rlmr`` it calls verl's method unchanged;
- for ``rlmr`` it reads ``constraints_ok`` (and ``reward_valid``, when present) from each
  trajectory's ``reward_extra_info`` in TransferQueue (as verl's replay buffer reads its DAPO
  metric), supplies the verdicts to the estimator for this one call (``recipe.rlmr.verdicts``),
  runs verl's own advantage step (KL in reward, rollout correction, write-back stay verl's), and
  logs ``rlmr/*`` metrics.

It also overrides ``_build_replay_buffer``: with ``algorithm.filter_groups.metric=rlmr`` it returns
verl's buffer class extended with RLMR's group filter (``recipe.rlmr.replay_buffer``), and in every
case the buffer polls TransferQueue every ``algorithm.rlmr.replay_poll_interval_s`` (verl's own
trainer leaves it at a fixed 2 s, which rounds short steps up to 2 s multiples).

This keeps ``python -m verl.trainer.main_ppo algorithm.adv_estimator=rlmr`` working with no
extra key, in all three modes. The plugin installs the classes lazily, when
``verl.trainer.ppo.v1`` is first imported, so processes that never train pay nothing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import MutableMapping

import transfer_queue as tq
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync
from verl.trainer.ppo.v1.trainer_base import PPOTrainer
from verl.trainer.ppo.v1.trainer_colocate_async import PPOTrainerColocateAsync
from verl.trainer.ppo.v1.trainer_separate_async import PPOTrainerSeparateAsync
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from recipe.rlmr.config_check import check_config
from recipe.rlmr.metrics import instruction_following_metrics, reward_metrics
from recipe.rlmr.reward_health import RewardHealth
from recipe.rlmr.schema import RLMRConfig
from recipe.rlmr.verdicts import needs_verdicts, supply_verdicts, verdicts_from_extra_infos
from rewards.config import RewardConfig
from rewards.preflight import preflight

logger = logging.getLogger(__name__)

REWARD_HEALTH_FILE = "rlmr_reward_health.json"  # in global_step_N/: the failure budget's count of failing steps


def fetch_reward_extra_infos(batch: KVBatchMeta) -> list:
    """Each trajectory's ``reward_extra_info`` (None where absent), in ``batch.keys`` order."""
    # Trajectory keys are "{uid}_{session}_{output}". An agent loop with several outputs per
    # session (multi-turn) would make each turn a group member; RLMR scores whole responses.
    multi_output = [key for key in batch.keys if not key.endswith("_0")]
    if multi_output:
        raise NotImplementedError(
            "algorithm.adv_estimator=rlmr scores one response per session, but the agent loop produced several "
            f"outputs per session (e.g. {multi_output[:3]}); use a single-turn agent loop"
        )
    return _extra_infos(batch)


def _extra_infos(batch: KVBatchMeta) -> list:
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
    extra_infos = []
    for value in data["extra_fields"]:
        extra_fields = getattr(value, "data", value)
        extra_infos.append(extra_fields.get("reward_extra_info") if isinstance(extra_fields, dict) else None)
    return extra_infos


class RLMRAdvantageMixin:
    """Mix into a verl V1 ``PPOTrainer`` subclass to give the ``rlmr`` estimator its verdicts."""

    def __init__(self, *args, **kwargs):
        # The trainer is built before any worker or model weight: a misspelled or out-of-range
        # algorithm.rlmr / reward.rlmr key, or a reward endpoint that does not answer as training
        # needs (rewards.preflight), fails here, seconds after launch, in every entry point.
        config = kwargs["config"] if "config" in kwargs else args[0]
        check_config(config, notice=None)  # every rule the entry points check (recipe.rlmr.config_check)
        preflight(config)
        super().__init__(*args, **kwargs)

    def step(self, metrics: dict, timing_raw: dict) -> KVBatchMeta:
        """verl's training step, then the reward failure budget (``recipe.rlmr.reward_health``) on what it scored."""
        batch = super().step(metrics, timing_raw)
        metrics.update(self._check_reward_health(batch))
        return batch

    def _check_reward_health(self, batch: KVBatchMeta) -> dict[str, float]:
        """Every trajectory scored for the step: the batch, plus what the replay buffer dropped or discarded."""
        if getattr(self, "_reward_health", None) is None:
            self._reward_health = RewardHealth(RewardConfig.from_verl(self.config).failure_budget)
        scored = dict(zip(batch.keys, _extra_infos(batch), strict=True))
        take_dropped = getattr(self.replay_buffer, "take_reward_outcomes", None)
        if take_dropped is not None:
            scored = {**take_dropped(), **scored}
        return self._reward_health.observe(self.global_steps, scored.values())

    def _save_checkpoint(self):
        """verl's checkpoint, plus the failure budget's run of failing steps (``REWARD_HEALTH_FILE``)."""
        super()._save_checkpoint()
        health = getattr(self, "_reward_health", None)
        if health is not None:
            folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, REWARD_HEALTH_FILE), "w") as handle:
                json.dump(health.state_dict(), handle)

    def _load_checkpoint(self):
        """verl's resume, then the failure budget's count as it was saved (absent in older checkpoints: 0)."""
        result = super()._load_checkpoint()
        if self.global_steps > 0:
            trainer = self.config.trainer
            if trainer.resume_mode == "resume_path":
                folder = trainer.resume_from_path
            else:
                folder = os.path.join(trainer.default_local_dir, f"global_step_{self.global_steps}")
            path = os.path.join(os.path.abspath(folder), REWARD_HEALTH_FILE)
            if os.path.exists(path):
                with open(path) as handle:
                    state = json.load(handle)
                if getattr(self, "_reward_health", None) is None:
                    self._reward_health = RewardHealth(RewardConfig.from_verl(self.config).failure_budget)
                self._reward_health.load_state_dict(state)
        return result

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        if not needs_verdicts(self.config.algorithm.adv_estimator):
            return super()._compute_advantage(batch, metrics)
        extra_infos = fetch_reward_extra_infos(batch)
        with supply_verdicts(*verdicts_from_extra_infos(extra_infos, batch.keys)) as step:
            batch = super()._compute_advantage(batch, metrics)
        metrics.update(step.metrics)
        metrics.update(reward_metrics(extra_infos, batch.keys))
        return batch

    def _val_metrics_update(self, data_sources, sample_uids, reward_extra_infos_dict, *args, **kwargs):
        """verl's per-data-source validation metrics, plus IFEval's four figures where rules were checked."""
        metrics = super()._val_metrics_update(data_sources, sample_uids, reward_extra_infos_dict, *args, **kwargs)
        metrics.update(instruction_following_metrics(data_sources, reward_extra_infos_dict))
        return metrics

    def _build_replay_buffer(self):
        """verl's buffer, or, with ``algorithm.filter_groups.metric=rlmr``, the same buffer with RLMR's filter;
        either way polling every ``algorithm.rlmr.replay_poll_interval_s``. A custom sampler
        (``trainer.v1.sampler.custom_sampler``) is returned as verl built it: it owns its settings."""
        # Imported here: recipe.rlmr.replay_buffer imports verl's V1 package, whose import installs this module.
        from recipe.rlmr.replay_buffer import RLMR_FILTER_METRIC, RLMRReplayBuffer, RLMRReplayBufferAsync, rebuilt

        buffer = super()._build_replay_buffer()
        if type(buffer) not in (ReplayBuffer, ReplayBufferAsync):
            return buffer
        settings = RLMRConfig.from_algorithm(self.config.algorithm)
        if buffer.filter_groups_metric != RLMR_FILTER_METRIC:
            return rebuilt(buffer, poll_interval=settings.replay_poll_interval_s)
        cls = RLMRReplayBufferAsync if isinstance(buffer, ReplayBufferAsync) else RLMRReplayBuffer
        return rebuilt(
            buffer,
            cls,
            poll_interval=settings.replay_poll_interval_s,
            rlmr_filter=settings.filter,
            max_dropped_groups=settings.filter.drop_bound(self.config.data.train_batch_size),
        )


class RLMRTrainerSync(RLMRAdvantageMixin, PPOTrainerSync):
    """verl's synchronous V1 trainer, RLMR-aware."""


class RLMRTrainerColocateAsync(RLMRAdvantageMixin, PPOTrainerColocateAsync):
    """verl's colocated asynchronous V1 trainer, RLMR-aware."""


class RLMRTrainerSeparateAsync(RLMRAdvantageMixin, PPOTrainerSeparateAsync):
    """verl's separate-pool asynchronous V1 trainer, RLMR-aware."""


# mode name -> (verl's class, its RLMR-aware subclass)
RLMR_TRAINERS: dict[str, tuple[type[PPOTrainer], type[PPOTrainer]]] = {
    "sync": (PPOTrainerSync, RLMRTrainerSync),
    "colocate_async": (PPOTrainerColocateAsync, RLMRTrainerColocateAsync),
    "separate_async": (PPOTrainerSeparateAsync, RLMRTrainerSeparateAsync),
}


def install(registry: MutableMapping[str, type[PPOTrainer]] | None = None) -> None:
    """Put the RLMR-aware classes under verl's mode names in verl's trainer registry.

    Only entries that still hold verl's own class are replaced; a mode another extension already
    replaced is left alone (its ``rlmr`` runs then fail with a clear MissingVerdictError).
    """
    if registry is None:
        from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY as registry
    for mode, (verl_cls, rlmr_cls) in RLMR_TRAINERS.items():
        current = registry.get(mode)
        if current is verl_cls:
            registry[mode] = rlmr_cls
        elif current is not rlmr_cls:
            logger.warning(
                "trainer mode %r is %r, not verl's %r: left as is, rlmr needs RLMRAdvantageMixin",
                mode,
                current,
                verl_cls,
            )


# Registering at import is verl's own idiom (``@register_trainer``); the plugin imports this module
# right after ``verl.trainer.ppo.v1``.
install()
