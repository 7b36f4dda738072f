"""SmolLM2-135M-Instruct from PyPI through the ``hf`` rollout: conversion, a chat reply, a sampling batch.

    python benchmarks/hf_rollout_smollm2.py [--workdir /tmp/rlmr-smollm2] [--prompts 16] [--tokens 96]
                                            [--device cpu|cuda:0] [--threads N]

Prints the time to convert the GGUF file (``recipe.rlmr.dev.smollm2.convert``; 0 when the folder
under WORKDIR is reused), to load the folder and give one greedy chat reply, and to sample
PROMPTS chat prompts x TOKENS new tokens (never stopping early, so every row costs the same) at
temperature 1 with log-probs through ``HFRolloutServer``, the way verl's agent loop calls it: all
requests at once, batched by the server.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import torch

INSTRUCTIONS = [
    "Write a short poem about the sea.",
    "Describe a rainy morning in a small town.",
    "Tell a story about a lost key in fewer than 50 words.",
    "Write a letter to a friend who moved away.",
]


async def sample(server, prompts: list[list[int]], tokens: int) -> list:
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}
    params["max_tokens"] = tokens
    return await asyncio.gather(
        *[server.generate(request_id=str(i), prompt_ids=p, sampling_params=params) for i, p in enumerate(prompts)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/rlmr-smollm2")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoTokenizer
    from verl.workers.config import RolloutConfig

    from recipe.rlmr.dev import smollm2
    from recipe.rlmr.dev.reward_rows import chat_prompt_ids
    from recipe.rlmr.rollout.hf import HFRolloutServer

    target = Path(args.workdir) / "smollm2"
    started = time.perf_counter()
    reused = smollm2.is_complete(target)
    folder = smollm2.convert(target)
    print(f"conversion: {0.0 if reused else time.perf_counter() - started:.1f} s ({'reused' if reused else 'new'})")

    started = time.perf_counter()
    reply = smollm2.chat(folder, "What is the capital of France?")
    print(f"load + greedy chat reply: {time.perf_counter() - started:.1f} s -> {reply!r}")

    tokenizer = AutoTokenizer.from_pretrained(folder)
    messages = [[{"role": "user", "content": INSTRUCTIONS[i % len(INSTRUCTIONS)]}] for i in range(args.prompts)]
    prompts = [chat_prompt_ids(tokenizer, chat) for chat in messages]
    config = RolloutConfig(
        name="hf",
        prompt_length=max(map(len, prompts)),
        response_length=args.tokens,
        max_num_seqs=args.prompts,
        tensor_model_parallel_size=1,
    )
    started = time.perf_counter()
    server = HFRolloutServer(config, {"path": str(folder)}, device=args.device)
    print(f"rollout server start ({server.device}, {server.dtype}): {time.perf_counter() - started:.1f} s")
    server.eos_ids = []  # every row runs its full budget
    started = time.perf_counter()
    outputs = asyncio.run(sample(server, prompts, args.tokens))
    elapsed = time.perf_counter() - started
    produced = sum(len(o.token_ids) for o in outputs)
    print(
        f"sampling {args.prompts} prompts x {args.tokens} tokens: {elapsed:.1f} s "
        f"({produced / elapsed:.0f} tokens/s, {server.stats['batches']} generate call(s), "
        f"{server.stats['max_rows']} rows at most)"
    )


if __name__ == "__main__":
    main()
