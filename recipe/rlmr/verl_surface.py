"""Every joint with verl that is not verl's documented extension surface, in one list, with a check.

Most of the recipe plugs into verl through its public registries (``register_adv_est``,
``@register`` of the reward managers, ``PlatformRegistry``, ``EngineRegistry.register``, the
``verl.plugins`` entry point). The joints below are verl's private names and implementation details
we rely on: overridden underscore methods, registries without a public ``register``, attributes
read from verl's objects, and the targets of the two CPU patches. ``check()`` verifies each exists
with the signature (or shape) we expect in the installed verl; ``tests/test_verl_surface.py`` runs it,
so moving to another verl release fails one named test per broken joint instead of a training run.

Written against verl 0.9.1 (see docs/verl_integration.md). When a check fails: read the new verl
source at that name, adapt the file in ``used_by``, then update the expected signature here.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass


@dataclass(frozen=True)
class Joint:
    module: str  # where the name lives
    name: str  # attribute path inside ``module`` ("Class.method" allowed)
    used_by: str  # our file that relies on it
    why: str
    params: tuple[str, ...] | None = None  # a callable's parameter names, in order (None: not checked)
    kind: type | None = None  # or: the type the value must have
    attributes: tuple[str, ...] = ()  # or: ``self.<name>`` each set in the class's source
    source_contains: str | None = None  # or: a string the module's source must contain


JOINTS: tuple[Joint, ...] = (
    Joint(
        "verl.model_merger.base_model_merger",
        "parse_args",
        "recipe/rlmr/pipeline/merge.py",
        "the pipeline's merge runs `python -m verl.model_merger` in-process: this parser reads sys.argv",
        params=(),
    ),
    Joint(
        "verl.model_merger.base_model_merger",
        "generate_config_from_args",
        "recipe/rlmr/pipeline/merge.py",
        "turns that parser's namespace into the ModelMergerConfig the FSDP merger takes",
        params=("args",),
    ),
    Joint(
        "verl.trainer.ppo.v1.trainer_base",
        "PPOTrainer._compute_advantage",
        "recipe/rlmr/trainer.py",
        "overridden: supplies the constraint verdicts to the rlmr estimator around verl's own advantage step",
        params=("self", "batch", "metrics"),
    ),
    Joint(
        "verl.trainer.ppo.v1.trainer_base",
        "PPOTrainer._save_checkpoint",
        "recipe/rlmr/trainer.py",
        "overridden: also writes the failure budget's count into default_local_dir/global_step_N",
        params=("self",),
    ),
    Joint(
        "verl.trainer.ppo.v1.trainer_base",
        "PPOTrainer._load_checkpoint",
        "recipe/rlmr/trainer.py",
        "overridden: restores the failure budget's count from the resumed global_step_N folder",
        params=("self",),
    ),
    Joint(
        "verl.trainer.ppo.v1.trainer_base",
        "PPOTrainer._build_replay_buffer",
        "recipe/rlmr/trainer.py",
        "overridden: swaps in the RLMR group-filter buffer and its poll interval",
        params=("self",),
    ),
    Joint(
        "verl.trainer.ppo.v1.trainer_base",
        "PPOTrainer._val_metrics_update",
        "recipe/rlmr/trainer.py",
        "overridden: adds the rlmr/* validation metrics",
        params=(
            "self",
            "data_sources",
            "sample_uids",
            "reward_extra_infos_dict",
            "sample_turns",
            "expected_acc_counts",
        ),
    ),
    Joint(
        "verl.trainer.ppo.v1.trainer_base",
        "PPOTrainer.step",
        "recipe/rlmr/trainer.py",
        "overridden: the reward failure budget is checked on each step's batch",
        params=("self", "metrics", "timing_raw"),
    ),
    Joint(
        "verl.trainer.ppo.v1.trainer_base",
        "TRAINER_REGISTRY",
        "recipe/rlmr/trainer.py",
        "mode name -> trainer class; install() replaces verl's classes with the RLMR-aware subclasses",
        kind=dict,
    ),
    Joint(
        "verl.trainer.ppo.v1.replay_buffer",
        "ReplayBuffer._dapo_filtered_keys",
        "recipe/rlmr/replay_buffer.py",
        "overridden: RLMR's group filter classifies finished groups instead of DAPO's reward-variance rule",
        params=("self", "partition_id"),
    ),
    Joint(
        "verl.trainer.ppo.v1.replay_buffer",
        "ReplayBuffer._evict_terminal_groups",
        "recipe/rlmr/replay_buffer.py",
        "overridden: drops verl's {reward value: count} diagnostic, which RLMR's reasons replace",
        params=("self", "global_steps", "partition_id", "eviction_reasons"),
    ),
    Joint(
        "verl.trainer.ppo.v1.replay_buffer",
        "ReplayBuffer",
        "recipe/rlmr/replay_buffer.py",
        "read by the filter (finished groups, its per-partition cache, the metric) and by rebuilt(), which "
        "rebuilds a buffer from the attributes named like ReplayBuffer.__init__'s parameters",
        attributes=(
            "finished_keys",
            "_dapo_classification_cache",
            "filter_groups_metric",
            "refill_fn",
            "trainer_mode",
            "trainer_config",
            "max_off_policy_threshold",
            "max_off_policy_strategy",
            "sampler_kwargs",
            "poll_interval",
            "train_batch_size",
            "gen_batch_size",
            "max_inflight_gen_batches",
            "sync_refill_failed_groups",
        ),
    ),
    Joint(
        "verl.trainer.ppo.v1.replay_buffer",
        "ReplayBuffer.__init__",
        "recipe/rlmr/replay_buffer.py",
        "rebuilt() passes every one of these back by name",
        params=(
            "self",
            "trainer_mode",
            "trainer_config",
            "max_off_policy_threshold",
            "max_off_policy_strategy",
            "sampler_kwargs",
            "poll_interval",
            "refill_fn",
            "filter_groups_metric",
            "train_batch_size",
            "gen_batch_size",
            "max_inflight_gen_batches",
            "sync_refill_failed_groups",
        ),
    ),
    Joint(
        "verl.trainer.ppo.v1.replay_buffer",
        "DAPO_FILTERED_REWARD_COUNTS_KEY",
        "recipe/rlmr/replay_buffer.py",
        "the metric key _evict_terminal_groups' override removes",
        kind=str,
    ),
    Joint(
        "verl.workers.rollout.base",
        "_ROLLOUT_REGISTRY",
        "recipe/rlmr/rollout/__init__.py",
        "(name, mode) -> dotted class path; the `hf` rollout registers here (verl has no public register)",
        kind=dict,
    ),
    Joint(
        "verl.workers.engine.base",
        "EngineRegistry._engines",
        "recipe/rlmr/cpu/engines.py",
        "read to register the FSDP engines for device cpu only where verl has not",
        kind=dict,
    ),
    Joint(
        "verl.workers.engine.fsdp.transformer_impl",
        "CPUOffloadPolicy",
        "recipe/rlmr/cpu/patches.py",
        "CPU patch target: replaced inside this module by a policy that never pins memory",
        params=("pin_memory",),
    ),
    Joint(
        "verl.workers.engine.fsdp.transformer_impl",
        "FSDPEngineWithLMHead",
        "recipe/rlmr/cpu/engines.py",
        "registered for device cpu",
        kind=type,
    ),
    Joint(
        "verl.workers.engine.fsdp.transformer_impl",
        "FSDPEngineWithValueHead",
        "recipe/rlmr/cpu/engines.py",
        "registered for device cpu",
        kind=type,
    ),
    Joint(
        "verl.utils.distributed",
        "",
        "recipe/rlmr/cpu/patches.py",
        "CPU patch: verl builds the backend string 'cpu:gloo,{device}:{backend}', which the wrapped "
        "torch.distributed.init_process_group collapses for device cpu",
        source_contains="cpu:gloo,",
    ),
    Joint(
        "torch.distributed",
        "init_process_group",
        "recipe/rlmr/cpu/patches.py",
        "CPU patch target (wrapped); the backend arrives first positionally or as backend=",
        params=("backend",),
    ),
)


def _resolve(module: str, name: str):
    value = importlib.import_module(module)
    for part in [p for p in name.split(".") if p]:
        value = getattr(value, part)
    return value


def check_joint(joint: Joint) -> str | None:
    """None if ``joint`` holds in the installed verl, else what is wrong."""
    label = f"{joint.module}:{joint.name}" if joint.name else joint.module
    try:
        value = _resolve(joint.module, joint.name)
    except (ImportError, AttributeError) as err:
        return f"{label} is gone ({type(err).__name__}: {err}); {joint.used_by} relies on it: {joint.why}"
    if joint.params is not None:
        actual = tuple(inspect.signature(value).parameters)
        if actual[: len(joint.params)] != joint.params:
            return f"{label} takes {actual}, {joint.used_by} expects {joint.params}: {joint.why}"
    if joint.kind is not None and not isinstance(value, joint.kind):
        return f"{label} is a {type(value).__name__}, {joint.used_by} expects a {joint.kind.__name__}"
    if joint.attributes:
        source = inspect.getsource(value)
        missing = [a for a in joint.attributes if f"self.{a}" not in source]
        if missing:
            return f"{label} no longer sets {missing}; {joint.used_by} reads them: {joint.why}"
    if joint.source_contains is not None and joint.source_contains not in inspect.getsource(value):
        return f"{label} no longer contains {joint.source_contains!r}; {joint.used_by}: {joint.why}"
    return None


def check() -> list[str]:
    """One line per broken joint (empty: the installed verl has every joint this recipe relies on)."""
    return [problem for joint in JOINTS if (problem := check_joint(joint))]
