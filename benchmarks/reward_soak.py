"""Reward soak: the `rlmr` reward manager scoring many trajectories, step after step, against a writing RM
and a judge that inject a steady mix of faults; nothing may be lost, leaked or grow.

    python benchmarks/reward_soak.py [--steps 20] [--batch 1024] [--fault-scale 1.0] [--rss-bound-mib 64]

The manager is loaded by name through verl's loader and driven by its own event loop, as verl's reward
loop does: each step sends ``--batch`` trajectories at once (every one needs the RM and the judge: a rule
that holds plus a free-text constraint). The servers (``recipe.rlmr.dev.servers.faulty``, each in a
process of its own) answer each request well or with a fault drawn from a fixed mix: HTTP 503, a hang
shorter than the client's timeout, a hang longer than it, malformed JSON, and non-finite scores (NaN,
Infinity, -Infinity, 1e999; for the judge in the verdict). The clients retry (``max_retries`` 2), so a
trajectory is invalid only when all its attempts at one backend faulted.

Printed per step: trajectories scored, valid, invalid by cause (backend: kind of its last error), latency
p50/p95/p99 per trajectory, this process's RSS, asyncio tasks alive and open sockets between steps.
Checked (exit 1 if not): every trajectory got exactly one result, and it is its own (a valid writing
score equals the RM's score of that trajectory's text, each text of its own length); no asyncio task
is alive between steps; no pooled connection is held between steps, sockets stay within the clients'
pool caps, and all are closed after ``close()``; RSS growth over the last half of the steps stays under
``--rss-bound-mib``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from verl import DataProto
from verl.trainer.ppo.reward import load_reward_manager

from recipe.rlmr.dev.reward_rows import trajectory_row
from recipe.rlmr.dev.servers.base import READY_LINE, announced_server
from recipe.rlmr.dev.tiny_assets import build_tokenizer
from recipe.rlmr.dry_run import compose_recipe
from rewards.reward_info import REWARD_ERROR, REWARD_VALID, WRITING_SCORE
from rewards.spec import ConstraintSpec, JudgeConstraint, RuleConstraint

TASK = "Write a short poem about the harbour at night. At most 80 words. Mention 'lantern'."
SPEC = ConstraintSpec(
    constraints=[
        RuleConstraint(instruction_id="rlmr:word_range", kwargs={"max_words": 80}),
        JudgeConstraint(text="The poem mentions 'lantern'."),
    ]
)
# per request, at --fault-scale 1: about 16% of the answers are faults
RM_MIX = {
    "5xx": 0.04,
    "hang_short": 0.03,
    "hang_long": 0.01,
    "malformed": 0.03,
    "nan": 0.02,
    "inf": 0.01,
    "neg_inf": 0.01,
    "overflow": 0.01,
}
JUDGE_MIX = dict(RM_MIX)
TIMEOUT_S, HANG_SHORT_S, HANG_LONG_S = 0.5, 0.1, 1.5
RM_CONCURRENCY, JUDGE_CONCURRENCY = 32, 128


def make_rows(tokenizer, batch: int) -> tuple[list[DataProto], list[str]]:
    """``batch`` rows, each response of its own length (so each RM score identifies its text)."""
    responses = [
        f"Lantern {i} on the water, ropes asleep" + "." * (i % 37) + " " + "tide " * (i // 37) for i in range(batch)
    ]
    rows = [trajectory_row(tokenizer, TASK, response, SPEC, data_source="soak") for response in responses]
    return rows, responses


@contextlib.contextmanager
def faulty_server(kind: str, mix: dict[str, float], seed: int):
    command = [sys.executable, "-m", "recipe.rlmr.dev.servers.faulty", kind, "--seed", str(seed)]
    command += ["--mix", ",".join(f"{k}={v}" for k, v in mix.items())]
    command += ["--hang-short-s", str(HANG_SHORT_S), "--hang-long-s", str(HANG_LONG_S)]
    with announced_server(command, READY_LINE) as port:
        yield f"http://127.0.0.1:{port}"


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def held_connections(manager) -> int:
    """Connections the managers' pooled clients hold (acquired, not back in the pool)."""
    held = 0
    for client in (manager.writing_rm.http, manager.judge.http):
        session = client._session
        if session is not None and not session.closed:
            held += len(session.connector._acquired)
    return held


def cause(error: str) -> str:
    """``backend: kind`` of a reward_error (the last failure of each backend it names)."""
    causes = []
    for part in error.split("; "):
        backend = part.split(":", 1)[0] if part.startswith(("writing_rm:", "judge:")) else "sample"
        if "non-finite" in part:
            kind = "non-finite"
        elif "HTTP 5" in part:
            kind = "5xx"
        elif "no answer within" in part or "sample not scored" in part:
            kind = "timeout"
        elif "not JSON" in part or "unusable" in part or "malformed" in part:
            kind = "malformed"
        else:
            kind = "other"
        causes.append(f"{backend}:{kind}")
    return "+".join(causes)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(steps: int, batch: int, fault_scale: float, rss_bound_mib: float, seed: int = 0) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="rlmr-soak-"))
    tokenizer = build_tokenizer(workdir / "tokenizer")
    rows, responses = make_rows(tokenizer, batch)
    rm_mix = {k: v * fault_scale for k, v in RM_MIX.items()}
    judge_mix = {k: v * fault_scale for k, v in JUDGE_MIX.items()}
    ok = True

    def check(condition: bool, message: str) -> None:
        nonlocal ok
        if not condition:
            ok = False
            print(f"  CHECK FAILED: {message}", flush=True)

    with faulty_server("rm", rm_mix, seed) as rm_url, faulty_server("judge", judge_mix, seed + 1) as judge_url:
        http = [f"timeout_s={TIMEOUT_S}", "max_retries=2", "backoff_s=0.01", "backoff_max_s=0.05"]
        overrides = [
            f"reward.rlmr.writing_rm.url={rm_url}",
            "reward.rlmr.writing_rm.model=soak-rm",
            f"reward.rlmr.writing_rm.tokenizer={workdir / 'tokenizer'}",
            f"reward.rlmr.writing_rm.max_concurrency={RM_CONCURRENCY}",
            f"reward.rlmr.judge.url={judge_url}",
            "reward.rlmr.judge.model=soak-judge",
            f"reward.rlmr.judge.max_concurrency={JUDGE_CONCURRENCY}",
        ]
        overrides += [f"reward.rlmr.{backend}.{h}" for backend in ("writing_rm", "judge") for h in http]
        config = compose_recipe(overrides)
        manager = load_reward_manager(config, tokenizer)
        loop = manager.loop
        sockets_before = open_sockets()  # the event loop's own self-pipe included, no connection yet
        messages = [{"role": "user", "content": TASK}]
        expected = [len(manager.writing_rm.format(messages, r)) / 100.0 for r in responses]

        async def timed(row):
            start = time.perf_counter()
            result = await manager.run_single(row)
            return result, time.perf_counter() - start

        async def step_results():
            return await asyncio.gather(*(timed(row) for row in rows))

        mix = ", ".join(f"{k} {v:.1%}" for k, v in rm_mix.items())
        print(f"reward soak: {steps} steps x {batch} trajectories, RM and judge each answering faults: {mix}")
        print(f"  client timeout {TIMEOUT_S}s per attempt, 2 retries; hangs {HANG_SHORT_S}s and {HANG_LONG_S}s")
        print("step  scored  valid  invalid  p50_s  p95_s  p99_s  rss_mib  tasks  sockets  held  invalid by cause")
        rss, totals = [], Counter()
        start_all = time.perf_counter()
        for step in range(1, steps + 1):
            results = loop.run_until_complete(step_results())
            check(len(results) == batch, f"step {step}: {len(results)} results for {batch} trajectories")
            latencies = [latency for _, latency in results]
            infos = [result["reward_extra_info"] for result, _ in results]
            check(all(info[REWARD_VALID] in (0, 1) for info in infos), f"step {step}: a result without reward_valid")
            valid = [i for i, info in enumerate(infos) if info[REWARD_VALID] == 1]
            wrong = [i for i in valid if abs(infos[i][WRITING_SCORE] - expected[i]) > 1e-9]
            check(not wrong, f"step {step}: {len(wrong)} valid results carry another trajectory's score")
            check(all(np.isfinite(result["reward_score"]) for result, _ in results), f"step {step}: non-finite score")
            causes = Counter(cause(info[REWARD_ERROR]) for info in infos if info[REWARD_VALID] == 0)
            totals.update(causes)
            gc.collect()
            rss.append(rss_mib())
            tasks = len(asyncio.all_tasks(loop))
            sockets, held = open_sockets() - sockets_before, held_connections(manager)
            check(tasks == 0, f"step {step}: {tasks} asyncio tasks alive between steps")
            check(held == 0, f"step {step}: {held} pooled connections still held")
            check(
                sockets <= RM_CONCURRENCY + JUDGE_CONCURRENCY,
                f"step {step}: {sockets} sockets open, over the pools' caps",
            )
            by_cause = ", ".join(f"{k} {v}" for k, v in causes.most_common()) or "-"
            print(
                f"{step:4d}  {len(results):6d}  {len(valid):5d}  {batch - len(valid):7d}  "
                f"{percentile(latencies, 50):5.2f}  {percentile(latencies, 95):5.2f}  "
                f"{percentile(latencies, 99):5.2f}  "
                f"{rss[-1]:7.1f}  {tasks:5d}  {sockets:7d}  {held:4d}  {by_cause}",
                flush=True,
            )
        wall = time.perf_counter() - start_all
        loop.run_until_complete(manager.close())
        loop.run_until_complete(asyncio.sleep(0.2))  # let the transports close
        # no more sockets than before the first step (fewer where the collector closed someone else's meanwhile)
        sockets_after = open_sockets() - sockets_before
        check(sockets_after <= 0, f"{sockets_after} more sockets open after close() than before the first step")
        check(held_connections(manager) == 0, "pooled connections held after close()")
        check(len(asyncio.all_tasks(loop)) == 0, "asyncio tasks alive after close()")

    half = rss[len(rss) // 2 - 1] if len(rss) > 1 else rss[0]
    growth = rss[-1] - half
    check(growth <= rss_bound_mib, f"RSS grew {growth:.1f} MiB over the last half of the steps")
    invalid = sum(totals.values())
    print(
        f"total: {steps * batch} trajectories in {wall:.1f} s ({steps * batch / wall:.0f}/s), "
        f"{invalid} invalid ({invalid / (steps * batch):.2%}): "
        + (", ".join(f"{k} {v}" for k, v in totals.most_common()) or "none")
    )
    print(
        f"RSS {rss[0]:.1f} -> {rss[-1]:.1f} MiB; growth over the last half of the steps {growth:+.1f} MiB "
        f"(bound {rss_bound_mib:g} MiB); sockets after close() {sockets_after}"
    )
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--fault-scale", type=float, default=1.0, help="multiplies every fault probability")
    parser.add_argument("--rss-bound-mib", type=float, default=64.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return 0 if run(args.steps, args.batch, args.fault_scale, args.rss_bound_mib, args.seed) else 1


if __name__ == "__main__":
    sys.exit(main())
