"""``pairwise``: win rate of model A over model B, judged by a served model, position-debiased.

Responses of A and B are joined by (id, sample) and must answer the same prompt. The judge sees
each pair twice, A first then B first, and answers ``{"winner": "first"|"second"|"tie", ...}``.
A side wins a prompt only when both orders prefer it; any other pair of verdicts (a preference
that flips with the position, a tie in either order) is a tie. Win rate = (wins + ties / 2) / n,
with a percentile bootstrap 95% interval over prompts. A pair whose judge answer cannot be
parsed after retries is invalid: counted and excluded.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections import defaultdict
from typing import Any

from tqdm import tqdm

from evaluation.chat import ChatClient, ChatError, load_json_answer
from evaluation.files import EvalInputError, markdown_table, read_responses

JUDGE_PROMPT_VERSION = "rlmr-pairwise-judge-v1"
DOMAIN_KEYS = ("domain1", "domain")

SYSTEM_PROMPT = (
    "You compare two responses to the same writing request and decide which one serves the request "
    "better: following every explicit instruction first, then content, craft and fit for the reader. "
    "The order in which the responses are shown says nothing about their quality, and neither does "
    "their length. Reply with a single JSON object and nothing else: "
    '{"winner": "first" | "second" | "tie", "reason": "<one or two sentences>"}'
)


def build_messages(prompt: str, first: str, second: str) -> list[dict[str, str]]:
    user = (
        f"## Writing request\n{prompt}\n\n## First response\n{first}\n\n## Second response\n{second}\n\n"
        "Which response is better? Your JSON:"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_winner(text: str) -> str:
    """``first``, ``second`` or ``tie``; ValueError unless the answer is the JSON we asked for."""
    answer = load_json_answer(text, "judge")
    winner = answer.get("winner") if isinstance(answer, dict) else None
    if not isinstance(winner, str) or winner.strip().lower() not in ("first", "second", "tie"):
        raise ValueError(f"judge answer has no winner first/second/tie: {text[:200]!r}")
    return winner.strip().lower()


def combine(a_first: str, b_first: str) -> str:
    """Outcome for A from the verdicts of both orders: ``win`` and ``loss`` only when they agree."""
    a_side = {"first": "A", "second": "B", "tie": "tie"}[a_first]
    b_side = {"first": "B", "second": "A", "tie": "tie"}[b_first]
    if a_side == b_side == "A":
        return "win"
    if a_side == b_side == "B":
        return "loss"
    return "tie"


def _pairs(a: str, b: str, domain_key: str | None) -> tuple[list[dict[str, Any]], int, int]:
    rows_a = {row.key: row for row in read_responses(a)}
    rows_b = {row.key: row for row in read_responses(b)}
    pairs = []
    for key, row_a in rows_a.items():
        row_b = rows_b.get(key)
        if row_b is None:
            continue
        prompt_a, prompt_b = row_a.record.get("prompt"), row_b.record.get("prompt")
        if not isinstance(prompt_a, str):
            raise EvalInputError(f"{a} row {row_a.row}: missing key 'prompt' (the judge needs the request)")
        if prompt_b is not None and prompt_b != prompt_a:
            raise EvalInputError(f"id {key[0]!r}: {a} row {row_a.row} and {b} row {row_b.row} answer different prompts")
        keys = (domain_key,) if domain_key else DOMAIN_KEYS
        domain = next((row_a.record[k] for k in keys if row_a.record.get(k) is not None), None)
        pairs.append(
            {
                "id": key[0],
                "sample": key[1],
                "prompt": prompt_a,
                "a": row_a.record["response"],
                "b": row_b.record["response"],
                "domain": None if domain is None else str(domain),
            }
        )
    if not pairs:
        raise EvalInputError(f"{a} and {b} share no (id, sample)")
    return pairs, len(rows_a) - len(pairs), len(rows_b) - len(pairs)


async def _judge_all(pairs: list[dict[str, Any]], judge: ChatClient, max_tokens: int, progress: bool) -> None:
    bar = tqdm(total=2 * len(pairs), unit="verdict", desc="pairwise", disable=not progress, file=sys.stderr)

    async def verdict(first: str, second: str, prompt: str) -> str:
        try:
            winner, _ = await judge.complete(
                build_messages(prompt, first, second), parse_winner, temperature=0.0, max_tokens=max_tokens
            )
            return winner
        finally:
            bar.update(1)

    async def one(pair: dict[str, Any]) -> None:
        results = await asyncio.gather(
            verdict(pair["a"], pair["b"], pair["prompt"]),
            verdict(pair["b"], pair["a"], pair["prompt"]),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        for error in errors:
            if not isinstance(error, ChatError):
                raise error
        if errors:
            pair["error"] = str(errors[0])[:300]
        else:
            pair["a_first"], pair["b_first"] = results
            pair["outcome"] = combine(*results)

    try:
        await asyncio.gather(*(one(pair) for pair in pairs))
    finally:
        bar.close()
        await judge.close()


def win_rate(outcomes: list[str], resamples: int, seed: int) -> dict[str, Any]:
    """Win rate of A (ties half) with a percentile bootstrap 95% interval over prompts."""
    points = [{"win": 1.0, "tie": 0.5, "loss": 0.0}[o] for o in outcomes]
    n = len(points)
    rate = sum(points) / n
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(points, k=n)) / n for _ in range(resamples))
    low = means[int(0.025 * (resamples - 1))]
    high = means[int(round(0.975 * (resamples - 1)))]
    return {
        "win_rate": rate,
        "ci95": [low, high],
        "n": n,
        "wins": outcomes.count("win"),
        "ties": outcomes.count("tie"),
        "losses": outcomes.count("loss"),
    }


def score_pairwise(
    a: str,
    b: str,
    judge: ChatClient,
    bootstrap: int = 1000,
    seed: int = 0,
    domain_key: str | None = None,
    max_tokens: int = 512,
    progress: bool = True,
) -> dict[str, Any]:
    if bootstrap < 1:
        raise ValueError("--bootstrap must be >= 1")
    pairs, only_a, only_b = _pairs(a, b, domain_key)
    asyncio.run(_judge_all(pairs, judge, max_tokens, progress))
    judged = [p for p in pairs if "outcome" in p]
    result: dict[str, Any] = {
        "a": a,
        "b": b,
        "judge_model": judge.model,
        "judge_prompt": JUDGE_PROMPT_VERSION,
        "pairs": len(pairs),
        "invalid": len(pairs) - len(judged),
        "only_in_a": only_a,
        "only_in_b": only_b,
        "position_flips": sum(1 for p in judged if {p["a_first"], p["b_first"]} in ({"first"}, {"second"})),
        "overall": win_rate([p["outcome"] for p in judged], bootstrap, seed) if judged else None,
        "per_domain": {},
        "details": [
            {k: p.get(k) for k in ("id", "sample", "domain", "a_first", "b_first", "outcome", "error")} for p in pairs
        ],
    }
    by_domain: dict[str, list[str]] = defaultdict(list)
    for p in judged:
        if p["domain"] is not None:
            by_domain[p["domain"]].append(p["outcome"])
    result["per_domain"] = {d: win_rate(o, bootstrap, seed) for d, o in sorted(by_domain.items())}
    return result


def pairwise_markdown(result: dict[str, Any]) -> str:
    def row(name: str, s: dict[str, Any]) -> list[Any]:
        return [
            name,
            s["win_rate"],
            f"[{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}]",
            s["wins"],
            s["ties"],
            s["losses"],
            s["n"],
        ]

    headers = ["domain", "win rate A over B", "95% CI", "wins", "ties", "losses", "prompts"]
    rows = [row(d, s) for d, s in result["per_domain"].items()]
    if result["overall"] is not None:
        rows.append(row("**overall**", result["overall"]))
    out = markdown_table(headers, rows)
    out += (
        f"\n\n{result['pairs']} pairs, each sent to the judge in both orders; "
        f"{result['position_flips']} verdicts flipped with the position (ties); "
        f"{result['invalid']} invalid (judge failed after retries; excluded); "
        f"{result['only_in_a']} responses only in A, {result['only_in_b']} only in B (not compared)"
    )
    return out
