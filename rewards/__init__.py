"""The reward side of RLMR, and the ground floor every stage shares (docs/architecture.md).

Ground floor (contracts; imported by data_prep, evaluation and the recipe through public names):
    spec           the constraint spec (rule and free-text constraints of a prompt)
    constraints    the constraint catalog and its deterministic checks (IFEval's + rlmr:*); nltk_data
    reward_info    the reward_extra_info keys (manager <-> filter <-> estimator <-> metrics)
    readers        input-file readers (jsonl, json, csv, parquet, saved datasets), shipped benchmark files
    http           the pooled HTTP client with retries; HTTPCallError
    chat           the one OpenAI-compatible chat client (judge, expansion, evaluation)
    config         config base classes and the ``reward.rlmr`` schema (RewardConfig) and its rules

The reward's life:
    writing_rm     client of the served writing reward model (vLLM / SGLang wire formats)
    rm_format      the RM's text formatting, shared by RM training and the RM client
    judge          the generative judge for free-text constraints (the response fenced by a per-request tag)
    judge_probe    checks a real judge against "master key" and injection responses (``python -m rewards.judge_probe``)
    manager        the `rlmr` reward manager (writing score + all-or-nothing constraint verdict)
    preflight      probes of the reward endpoints before any weight loads
    serve_rm       the dev RM server (``python -m rewards.serve_rm``; what ``make demo`` serves)
    rm_training    training and evaluating the writing RM (``python -m rewards.train_rm`` / ``eval_rm``)

Imports nothing from data_prep, evaluation or recipe (tests/test_architecture.py).
"""
