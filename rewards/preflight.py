"""Preflight: ask every configured reward endpoint one tiny question before any model weight loads.

    python -m recipe.rlmr.preflight [hydra overrides...]      # on the recipe config (rlmr_trainer)

The probes live here, next to the clients they use; the command that composes the recipe config
first lives in the recipe (``recipe.rlmr.preflight``), so rewards never imports the recipe.

A training run meets a wrong RM URL, model name, tokenizer path or protocol only when its first
rewards come back invalid, after the workers have started and the weights have loaded (minutes to
hours on a cluster). The preflight meets them seconds after launch, with the clients training
uses, so it speaks exactly their protocol:

- the writing RM (``reward.rlmr.writing_rm``): its tokenizer loads from ``tokenizer`` and formats
  one (prompt, response) pair; the server scores it through ``backend``'s endpoint and the answer
  has the expected shape (one finite score);
- the judge (``reward.rlmr.judge``, when a ``url`` is set): one chat request answered with a
  verdict that parses.

Each probe keeps the backend's own timeouts and retries, bounded as a whole by
``reward.rlmr.preflight.timeout_s``. An RM that verl serves (``reward.reward_model.enable=True``)
is skipped with a note: its address exists only once verl has started it. Nothing is probed unless
the reward manager is ``rlmr`` (other managers do not use these endpoints).

Where it runs: the RLMR trainer classes' ``__init__`` (``recipe.rlmr.trainer``), which covers verl's
``main_ppo``, ``main_rlmr`` and the CPU launcher behind ``make demo``; ``main_rlmr`` also runs it in
the driver before Ray starts. ``reward.rlmr.preflight.enable=false`` turns it off. A failure raises
``PreflightError`` naming each failing endpoint (URL, model) and its error.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rewards.config import RewardConfig, uses_rlmr_rewards, verl_serves_rm, writing_rm_problems

# The probe sample: short, so any tokenizer and any max_input_tokens take it whole.
PROBE_MESSAGES = [{"role": "user", "content": "Write one sentence about the sea."}]
PROBE_RESPONSE = "The sea is calm tonight."
PROBE_CONSTRAINTS = ["The response is about the sea."]
DISABLE_HINT = "reward.rlmr.preflight.enable=false skips this check"
NO_JUDGE = "none configured (reward.rlmr.judge.url): free-text constraints are invalid"


class PreflightError(RuntimeError):
    """A configured reward endpoint did not answer the probe as training needs; the message names each one."""


@dataclass(frozen=True)
class ProbeResult:
    endpoint: str  # what was probed, e.g. "writing RM at http://host:port (model m, vllm_classify)"
    status: str  # "ok", "failed" or "skipped"
    detail: str  # the answer, the error, or why it was skipped
    seconds: float = 0.0

    def line(self) -> str:
        return f"{self.status.upper():7} {self.endpoint}: {self.detail} ({self.seconds:.1f} s)"


def _describe_rm(settings: RewardConfig) -> str:
    rm = settings.writing_rm
    return f"writing RM at {rm.url} (model {rm.model}, {rm.backend or 'vllm_classify'}, tokenizer {rm.tokenizer})"


def _describe_judge(settings: RewardConfig) -> str:
    return f"judge at {settings.judge.url} (model {settings.judge.model})"


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=True)


async def _in_daemon_thread(function: Callable[[], Any]) -> Any:
    """Run blocking ``function`` off the loop in a daemon thread, so a hang cannot outlive the time box."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def target() -> None:
        try:
            result, error = function(), None
        except BaseException as err:  # handed to the awaiting coroutine
            result, error = None, err

        def settle() -> None:
            if future.done():  # the time box already gave up on it
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop closed meanwhile: nobody waits any more
            pass

    threading.Thread(target=target, name="rlmr-preflight", daemon=True).start()
    return await future


async def probe_writing_rm(settings: RewardConfig) -> str:
    """Score the probe sample; the score as text, or an exception saying what went wrong."""
    from rewards.writing_rm import WritingRMClient

    rm = settings.writing_rm
    problems = writing_rm_problems(settings, verl_serves=False)
    if problems:
        raise ValueError("; ".join(problems))
    try:
        tokenizer = await _in_daemon_thread(lambda: _load_tokenizer(rm.tokenizer))
    except Exception as err:
        raise ValueError(f"tokenizer {rm.tokenizer!r} does not load: {type(err).__name__}: {err}") from err
    client = WritingRMClient(rm, tokenizer)
    try:
        score = await client.score(PROBE_MESSAGES, PROBE_RESPONSE)
    finally:
        await client.close()
    if not math.isfinite(score):
        raise ValueError(f"the RM answered a non-finite score {score!r}")
    return f"scored the probe sample {score:.4g}"


async def probe_judge(settings: RewardConfig) -> str:
    """Ask for one verdict; the verdict as text, or an exception saying what went wrong."""
    from rewards.judge import ConstraintJudge

    judge = ConstraintJudge(settings.judge)
    try:
        verdict = await judge.verify(PROBE_MESSAGES[0]["content"], PROBE_CONSTRAINTS, PROBE_RESPONSE)
    finally:
        await judge.close()
    return f"answered a verdict ({'satisfied' if verdict.ok else 'not satisfied'}, {verdict.calls} call(s))"


async def _timed_probe(endpoint: str, probe: Awaitable[str], timeout_s: float) -> ProbeResult:
    start = time.perf_counter()
    try:
        detail = await asyncio.wait_for(probe, timeout=timeout_s)
    except asyncio.TimeoutError:
        status, detail = "failed", f"no usable answer within reward.rlmr.preflight.timeout_s={timeout_s:g} s"
    except Exception as err:
        status, detail = "failed", f"{type(err).__name__}: {err}"
    else:
        status = "ok"
    return ProbeResult(endpoint, status, detail, time.perf_counter() - start)


async def probe_endpoints(settings: RewardConfig, verl_serves_rm: bool = False) -> list[ProbeResult]:
    """Probe the writing RM and the judge concurrently; one result per endpoint, nothing raised."""
    timeout_s = settings.preflight.timeout_s
    results: list[ProbeResult | Awaitable[ProbeResult]] = []
    if settings.writing_rm.url:
        results.append(_timed_probe(_describe_rm(settings), probe_writing_rm(settings), timeout_s))
    elif verl_serves_rm:
        results.append(
            ProbeResult(
                "writing RM served by verl (reward.reward_model.enable=True)",
                "skipped",
                "its address exists only once verl has started it; not probed",
            )
        )
    else:
        results.append(
            ProbeResult(
                "writing RM",
                "failed",
                "none configured: set reward.rlmr.writing_rm.url (+ model, tokenizer) for an external server, "
                "or reward.reward_model.enable=True for one served by verl",
            )
        )
    if settings.judge.url:
        results.append(_timed_probe(_describe_judge(settings), probe_judge(settings), timeout_s))
    else:
        results.append(
            ProbeResult(
                "judge", "skipped", "none configured (reward.rlmr.judge.url): free-text constraints are invalid"
            )
        )
    pending = [r for r in results if not isinstance(r, ProbeResult)]
    answered = iter(await asyncio.gather(*pending))
    return [r if isinstance(r, ProbeResult) else next(answered) for r in results]


def _run_blocking(coroutine: Awaitable) -> Any:
    """``asyncio.run``, also from a thread whose event loop is already running (e.g. inside a Ray actor)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as err:
            outcome["error"] = err

    thread = threading.Thread(target=target, name="rlmr-preflight-loop", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def preflight(config: Any, log: Callable[[str], None] | None = print) -> list[ProbeResult]:
    """Probe the endpoints ``config`` (verl's whole config) names, unless turned off or not `rlmr`'s.

    Returns the results (empty when nothing was probed); raises PreflightError if any endpoint failed.
    """
    if not uses_rlmr_rewards(config):
        return []
    settings = RewardConfig.from_verl(config)
    if not settings.preflight.enable:
        if log:
            log("[rlmr preflight] off (reward.rlmr.preflight.enable=false)")
        return []
    results = _run_blocking(probe_endpoints(settings, verl_serves_rm(config)))
    if log:
        for result in results:
            log(f"[rlmr preflight] {result.line()}")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        lines = "\n".join(f"  {r.endpoint}: {r.detail}" for r in failed)
        raise PreflightError(f"reward endpoint preflight failed ({DISABLE_HINT}):\n{lines}")
    return results


MOVED = "the command is `python -m recipe.rlmr.preflight [hydra overrides...]` (it composes the recipe config)"

if __name__ == "__main__":
    sys.exit(f"python -m rewards.preflight moved: {MOVED}")
