"""RLMR recipe for verl: mixed-reward GRPO for creative writing (arXiv 2508.18642).

Modules, one idea each:
    advantage      the RLMR advantage estimator (pure tensor math)
    verdicts       how per-sample constraint verdicts reach the estimator inside verl's trainer
    trainer        the V1 trainer hook that supplies those verdicts
    plugin         registration with verl (loaded through the ``verl.plugins`` entry point)
"""

# Import verl before any module of ours: `import verl` loads our plugin, which imports these
# modules; starting from verl keeps that from running in the middle of one of them.
import verl  # noqa: E402,F401
