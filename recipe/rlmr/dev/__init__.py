"""Development and demonstration tooling, not part of the algorithm.

demo            `make demo`: a real RLMR training run on CPU with tiny models, table + PNG
estimator_demo  the estimator alone on a hand-made batch (seconds)
tiny_assets     tiny tokenizer, policy and reward models built on the spot (tests, demos)
sample_data     a small sample data set (seed prompts -> augment -> convert)
"""
