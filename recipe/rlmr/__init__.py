"""RLMR recipe for verl: mixed-reward GRPO for creative writing (arXiv 2508.18642).

Modules, one idea each:
    advantage      the RLMR advantage estimator and the paper's baselines (pure tensor math)
    verdicts       how per-sample constraint verdicts reach the estimator inside verl's trainer
    trainer        the V1 trainer hook that supplies those verdicts (and builds the filtering buffer)
    group_filter   which finished groups to drop (pure)
    replay_buffer  that filter inside verl's V1 replay buffer
    metrics        the rlmr/* metrics
    plugin         registration with verl (loaded through the ``verl.plugins`` entry point)
    main_rlmr      the recipe's entry point; dry_run checks a launch without starting it
    demo           `make demo`; tiny_assets builds tiny models for development and tests
"""

# Import verl before any module of ours: `import verl` loads our plugin, which imports these
# modules; starting from verl keeps that from running in the middle of one of them.
import verl  # noqa: E402,F401
