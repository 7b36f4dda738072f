"""``ifeval``: IFEval's four accuracies, under lm-eval's names, and a table per instruction type.

Each instruction is checked by ``rewards.constraints`` (lm-eval's own IFEval checkers): strict on
the response, loose when any of IFEval's response variants (first/last line removed, ``*``
removed) follows it. Prompt level: every instruction of the prompt followed; instruction level:
the fraction of all instructions followed. Every response line is one scored document, so with
``--n`` > 1 each sample counts.

One quirk is IFEval's own: two ``keywords:letter_frequency`` instructions of its data ask for '#'
and '!', which the checker replaces with a random letter each time it is built, so lm-eval's verdict
on them is random. We seed Python's ``random`` per response, so ours is the same on every run.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from evaluation.files import EvalInputError, markdown_table, read_prompts, read_responses, resolve
from rewards.constraints import check_instructions, check_instructions_loose

METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")
_KEYS = ("instruction_id_list", "kwargs")


def _documents(responses: str, prompts: str | None) -> tuple[list[dict[str, Any]], list[Any]]:
    """(documents to score, ids of prompts without any response)."""
    rows = read_responses(responses)
    if not rows:
        raise EvalInputError(f"{responses}: no responses")
    by_id = {item.id: item for item in read_prompts(prompts)} if prompts else None
    documents = []
    for row in rows:
        record = row.record
        if by_id is not None:
            item = by_id.get(record["id"])
            if item is None:
                raise EvalInputError(f"{responses} row {row.row}: id {record['id']!r} is not in {resolve(prompts)}")
            meta = item.metadata
            prompt = item.prompt
        else:
            missing = [k for k in _KEYS if k not in record]
            if missing:
                raise EvalInputError(
                    f"{responses} row {row.row}: missing key(s) {missing}; pass --prompts with IFEval's prompts "
                    "(or 'ifeval' for the shipped ones)"
                )
            meta, prompt = record, record.get("prompt", "")
        ids, kwargs = meta.get("instruction_id_list"), meta.get("kwargs")
        if not isinstance(ids, list) or not isinstance(kwargs, list) or len(ids) != len(kwargs):
            raise EvalInputError(
                f"{responses} row {row.row} (id {record['id']!r}): instruction_id_list and kwargs must be lists of "
                "equal length"
            )
        documents.append(
            {
                "row": row.row,
                "id": record["id"],
                "prompt": prompt,
                "ids": ids,
                "kwargs": kwargs,
                "response": record["response"],
            }
        )
    unanswered = sorted(set(by_id) - {d["id"] for d in documents}, key=str) if by_id is not None else []
    return documents, unanswered


class InstructionTally:
    """The four accuracies and the per-instruction table from per-document verdicts (IFEval and IFBench alike)."""

    def __init__(self) -> None:
        self.prompt_strict: list[bool] = []
        self.prompt_loose: list[bool] = []
        self.inst_strict: list[bool] = []
        self.inst_loose: list[bool] = []
        self.per_type: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # count, strict, loose

    def add(self, ids: list[str], strict: list[bool], loose: list[bool]) -> None:
        self.prompt_strict.append(all(strict))
        self.prompt_loose.append(all(loose))
        self.inst_strict += strict
        self.inst_loose += loose
        for instruction_id, s, lo in zip(ids, strict, loose, strict=True):
            self.per_type[instruction_id][0] += 1
            self.per_type[instruction_id][1] += s
            self.per_type[instruction_id][2] += lo

    def result(self) -> dict[str, Any]:
        """``metrics``, ``instructions`` and ``per_instruction``."""

        def mean(values: list[bool]) -> float:
            return sum(values) / len(values) if values else 0.0

        return {
            "metrics": {
                "prompt_level_strict_acc": mean(self.prompt_strict),
                "inst_level_strict_acc": mean(self.inst_strict),
                "prompt_level_loose_acc": mean(self.prompt_loose),
                "inst_level_loose_acc": mean(self.inst_loose),
            },
            "instructions": len(self.inst_strict),
            "per_instruction": {
                name: {"count": c, "strict_acc": s / c, "loose_acc": lo / c}
                for name, (c, s, lo) in sorted(self.per_type.items())
            },
        }


def score_ifeval(responses: str, prompts: str | None = None) -> dict[str, Any]:
    documents, unanswered = _documents(responses, prompts)
    tally = InstructionTally()
    for doc in documents:
        # IFEval drops empty kwarg values before building a checker; so do we.
        kwargs = [{k: v for k, v in (kw or {}).items() if v} for kw in doc["kwargs"]]
        state = random.getstate()
        random.seed(0)  # see the module docstring: two of IFEval's instructions draw a random letter
        try:
            strict = check_instructions(doc["response"], doc["ids"], kwargs, doc["prompt"])
            loose = check_instructions_loose(doc["response"], doc["ids"], kwargs, doc["prompt"])
        except ValueError as err:
            raise EvalInputError(f"{responses} row {doc['row']} (id {doc['id']!r}): {err}") from err
        finally:
            random.setstate(state)
        tally.add(doc["ids"], strict, loose)
    return {**tally.result(), "responses": len(documents), "prompts_without_response": unanswered}


def ifeval_markdown(result: dict[str, Any]) -> str:
    metrics = result["metrics"]
    out = markdown_table(["metric", "value"], [[name, metrics[name]] for name in METRICS])
    out += f"\n\n{result['responses']} responses, {result['instructions']} instructions"
    if result["prompts_without_response"]:
        out += f"; {len(result['prompts_without_response'])} prompts have no response and are not scored"
    out += "\n\n" + markdown_table(
        ["instruction", "count", "strict acc", "loose acc"],
        [[name, v["count"], v["strict_acc"], v["loose_acc"]] for name, v in result["per_instruction"].items()],
    )
    return out
