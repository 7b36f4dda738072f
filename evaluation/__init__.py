"""Offline evaluation of a served policy, as the RLMR paper measures it.

``python -m evaluation generate|ifeval|writingbench|pairwise``: answer a prompt file with an
OpenAI-compatible server (e.g. ``vllm serve`` of a merged checkpoint), then score the answers with
IFEval's rules, WritingBench's critic protocol, or a position-swapped pairwise judge. See
docs/evaluation.md.
"""
