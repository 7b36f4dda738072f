"""The paper's length-hacking contrast in miniature, measured: ``python -m recipe.rlmr.experiment``.

    python -m recipe.rlmr.experiment --workdir DIR [--policy tiny|smollm2]
        [--arms writing_only,fixed_weight,rlmr] [--steps N] [--seeds 0,1] [--device cpu|cuda] [overrides...]

Each arm is a real training run through verl's trainer (``recipe.rlmr.dev.launch``), identical
except ``algorithm.rlmr.mode``. The prompts are creative prompts with one IFEval word limit each;
the writing reward model is ``recipe.rlmr.dev.servers.reward.LengthBiasedRM`` (score = characters / 100 over the
vLLM ``/classify`` protocol), a deliberately length-biased stand-in for a human-preference RM.
Outputs in DIR: ``metrics.csv``, ``summary.md``, ``curves.png``, and ``runs/<arm>_seed<s>/``
(trainer log, tensorboard, composed config). See docs/experiment.md.
"""
