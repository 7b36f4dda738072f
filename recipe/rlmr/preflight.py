"""The reward endpoints' preflight as a command, on the recipe config (``rlmr_trainer``):

    python -m recipe.rlmr.preflight [hydra overrides...]

Composes the config as a launch would and runs ``rewards.preflight.preflight`` on it (even when
``reward.rlmr.preflight.enable=false``: the command is asked for explicitly). Exit 0 when every
configured endpoint answered, 1 naming each failing endpoint otherwise. See ``rewards.preflight``.
"""

from __future__ import annotations

import sys

from recipe.rlmr.config_check import check_config
from recipe.rlmr.dry_run import compose_recipe
from rewards.config import RewardConfig
from rewards.preflight import preflight, uses_rlmr_rewards


def main(argv: list[str] | None = None) -> int:
    """Compose the recipe config with ``argv`` (Hydra overrides) and probe; 0 when every endpoint answered."""
    overrides = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in overrides):
        print(__doc__)
        return 0
    try:
        config = compose_recipe(overrides)
        check_config(config)  # every rule a launch checks, before any endpoint is asked
        if not uses_rlmr_rewards(config):
            print(f"reward.reward_manager.name={config.reward.reward_manager.name}: not `rlmr`, nothing to probe")
            return 0
        settings = RewardConfig.from_verl(config)
        if not settings.preflight.enable:  # the command is asked for explicitly: probe anyway
            config.reward.rlmr.preflight.enable = True
        preflight(config)
    except Exception as err:
        print(f"PREFLIGHT FAILED: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print("PREFLIGHT OK: every configured reward endpoint answered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
