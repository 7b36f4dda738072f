"""``writingbench``: WritingBench's protocol with a served critic model.

Every query of the benchmark carries a checklist of criteria (name, description, what each score
band means). The critic scores the response against one criterion per call, 1 to 10, and answers
one JSON object ``{"score": <integer>, "reason": "..."}``. An answer that is not that object, or
whose score is not an integer from 1 to 10, is retried like a failed request; after the last retry
the criterion is marked invalid: counted, excluded, never scored.

Reporting (WritingBench's aggregation, 1-10 scale): a query's score is the mean of its valid
criterion scores; a domain's score is the mean of its queries' scores; the overall score is the
mean of all valid criterion scores. Queries with no valid criterion are left out of both.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict
from typing import Any

from tqdm import tqdm

from evaluation.chat import ChatClient, ChatError, load_json_answer
from evaluation.files import EvalInputError, markdown_table, read_prompts, read_responses, resolve

CRITIC_PROMPT_VERSION = "rlmr-writingbench-critic-v1"

SYSTEM_PROMPT = (
    "You grade writing. You receive a writing request, a response to it, and one grading criterion "
    "with a description of what each score band means. Grade the response on that criterion only, "
    "with an integer from 1 (fails it) to 10 (flawless). Be demanding: length and formatting do not "
    "earn points by themselves, invented or hollow content and unfinished answers (an outline or an "
    "introduction where a full text was asked for) score low. Cite the response's own words in your "
    'reason. Reply with a single JSON object and nothing else: {"score": <integer 1-10>, "reason": '
    '"<short justification, without double quotes inside>"}'
)


def build_messages(query: str, response: str, criterion: dict[str, Any]) -> list[dict[str, str]]:
    criterion_text = json.dumps(criterion, ensure_ascii=False, indent=1)
    user = (
        f"## Writing request\n{query}\n\n## Response\n{response}\n\n## Criterion\n{criterion_text}\n\n"
        "Grade the response on this criterion. Your JSON:"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_score(text: str) -> int:
    """The integer score of a critic answer; ValueError unless it is the JSON we asked for, 1-10."""
    answer = load_json_answer(text, "critic")
    if not isinstance(answer, dict) or "score" not in answer:
        raise ValueError(f"critic answer has no 'score': {text[:200]!r}")
    score = answer["score"]
    if isinstance(score, bool) or not isinstance(score, int):
        raise ValueError(f"critic score is not an integer: {score!r}")
    if not 1 <= score <= 10:
        raise ValueError(f"critic score {score} is outside 1-10")
    return score


def _criterion_name(criterion: dict[str, Any], position: int) -> str:
    return str(criterion.get("name") or f"criterion {position}")


def _jobs(responses: str, queries: str, lang: str | None, limit: int | None) -> list[dict[str, Any]]:
    items = {item.id: item for item in read_prompts(queries)}
    queries = resolve(queries)
    jobs = []
    for row in read_responses(responses):
        record = row.record
        item = items.get(record["id"])
        if item is None:
            raise EvalInputError(f"{responses} row {row.row}: id {record['id']!r} is not a query of {queries}")
        checklist = item.metadata.get("checklist")
        if not isinstance(checklist, list) or not checklist or not all(isinstance(c, dict) for c in checklist):
            raise EvalInputError(f"{queries}: query {item.id!r}: key 'checklist' must be a non-empty list of objects")
        if lang and item.metadata.get("lang") != lang:
            continue
        jobs.append({"row": row.row, "item": item, "sample": record.get("sample", 0), "response": record["response"]})
    order = {item_id: i for i, item_id in enumerate(items)}
    jobs.sort(key=lambda job: (order[job["item"].id], job["sample"]))
    return jobs[:limit] if limit is not None else jobs


async def _score_all(jobs: list[dict[str, Any]], critic: ChatClient, max_tokens: int, progress: bool) -> None:
    total = sum(len(job["item"].metadata["checklist"]) for job in jobs)
    bar = tqdm(total=total, unit="criterion", desc="writingbench", disable=not progress, file=sys.stderr)

    async def one(job: dict[str, Any], position: int, criterion: dict[str, Any]) -> None:
        messages = build_messages(job["item"].prompt, job["response"], criterion)
        try:
            score, _ = await critic.complete(messages, parse_score, temperature=0.0, max_tokens=max_tokens)
            job["scores"][position] = score
        except ChatError as err:
            job["errors"][position] = str(err)[:300]
        bar.update(1)

    for job in jobs:
        job["scores"], job["errors"] = {}, {}
    try:
        await asyncio.gather(
            *(
                one(job, position, criterion)
                for job in jobs
                for position, criterion in enumerate(job["item"].metadata["checklist"])
            )
        )
    finally:
        bar.close()
        await critic.close()


def aggregate(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """WritingBench's aggregation of scored jobs (see the module docstring)."""
    all_scores: list[int] = []
    by_domain: dict[str, list[float]] = defaultdict(list)
    by_subdomain: dict[str, list[float]] = defaultdict(list)
    details = []
    invalid_criteria = 0
    queries_without_score = 0
    for job in jobs:
        item, checklist = job["item"], job["item"].metadata["checklist"]
        valid = [job["scores"][p] for p in range(len(checklist)) if p in job["scores"]]
        invalid_criteria += len(checklist) - len(valid)
        query_score = sum(valid) / len(valid) if valid else None
        if query_score is None:
            queries_without_score += 1
        else:
            all_scores += valid
            by_domain[str(item.metadata.get("domain1", "all"))].append(query_score)
            if item.metadata.get("domain2") is not None:
                by_subdomain[str(item.metadata["domain2"])].append(query_score)
        details.append(
            {
                "id": item.id,
                "sample": job["sample"],
                "domain1": item.metadata.get("domain1"),
                "domain2": item.metadata.get("domain2"),
                "score": query_score,
                "criteria": {_criterion_name(c, p): job["scores"].get(p) for p, c in enumerate(checklist)},
                "errors": {_criterion_name(checklist[p], p): e for p, e in job["errors"].items()},
            }
        )

    def means(groups: dict[str, list[float]]) -> dict[str, dict[str, float | int]]:
        return {name: {"score": sum(v) / len(v), "queries": len(v)} for name, v in sorted(groups.items())}

    return {
        "overall": sum(all_scores) / len(all_scores) if all_scores else None,
        "scale": "1-10",
        "queries": len(jobs),
        "queries_scored": len(jobs) - queries_without_score,
        "queries_without_valid_score": queries_without_score,
        "criteria": sum(len(job["item"].metadata["checklist"]) for job in jobs),
        "criteria_invalid": invalid_criteria,
        "per_domain": means(by_domain),
        "per_subdomain": means(by_subdomain),
        "details": details,
    }


def score_writingbench(
    responses: str,
    critic: ChatClient,
    queries: str = "writingbench",
    lang: str | None = None,
    limit: int | None = None,
    max_tokens: int = 1024,
    progress: bool = True,
) -> dict[str, Any]:
    jobs = _jobs(responses, queries, lang, limit)
    if not jobs:
        raise EvalInputError(f"{responses}: no response matches a query of {queries}" + (f" in {lang}" if lang else ""))
    asyncio.run(_score_all(jobs, critic, max_tokens, progress))
    result = aggregate(jobs)
    result.update({"critic_model": critic.model, "critic_prompt": CRITIC_PROMPT_VERSION, "lang": lang or "all"})
    return result


def writingbench_markdown(result: dict[str, Any]) -> str:
    rows = [[name, v["score"], v["queries"]] for name, v in result["per_domain"].items()]
    overall = result["overall"]
    rows.append(["**overall**", overall if overall is not None else "n/a", result["queries_scored"]])
    out = markdown_table(["domain", "score (1-10)", "queries"], rows)
    out += (
        f"\n\n{result['criteria_invalid']} of {result['criteria']} criteria invalid (critic failed or unparseable "
        f"after retries; excluded); {result['queries_without_valid_score']} queries without any valid score"
    )
    return out
