"""Training and evaluating the writing reward model (``python -m rewards.train_rm`` / ``rewards.eval_rm``)."""
