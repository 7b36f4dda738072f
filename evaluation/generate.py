"""``generate``: answer every prompt of a file with a served model (OpenAI chat completions).

Each answer is appended to ``OUTPUT.partial`` (a journal, flushed per line) as it arrives; at the
end the journal and the answers already in ``OUTPUT`` are merged, in prompt-file order, into a
temporary file that is renamed over ``OUTPUT``. A run that is interrupted (Ctrl-C, a kill) leaves
the journal; the next run with the same output reads both and asks only for what is missing.
With ``--seed S`` sample k of every prompt is requested with seed ``S + k``: reproducible, and the
``--n`` samples of a prompt differ (a server that honours seeds would answer one seed n times alike).
Prompts that still fail after retries are listed in the summary and are not written: a missing
line, never an empty answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from evaluation.chat import ChatClient, ChatError
from evaluation.files import EvalInputError, PromptItem, read_prompts, read_responses, write_atomically


@dataclass
class GenerateSummary:
    prompts: int
    samples_wanted: int
    already_done: int = 0
    written: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # {"id", "sample", "error"}
    truncated: int = 0  # finish_reason == "length"
    empty: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _journal(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def _read_journal(path: Path) -> dict[tuple, dict[str, Any]]:
    """Answers journaled by an earlier run; a last line cut by a kill is dropped (it is asked again)."""
    done: dict[tuple, dict[str, Any]] = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line being written when the run was killed
            if isinstance(record, dict) and "id" in record and isinstance(record.get("response"), str):
                done[(record["id"], record.get("sample", 0))] = record
    return done


def response_record(item: PromptItem, sample: int, text: str, choice: dict[str, Any]) -> dict[str, Any]:
    record = {"id": item.id, "sample": sample, "prompt": item.prompt, "response": text}
    if choice.get("finish_reason") is not None:
        record["finish_reason"] = choice["finish_reason"]
    if len(item.messages) > 1:
        record["messages"] = item.messages
    for key, value in item.metadata.items():
        record.setdefault(key, value)
    return record


async def _generate(
    items: list[PromptItem],
    client: ChatClient,
    output: Path,
    n: int,
    sampling: dict[str, Any],
    progress: bool,
) -> GenerateSummary:
    summary = GenerateSummary(prompts=len(items), samples_wanted=len(items) * n)
    done: dict[tuple, dict[str, Any]] = {}
    if output.exists():
        done.update((row.key, row.record) for row in read_responses(str(output)))
    done.update(_read_journal(_journal(output)))
    known = {(item.id, s) for item in items for s in range(n)}
    summary.already_done = len(known & set(done))
    todo = [(item, s) for item in items for s in range(n) if (item.id, s) not in done]

    journal = open(_journal(output), "a", encoding="utf-8")  # noqa: SIM115 (closed in finally)
    bar = tqdm(total=len(todo), unit="answer", desc="generate", disable=not progress, file=sys.stderr)

    async def one(item: PromptItem, sample: int) -> None:
        options = dict(sampling)
        if "seed" in options:  # one seed per sample: the same seed n times would ask for the same answer n times
            options["seed"] += sample
        try:
            text, choice = await client.complete(item.messages, **options)
        except ChatError as err:
            summary.failed.append({"id": item.id, "sample": sample, "error": str(err)[:500]})
        else:
            record = response_record(item, sample, text, choice)
            done[(item.id, sample)] = record
            journal.write(json.dumps(record, ensure_ascii=False) + "\n")
            journal.flush()
        bar.update(1)

    try:
        await asyncio.gather(*(one(item, s) for item, s in todo))
    finally:
        bar.close()
        journal.close()
        await client.close()
        # Whatever was answered, interrupted or not, lands in OUTPUT in prompt order.
        order = {(item.id, s): i for i, (item, s) in enumerate((item, s) for item in items for s in range(n))}
        ordered = sorted(done.values(), key=lambda r: order.get((r["id"], r.get("sample", 0)), len(order)))
        write_atomically(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
        os.remove(_journal(output))
    for record in done.values():
        if (record["id"], record.get("sample", 0)) in known:
            summary.truncated += record.get("finish_reason") == "length"
            summary.empty += not record["response"].strip()
    summary.written = len(known & set(done))
    summary.failed.sort(key=lambda f: order[(f["id"], f["sample"])])
    return summary


def run_generate(
    prompts: str,
    output: str,
    client: ChatClient,
    n: int = 1,
    temperature: float = 0.0,
    max_tokens: int = 2048,
    top_p: float | None = None,
    seed: int | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> GenerateSummary:
    if n < 1 or max_tokens < 1:
        raise ValueError("--n and --max-tokens must be >= 1")
    items = read_prompts(prompts)
    if limit is not None:
        items = items[:limit]
    sampling: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
    if top_p is not None:
        sampling["top_p"] = top_p
    if seed is not None:
        sampling["seed"] = seed
    output_path = Path(output)
    if output_path.exists():
        try:
            read_responses(output)
        except EvalInputError as err:
            raise EvalInputError(f"cannot resume into {output}: {err}") from err
    return asyncio.run(_generate(items, client, output_path, n, sampling, progress))


def summary_markdown(summary: GenerateSummary) -> str:
    from evaluation.files import markdown_table

    table = markdown_table(
        ["prompts", "answers wanted", "already there", "in output", "failed", "cut at max tokens", "empty"],
        [
            [
                summary.prompts,
                summary.samples_wanted,
                summary.already_done,
                summary.written,
                len(summary.failed),
                summary.truncated,
                summary.empty,
            ]
        ],
    )
    if summary.failed:
        table += "\n\nFailed after retries (not written; run again to retry them):\n"
        table += "\n".join(f"- id {f['id']!r} sample {f['sample']}: {f['error']}" for f in summary.failed)
    return table
