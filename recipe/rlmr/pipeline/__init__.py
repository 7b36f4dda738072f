"""The paper's pipeline in miniature, end to end (``python -m recipe.rlmr.pipeline``, docs/pipeline.md).

presets   the quick (tiny) and full (SmolLM2) settings, one declaration per field
prompts   creative prompts with IFEval constraints, split into training and held-out sets
stages    preference pairs labelled by the referee, the writing RM, the RL arms, evaluation, over-optimisation
merge     verl's model_merger, float32 weights restored
report    summary.md, results.csv, overopt.csv, pipeline.png
cli       the stage loop: skip what is done, --from to redo, a progress line per stage
"""
