"""Input row shapes -> (chat messages, constraint spec), or a ``Rejected`` with its reason.

- ``generic``: ``prompt`` (a string or chat messages), optional ``constraints`` (a list of spec
  items, a spec object or its JSON string), optional ``system``.
- ``ifeval``: ``prompt``, ``instruction_id_list``, ``kwargs`` (IFEval's own files).
- ``writingbench``: ``query`` and ``checklist`` (WritingBench): each checklist item becomes a judge
  constraint ("name: criteria_description").
- ``auto`` picks per row: ifeval if ``instruction_id_list`` is present, writingbench if
  ``checklist`` is, else generic.

Field names can be remapped (``FieldMap``), e.g. ``--prompt-field instruction``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rewards.constraints import known_instruction_ids, validate_kwargs
from rewards.spec import ConstraintSpec, JudgeConstraint, RuleConstraint

SHAPES = ("auto", "generic", "ifeval", "writingbench")


class Rejected(Exception):
    """A row that cannot be used; ``reason`` is a short fixed label, ``detail`` says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class FieldMap:
    prompt: str = "prompt"
    constraints: str = "constraints"
    system: str = "system"
    instruction_ids: str = "instruction_id_list"
    kwargs: str = "kwargs"
    query: str = "query"
    checklist: str = "checklist"
    data_source: str = "data_source"


@dataclass
class Parsed:
    messages: list[dict[str, str]]
    spec: ConstraintSpec
    shape: str
    data_source: str | None


def detect_shape(record: dict[str, Any], fields: FieldMap) -> str:
    if fields.instruction_ids in record:
        return "ifeval"
    if fields.checklist in record and fields.query in record:
        return "writingbench"
    return "generic"


def _messages(prompt: Any, system: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
    else:
        raise Rejected(
            "bad_prompt",
            f"prompt must be a string or a list of {{role, content}} messages, got {type(prompt).__name__}",
        )
    if isinstance(system, str) and system.strip() and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    if not any(m["role"] == "user" and m["content"].strip() for m in messages):
        raise Rejected("empty_prompt", "no non-empty user message")
    return messages


def _rule(instruction_id: Any, kwargs: Any) -> RuleConstraint:
    if not isinstance(instruction_id, str) or instruction_id not in known_instruction_ids():
        raise Rejected("unknown_instruction_id", f"{instruction_id!r} is not an IFEval or rlmr:* instruction id")
    kwargs = (
        {k: v for k, v in (kwargs or {}).items() if v is not None}
        if isinstance(kwargs, dict) or kwargs is None
        else kwargs
    )
    if not isinstance(kwargs, dict):
        raise Rejected("bad_kwargs", f"{instruction_id}: kwargs must be an object, got {type(kwargs).__name__}")
    try:
        validate_kwargs(instruction_id, kwargs)
    except ValueError as err:
        raise Rejected("bad_kwargs", str(err)) from err
    return RuleConstraint.model_construct(type="rule", instruction_id=instruction_id, kwargs=kwargs)


def _constraint(item: Any) -> RuleConstraint | JudgeConstraint:
    if isinstance(item, str):  # bare text: a judge constraint
        if not item.strip():
            raise Rejected("bad_constraints", "empty constraint text")
        return JudgeConstraint(text=item)
    if not isinstance(item, dict):
        raise Rejected("bad_constraints", f"constraint must be an object or text, got {type(item).__name__}")
    kind = item.get("type", "rule" if "instruction_id" in item else "judge")
    if kind == "rule":
        return _rule(item.get("instruction_id"), item.get("kwargs"))
    if kind == "judge" and isinstance(item.get("text"), str) and item["text"].strip():
        return JudgeConstraint(text=item["text"])
    raise Rejected("bad_constraints", f"cannot read constraint {json.dumps(item, ensure_ascii=False)[:200]}")


def _generic(record: dict[str, Any], fields: FieldMap) -> tuple[list[dict[str, str]], ConstraintSpec]:
    if fields.prompt not in record:
        raise Rejected("missing_field", f"no {fields.prompt!r} field (fields: {sorted(record)[:10]})")
    messages = _messages(record[fields.prompt], record.get(fields.system))
    raw = record.get(fields.constraints)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except json.JSONDecodeError as err:
            raise Rejected("bad_constraints", f"{fields.constraints!r} is not JSON: {err.msg}") from err
    if isinstance(raw, dict):
        raw = raw.get("constraints", [])
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise Rejected("bad_constraints", f"{fields.constraints!r} must be a list, got {type(raw).__name__}")
    return messages, ConstraintSpec.model_construct(version=1, constraints=[_constraint(item) for item in raw])


def _ifeval(record: dict[str, Any], fields: FieldMap) -> tuple[list[dict[str, str]], ConstraintSpec]:
    messages = _messages(record.get(fields.prompt), record.get(fields.system))
    ids, kwargs = record.get(fields.instruction_ids), record.get(fields.kwargs)
    if not isinstance(ids, list) or not isinstance(kwargs, list) or len(ids) != len(kwargs):
        raise Rejected(
            "bad_constraints", f"{fields.instruction_ids!r} and {fields.kwargs!r} must be lists of equal length"
        )
    return messages, ConstraintSpec.model_construct(
        version=1, constraints=[_rule(i, k) for i, k in zip(ids, kwargs, strict=True)]
    )


def _writingbench(record: dict[str, Any], fields: FieldMap) -> tuple[list[dict[str, str]], ConstraintSpec]:
    messages = _messages(record.get(fields.query), record.get(fields.system))
    checklist = record.get(fields.checklist)
    if not isinstance(checklist, list):
        raise Rejected("bad_constraints", f"{fields.checklist!r} must be a list")
    constraints = []
    for item in checklist:
        if isinstance(item, dict):
            name, description = str(item.get("name", "")).strip(), str(item.get("criteria_description", "")).strip()
            text = f"{name}: {description}" if name and description else name or description
        else:
            text = str(item).strip()
        if not text:
            raise Rejected("bad_constraints", "empty checklist item")
        constraints.append(JudgeConstraint(text=text))
    return messages, ConstraintSpec.model_construct(version=1, constraints=constraints)


_PARSERS = {"generic": _generic, "ifeval": _ifeval, "writingbench": _writingbench}


def parse_record(record: dict[str, Any], shape: str, fields: FieldMap) -> Parsed:
    chosen = detect_shape(record, fields) if shape == "auto" else shape
    messages, spec = _PARSERS[chosen](record, fields)
    source = record.get(fields.data_source)
    return Parsed(messages, spec, chosen, source if isinstance(source, str) and source else None)
