"""RLMR recipe for verl: mixed-reward GRPO for creative writing (arXiv 2508.18642).

Modules, one idea each:
    advantage      the RLMR advantage estimator and the paper's baselines (pure tensor math)
    verdicts       how per-sample constraint verdicts reach the estimator inside verl's trainer
    trainer        the V1 trainer hook that supplies those verdicts (and builds the filtering buffer)
    group_filter   which finished groups to drop (pure)
    replay_buffer  that filter inside verl's V1 replay buffer
    metrics        the rlmr/* metrics
    reward_health  the reward failure budget (stop a run whose rewards keep failing)
    schema         the ``algorithm.rlmr`` config schema
    config_check   every config rule in one function, called by every entry point
    plugin         registration with verl (loaded through the ``verl.plugins`` entry point)
    main_rlmr      the recipe's entry point; dry_run checks a launch without starting it
    preflight      ``python -m recipe.rlmr.preflight``: probe the reward endpoints of a config
    verl_surface   every private verl name the recipe relies on, with a check

Subpackages:
    cpu            the opt-in CPU platform (VERL_PLATFORM=cpu): platform, engines, patches
    rollout        the ``hf`` rollout (transformers' generate), on any device
    dev            development tooling: ``make demo``, the local launcher, tiny assets, sample data,
                   docs generator, SmolLM2, and ``servers`` (all dev and test servers)
    experiment     the length-hacking experiment (``make experiment``)
    config         rlmr_trainer.yaml; scripts: the launch scripts per model size
"""

# Import verl before any module of ours: `import verl` loads our plugin, which imports these
# modules; starting from verl keeps that from running in the middle of one of them.
import verl  # noqa: E402,F401
