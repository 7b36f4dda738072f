"""Development and demonstration tooling, not part of the algorithm.

launch          the local launcher: tiny assets, a dev RM server, verl's trainer on this machine's CPU or CUDA
demo            `make demo`: a real RLMR training run on CPU with tiny models, table + PNG
estimator_demo  the estimator alone on a hand-made batch (seconds)
tiny_assets     tiny tokenizer, policy and reward models built on the spot (tests, demos)
sample_data     a small sample data set (seed prompts -> augment -> convert)
smollm2         SmolLM2-135M-Instruct from its GGUF file, as a real small policy
gen_docs        docs/config.md from the config schemas
"""
