"""Preference pairs -> tokenized (chosen_input_ids, rejected_input_ids, margin) rows, streamed, with a rejects file.

The column names are the ones TRL 0.27's RewardTrainer takes as already tokenized (it tokenizes nothing again).

Accepted row shapes (jsonl, json, csv, parquet or a saved dataset, read by ``rewards.readers``):

- ``{"prompt": str, "chosen": str, "rejected": str}``;
- ``prompt`` as chat messages (``[{"role", "content"}, ...]``), ``chosen``/``rejected`` as strings,
  an assistant message, or a list of messages ending with an assistant turn;
- no ``prompt``: ``chosen`` and ``rejected`` are whole conversations that share every turn but
  the last assistant one, as message lists or as HH-RLHF text (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``);
- an optional per-pair margin under ``margin_key`` (a finite number; absent means 0).

Each pair becomes two texts through ``rewards.rm_format.format_rm_input``, the same function the RLMR
reward client calls at serving time, cut to the last ``max_length`` tokens, then token ids through
``tokenize_rm_input``. A row that cannot be used goes to the rejects file with its file, row,
reason and detail; kept + rejected = rows read. ``strict`` stops at the first bad row instead.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewards.readers import InputError, count_rows, read_rows
from rewards.rm_format import format_rm_input, tokenize_rm_input

Messages = list[dict[str, str]]


class BadPair(Exception):
    """A row that cannot become a training pair: ``reason`` (a short key) and ``detail``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class PairsError(ValueError):
    """Pairs that cannot be used at all: ``--strict`` met a bad row (named by file and row), or no
    row was usable."""


@dataclass
class Pair:
    messages: Messages  # the prompt conversation, without the scored assistant turn
    chosen: str
    rejected: str
    margin: float = 0.0


@dataclass
class PrepSummary:
    source: str
    read: int = 0
    kept: int = 0
    truncated: int = 0  # kept pairs with at least one side cut to max_length
    rejected: Counter = field(default_factory=Counter)  # reason -> rows
    rejects_path: str | None = None

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    def render(self) -> str:
        lines = [f"{self.source}: read {self.read} rows, kept {self.kept} pairs ({self.truncated} truncated)"]
        lines.append(f"  rejected {self.total_rejected} rows" + (f" -> {self.rejects_path}" if self.rejected else ""))
        lines += [f"    {reason:<28} {count}" for reason, count in self.rejected.most_common()]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "read": self.read,
            "kept": self.kept,
            "truncated": self.truncated,
            "rejected": dict(self.rejected),
            "rejects_path": self.rejects_path,
        }


# ---------------------------------------------------------------------------------------- shapes

_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def _message(value: Any, where: str) -> dict[str, str]:
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("role"), str)
        or not isinstance(value.get("content"), str)
    ):
        raise BadPair("bad_message", f"{where}: expected {{'role': str, 'content': str}}, got {_short(value)}")
    return {"role": value["role"], "content": value["content"]}


def _messages(value: Any, key: str) -> Messages:
    if hasattr(value, "tolist"):  # numpy arrays from parquet list columns
        value = value.tolist()
    if isinstance(value, dict):
        return [_message(value, key)]
    if not isinstance(value, list):
        raise BadPair("bad_type", f"'{key}' must be a string or chat messages, got {type(value).__name__}")
    return [_message(item, f"{key}[{i}]") for i, item in enumerate(value)]


def _hh_conversation(text: str, key: str) -> Messages:
    """HH-RLHF text (``\\n\\nHuman: ..\\n\\nAssistant: ..``) -> chat messages."""
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise BadPair("bad_conversation", f"'{key}' has no prompt and is not HH-RLHF text (\\n\\nHuman: ...)")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[who], "content": said} for who, said in zip(parts[1::2], parts[2::2], strict=True)]


def _side(record: dict[str, Any], key: str, prompt: Messages | None) -> tuple[Messages, str]:
    """(prompt messages, response) for the ``chosen`` or ``rejected`` side of a row."""
    value = record.get(key)
    if value is None:
        raise BadPair("missing_key", f"no '{key}'")
    if prompt is not None and isinstance(value, str):
        return prompt, value
    if isinstance(value, str):
        conversation = _hh_conversation(value, key)
    else:
        conversation = (prompt or []) + _messages(value, key)
    if not conversation or conversation[-1]["role"] != "assistant":
        raise BadPair("not_assistant_last", f"'{key}' must end with an assistant turn")
    return conversation[:-1], conversation[-1]["content"]


def parse_pair(record: dict[str, Any], margin_key: str | None) -> Pair:
    """One input row -> a ``Pair``; raises ``BadPair`` with the reason."""
    if not isinstance(record, dict):
        raise BadPair("bad_type", f"row must be an object, got {type(record).__name__}")
    for key in ("chosen", "rejected"):
        if record.get(key) is None:
            raise BadPair("missing_key", f"no '{key}' (keys: {sorted(record)})")
    prompt_value = record.get("prompt")
    prompt: Messages | None
    if prompt_value is None:
        prompt = None
    elif isinstance(prompt_value, str):
        prompt = [{"role": "user", "content": prompt_value}]
    else:
        prompt = _messages(prompt_value, "prompt")
    chosen_prompt, chosen = _side(record, "chosen", prompt)
    rejected_prompt, rejected = _side(record, "rejected", prompt)
    if chosen_prompt != rejected_prompt:
        raise BadPair("prompt_mismatch", "'chosen' and 'rejected' differ before their last assistant turn")
    if not any(m["content"].strip() for m in chosen_prompt):
        raise BadPair("empty_prompt", "no prompt text")
    for name, text in (("chosen", chosen), ("rejected", rejected)):
        if not text.strip():
            raise BadPair("empty_response", f"'{name}' response is empty")
    if chosen == rejected:
        raise BadPair("identical", "'chosen' and 'rejected' responses are identical")
    margin = 0.0
    if margin_key and record.get(margin_key) is not None:
        value = record[margin_key]
        try:
            margin = float(value)
        except (TypeError, ValueError):
            raise BadPair("bad_margin", f"'{margin_key}' must be a number, got {_short(value)}") from None
        if isinstance(value, bool) or not math.isfinite(margin):
            raise BadPair("bad_margin", f"'{margin_key}' must be a finite number, got {_short(value)}")
    return Pair(chosen_prompt, chosen, rejected, margin)


def pair_texts(tokenizer, pair: Pair, max_length: int) -> tuple[str, str, bool]:
    """(chosen text, rejected text, whether either was cut): exactly what the RM client sends."""
    chosen, cut_c = format_rm_input(tokenizer, pair.messages, pair.chosen, max_length)
    rejected, cut_r = format_rm_input(tokenizer, pair.messages, pair.rejected, max_length)
    return chosen, rejected, cut_c or cut_r


def tokenize_pair(tokenizer, pair: Pair, max_length: int) -> dict[str, Any]:
    chosen, rejected, cut = pair_texts(tokenizer, pair, max_length)
    chosen_ids, rejected_ids = tokenize_rm_input(tokenizer, chosen), tokenize_rm_input(tokenizer, rejected)
    if chosen_ids == rejected_ids:
        raise BadPair("identical_after_truncation", f"both sides are the same last {max_length} tokens")
    return {"chosen_input_ids": chosen_ids, "rejected_input_ids": rejected_ids, "margin": pair.margin, "truncated": cut}


# ------------------------------------------------------------------------------------ streaming


def _short(value: Any, limit: int = 120) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def iter_tokenized(
    path: str,
    tokenizer,
    max_length: int,
    margin_key: str | None,
    summary: PrepSummary,
    rejects,
    strict: bool = False,
    progress: bool = True,
) -> Iterator[dict[str, Any]]:
    """Stream ``path``'s rows as tokenized pairs; bad rows go to ``rejects`` (a text file) or raise."""
    from tqdm import tqdm

    with tqdm(total=count_rows(path), unit="row", desc=f"pairs {Path(path).name}", disable=not progress) as bar:
        for row in read_rows(path):
            bar.update(1)
            summary.read += 1
            try:
                if row.error is not None:
                    raise BadPair("undecodable", row.error)
                tokenized = tokenize_pair(tokenizer, parse_pair(row.record, margin_key), max_length)
            except BadPair as bad:
                if strict:
                    raise PairsError(f"{row.source} row {row.row}: {bad.reason}: {bad.detail}") from None
                summary.rejected[bad.reason] += 1
                if rejects is not None:
                    record = row.record if row.record is not None else row.raw
                    entry = {"source_file": row.source, "row": row.row, "reason": bad.reason, "detail": bad.detail}
                    rejects.write(json.dumps({**entry, "record": _short(record, 300)}, ensure_ascii=False) + "\n")
                continue
            summary.kept += 1
            summary.truncated += tokenized.pop("truncated")
            yield {**tokenized, "row": row.row}


def prepare_pairs(
    path: str,
    tokenizer,
    max_length: int,
    out_dir: str | Path,
    margin_key: str | None = "margin",
    rejects_path: str | Path | None = None,
    strict: bool = False,
    progress: bool = True,
):
    """Tokenize ``path`` into a ``datasets.Dataset`` saved at ``out_dir`` (memory-mapped, not in RAM).

    Returns (dataset, summary). Bad rows go to ``rejects_path`` (when None, only the summary counts
    them). Raises ``PairsError`` on a bad row in strict mode, and when no pair is left."""
    import datasets

    summary = PrepSummary(source=str(path), rejects_path=str(rejects_path) if rejects_path else None)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".prep-", dir=out_dir.parent))  # beside the output, not in /tmp
    rejects = open(rejects_path, "w", encoding="utf-8") if rejects_path else None
    features = datasets.Features(
        {
            "chosen_input_ids": datasets.List(datasets.Value("int32")),
            "rejected_input_ids": datasets.List(datasets.Value("int32")),
            "margin": datasets.Value("float32"),
            "row": datasets.Value("int64"),
        }
    )

    def generate():
        yield from iter_tokenized(path, tokenizer, max_length, margin_key, summary, rejects, strict, progress)

    try:
        # A fresh cache directory: a cached result would skip the generator, and with it the rejects.
        try:
            dataset = datasets.Dataset.from_generator(generate, features=features, cache_dir=str(scratch))
        except Exception as err:  # datasets wraps what the generator raised: surface ours as they are
            cause = err
            while cause is not None and not isinstance(cause, (PairsError, InputError)):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            raise cause from None
        if summary.kept == 0:
            raise PairsError(f"{path}: no usable pair among {summary.read} rows ({dict(summary.rejected)})")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        dataset.save_to_disk(str(out_dir))
    finally:
        if rejects is not None:
            rejects.close()
        shutil.rmtree(scratch, ignore_errors=True)
    assert summary.kept + summary.total_rejected == summary.read, "every row is kept or rejected"
    return datasets.load_from_disk(str(out_dir)), summary


def load_prepared(out_dir: str | Path):
    import datasets

    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"{out_dir}: no prepared pairs (the main process writes them first)")
    return datasets.load_from_disk(str(out_dir))
