"""Every rule a launch must pass, in one function: ``check_config(config)`` on verl's whole config.

Called by every entry point, so each refuses the same settings, before anything starts:
``python -m recipe.rlmr.main_rlmr`` (in the driver, before Ray), the dry run
(``recipe.rlmr.dry_run``, so ``DRY_RUN=1`` refuses what the run would), the RLMR trainer's
``__init__`` (which covers verl's own ``main_ppo``) and the preflight command
(``recipe.rlmr.preflight``). The rules:

- single-section: ``algorithm.rlmr`` and ``reward.rlmr`` against their schemas whenever present
  (``recipe.rlmr.schema.check_sections``: a typo fails even with another estimator);
- verl's legacy top-level ``reward_model.*`` / ``custom_reward_function.*`` keys: verl 0.9.1 declares
  and ignores them, so any value set there is refused (``legacy_rules``);
- ``reward.rlmr`` with verl's ``reward`` section, for the `rlmr` manager
  (``rewards.config.reward_rules``): a writing RM must be placed (``writing_rm.url`` or a verl-served
  ``reward.reward_model``), and a ``writing_rm.url`` needs ``model`` and ``tokenizer``;
- for ``algorithm.adv_estimator=rlmr``: verl's V1 trainer (``trainer.use_v1``); a verl-served RM
  only in its streaming mode (``reward.reward_model.enable_resource_pool``);
- the CPU backend (``trainer.device=cpu``) with a trainer mode it can run: ``sync`` and
  ``colocate_async``, not ``separate_async`` (see ``platform_rules``).

All broken rules are reported at once, in one ``ConfigError`` (a ``ValueError``) naming each key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recipe.rlmr.schema import RLMRConfig, check_sections
from recipe.rlmr.verdicts import needs_verdicts
from rewards.config import ConfigError, RewardConfig, reward_rules
from rewards.reward_info import CONSTRAINTS_OK


def _get(config: Any, dotted: str, default: Any = None) -> Any:
    node = config
    for key in dotted.split("."):
        node = node.get(key, None) if node is not None else None
    return default if node is None else node


def estimator_rules(config: Any, notice: Callable[[str], None] | None = print) -> list[str]:
    """The rules of ``algorithm.adv_estimator=rlmr`` on the rest of verl's config; one message each."""
    if not needs_verdicts(_get(config, "algorithm.adv_estimator")):
        return []
    problems = []
    if not _get(config, "trainer.use_v1", True):
        problems.append("algorithm.adv_estimator=rlmr needs verl's V1 trainer: set trainer.use_v1=true")
    manager, source = _get(config, "reward.reward_manager.name"), _get(config, "reward.reward_manager.source")
    if notice is not None and manager != "rlmr" and source == "register":
        # Another manager is allowed if it returns constraints_ok, but say so up front.
        notice(
            f"NOTICE: reward.reward_manager.name={manager}; it must return "
            f"reward_extra_info[{CONSTRAINTS_OK!r}] for every trajectory, or the first advantage step fails"
        )
    if _get(config, "reward.reward_model.enable", False) and not _get(
        config, "reward.reward_model.enable_resource_pool", False
    ):
        problems.append(
            "RLMR needs streaming rewards: with reward.reward_model.enable=True also set "
            "reward.reward_model.enable_resource_pool=True (the colocated mode drops the constraint spec)"
        )
    return problems


LEGACY_SECTIONS = ("reward_model", "custom_reward_function")


def legacy_rules(config: Any) -> list[str]:
    """verl 0.9.1 still declares its old top-level ``reward_model.*`` and ``custom_reward_function.*`` keys
    (every default null) and ignores them: a value set there would be silently dropped, so it is refused."""
    changed: list[str] = []

    def walk(node: Any, path: str) -> None:
        if hasattr(node, "items"):
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif node is not None:
            changed.append(path)

    for section in LEGACY_SECTIONS:
        walk(_get(config, section), section)
    if not changed:
        return []
    return [f"legacy keys {sorted(changed)} are silently ignored by verl 0.9.1: use the reward.* group instead"]


def platform_rules(config: Any) -> list[str]:
    """What the opt-in CPU backend cannot run, refused at launch rather than after the workers start."""
    if str(_get(config, "trainer.device", "cuda")) != "cpu":
        return []
    mode = _get(config, "trainer.v1.trainer_mode", "sync")
    if mode == "separate_async":
        return [
            "trainer.v1.trainer_mode=separate_async cannot run on the CPU backend (trainer.device=cpu): verl 0.9.1 "
            "pushes weights to its standalone rollout pool only through a GPU checkpoint engine "
            "(actor_rollout_ref.rollout.checkpoint_engine.backend nccl/nixl/mooncake; 'naive' is refused). "
            "On CPU use sync or colocate_async; separate_async with RLMR needs GPUs"
        ]
    return []


def check_config(config: Any, notice: Callable[[str], None] | None = print) -> tuple[RLMRConfig, RewardConfig]:
    """Check every rule (see the module docstring); the parsed ``algorithm.rlmr`` and ``reward.rlmr``.

    ``notice`` prints what is allowed but worth saying (None: silent, as in the trainer, after the driver said it)."""
    rlmr, reward = check_sections(config)  # the cross-section rules read valid sections
    problems = legacy_rules(config) + reward_rules(config) + estimator_rules(config, notice) + platform_rules(config)
    if problems:
        raise ConfigError("\n".join(problems))
    return rlmr, reward
