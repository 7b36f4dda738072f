"""The local chat server (``recipe.rlmr.dev.servers.chat hf``) batched against one request at a time.

    python benchmarks/chat_server_batching.py [--model DIR | --smollm2 WORKDIR] [--requests 32] [--max-tokens 96]

Sends ``--requests`` chat requests at once (sampled, a distinct seed each) to an ``HFChatServer`` with
``max_batch_size`` 32 and then with 1 (the old one-at-a-time behaviour), and prints the wall time of
each, the ratio, and how many answers the two ways share (seeded sampling: batching changes no answer
beyond the last bits of batched logits). Default model: the tiny policy, built in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

PROMPTS = ["Write a poem about the sea.", "Write a letter to a friend.", "Describe a market at dawn.", "Tell a fable."]


async def _send_all(url: str, requests: int, max_tokens: int) -> list[str]:
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> str:
            body = {
                "model": "bench",
                "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                "temperature": 1.0,
                "max_tokens": max_tokens,
                "seed": i,
            }
            async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                return (await response.json())["choices"][0]["message"]["content"]

        return await asyncio.gather(*(one(i) for i in range(requests)))


def measure(model: str, max_batch_size: int, requests: int, max_tokens: int) -> tuple[float, list[str], int]:
    from recipe.rlmr.dev.servers.chat import HFChatServer

    with HFChatServer(model, max_batch_size=max_batch_size) as server:
        asyncio.run(_send_all(server.url, 2, 4))  # warm-up
        started = time.perf_counter()
        answers = asyncio.run(_send_all(server.url, requests, max_tokens))
        return time.perf_counter() - started, answers, server.stats["max_rows"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a chat model folder (default: the tiny policy)")
    parser.add_argument("--smollm2", default=None, metavar="WORKDIR", help="SmolLM2-135M-Instruct, converted here")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if args.smollm2:
            from recipe.rlmr.dev.smollm2 import convert

            model = str(convert(Path(args.smollm2) / "smollm2"))
        elif model is None:
            from recipe.rlmr.dev.tiny_assets import build_policy_model

            model = str(build_policy_model(Path(scratch) / "policy"))
        batched_s, batched, rows = measure(model, 32, args.requests, args.max_tokens)
        single_s, single, _ = measure(model, 1, args.requests, args.max_tokens)
    same = sum(a == b for a, b in zip(batched, single, strict=True))
    print(f"model {model}: {args.requests} requests x {args.max_tokens} tokens at once")
    print(f"  batched (max_batch_size 32, largest batch {rows}): {batched_s:.1f} s")
    print(f"  one at a time (max_batch_size 1):              {single_s:.1f} s")
    print(f"  one-at-a-time / batched: {single_s / batched_s:.2f}x; answers equal both ways: {same}/{args.requests}")


if __name__ == "__main__":
    main()
