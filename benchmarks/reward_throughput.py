"""Reward throughput of the `rlmr` reward manager against loopback servers with fixed service times.

    python benchmarks/reward_throughput.py [--prompts 128] [--samples 8] [--rm-ms 20] [--rm-slots 32]
                                           [--judge-ms 150] [--judge-slots 64]

1024 trajectories (128 prompts x 8) go through the real manager, loaded by name through verl's
loader, all in flight at once as verl's reward loop sends them. Every prompt carries a rule
constraint that passes and a free-text one, so every sample needs both backends. The scripted
servers (recipe.rlmr.dev.servers.reward) hold each request for a fixed time with a fixed number of slots.

Printed: wall time; the ideal time (the slower backend's requests x service time / slots, with the
RM's requests counted after micro-batching); their ratio (ideal / wall, 1.0 is perfect); and the
wall time of a baseline, the same manager with ``reward.rlmr.overlap_backends=false``, which awaits
the RM and then the judge for each sample (samples still concurrent), with the speed-up over it. Measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import tempfile
import time
from pathlib import Path

import requests
from verl import DataProto
from verl.trainer.ppo.reward import load_reward_manager

from recipe.rlmr.dev.reward_rows import trajectory_row
from recipe.rlmr.dev.servers.base import announced_server
from recipe.rlmr.dev.servers.reward import READY_LINE as FAKE_READY_LINE
from recipe.rlmr.dev.tiny_assets import build_tokenizer
from recipe.rlmr.dry_run import compose_recipe
from rewards.reward_info import CONSTRAINTS_OK, REWARD_VALID
from rewards.spec import ConstraintSpec, JudgeConstraint, RuleConstraint

TASK = "Write a four-line poem about the harbour at night. Mention 'lantern'. At most 60 words."
SPEC = ConstraintSpec(
    constraints=[
        RuleConstraint(instruction_id="rlmr:word_range", kwargs={"max_words": 60}),
        JudgeConstraint(text="The poem mentions 'lantern'."),
    ]
)


def make_rows(tokenizer, prompts: int, samples: int) -> list[DataProto]:
    return [
        trajectory_row(
            tokenizer,
            TASK,
            f"Lantern {p}-{s} on the water,\nropes asleep,\ngulls counting boats,\nthe tide keeps time.",
            SPEC,
            data_source="bench",
        )
        for p in range(prompts)
        for s in range(samples)
    ]


@contextlib.contextmanager
def server_process(kind: str, service_ms: float, slots: int):
    """A scripted server in its own process (it must not share the client's GIL); yields its URL."""
    command = [sys.executable, "-m", "recipe.rlmr.dev.servers.reward", kind, "--service-ms", str(service_ms)]
    with announced_server(command + ["--slots", str(slots)], FAKE_READY_LINE) as port:
        yield f"http://127.0.0.1:{port}"


def requests_served(url: str) -> int:
    return requests.get(f"{url}/stats", timeout=5).json()["requests"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--rm-ms", type=float, default=20.0)
    parser.add_argument("--rm-slots", type=int, default=32)
    parser.add_argument("--judge-ms", type=float, default=150.0)
    parser.add_argument("--judge-slots", type=int, default=64)
    parser.add_argument("--micro-batch-size", type=int, default=16)
    parser.add_argument(
        "--client-overcommit",
        type=float,
        default=2.0,
        help="client in-flight cap = slots x this: a queue at the server keeps its slots busy while the client works",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="rlmr-bench-"))
    tokenizer = build_tokenizer(workdir / "tokenizer")
    rows = make_rows(tokenizer, args.prompts, args.samples)
    total = len(rows)

    with (
        server_process("rm", args.rm_ms, args.rm_slots) as rm_url,
        server_process("judge", args.judge_ms, args.judge_slots) as judge_url,
    ):
        overrides = [
            f"reward.rlmr.writing_rm.url={rm_url}",
            "reward.rlmr.writing_rm.model=bench-rm",
            f"reward.rlmr.writing_rm.tokenizer={workdir / 'tokenizer'}",
            f"reward.rlmr.writing_rm.max_concurrency={int(args.rm_slots * args.client_overcommit)}",
            f"reward.rlmr.writing_rm.micro_batch_size={args.micro_batch_size}",
            f"reward.rlmr.judge.url={judge_url}",
            "reward.rlmr.judge.model=bench-judge",
            f"reward.rlmr.judge.max_concurrency={int(args.judge_slots * args.client_overcommit)}",
        ]
        manager = load_reward_manager(compose_recipe(overrides), tokenizer)
        loop = manager.loop

        async def concurrent():
            return await asyncio.gather(*(manager.run_single(row) for row in rows))

        loop.run_until_complete(manager.run_single(rows[0]))  # warm-up: sessions, IFEval import
        rm_before, judge_before = requests_served(rm_url), requests_served(judge_url)
        start = time.perf_counter()
        results = loop.run_until_complete(concurrent())
        wall = time.perf_counter() - start
        rm_requests = requests_served(rm_url) - rm_before
        judge_requests = requests_served(judge_url) - judge_before
        assert all(r["reward_extra_info"][REWARD_VALID] == 1 for r in results), "a reward failed"
        assert all(r["reward_extra_info"][CONSTRAINTS_OK] == 1 for r in results)

        # Baseline: the same manager, but each sample waits for its RM score before its verdict.
        sequential = load_reward_manager(compose_recipe(overrides + ["reward.rlmr.overlap_backends=false"]), tokenizer)

        async def baseline():
            return await asyncio.gather(*(sequential.run_single(row) for row in rows))

        start = time.perf_counter()
        loop.run_until_complete(baseline())
        baseline_wall = time.perf_counter() - start
        loop.run_until_complete(manager.close())
        loop.run_until_complete(sequential.close())

    rm_work = math.ceil(rm_requests / args.rm_slots) * args.rm_ms / 1000
    judge_work = math.ceil(judge_requests / args.judge_slots) * args.judge_ms / 1000
    ideal = max(rm_work, judge_work)
    print(
        f"{total} trajectories ({args.prompts} prompts x {args.samples}), all needing RM and judge; "
        f"client in-flight caps {args.client_overcommit:g}x the server slots"
    )
    print(
        f"  writing RM : {args.rm_ms:.0f} ms x {rm_requests} requests (micro-batches of {args.micro_batch_size})"
        f" / {args.rm_slots} slots = {rm_work:.2f} s"
    )
    print(
        f"  judge      : {args.judge_ms:.0f} ms x {judge_requests} requests / {args.judge_slots} slots"
        f" = {judge_work:.2f} s"
    )
    print(f"  wall time            {wall:.2f} s")
    print(f"  ideal time           {ideal:.2f} s")
    print(f"  ideal / wall         {ideal / wall:.3f}  (target >= 0.85)")
    print(f"  RM-then-judge wall   {baseline_wall:.2f} s  -> speed-up {baseline_wall / wall:.2f}x")


if __name__ == "__main__":
    main()
