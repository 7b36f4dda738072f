"""`convert`: prompt collections -> ``train.parquet`` / ``val.parquet`` in verl's RL schema.

Rows stream through in batches; memory holds one batch per split plus one 8-byte hash (and its
first location) per kept prompt for de-duplication. The split is a hash of (seed, normalised
prompt), so it is deterministic, independent of input order, and needs no shuffle buffer.
Every unusable row goes to the rejects file with file, row, reason and detail. Outputs are written
to temporary files beside the final ones and renamed into place only when the run succeeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from data_prep.shapes import FieldMap, Rejected, parse_record
from rewards.readers import SourceRow, count_rows, read_rows

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(MESSAGE)),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        (
            "extra_info",
            pa.struct(
                [
                    ("index", pa.int64()),
                    ("split", pa.string()),
                    ("source_file", pa.string()),
                    ("source_row", pa.int64()),
                    ("shape", pa.string()),
                    ("num_constraints", pa.int64()),
                    ("prompt_hash", pa.string()),
                ]
            ),
        ),
    ]
)
REWARD_STYLE = "rlmr"


@dataclass
class ConvertOptions:
    inputs: list[str]
    output_dir: str
    val_ratio: float = 0.05
    seed: int = 0
    rejects: str | None = None
    tokenizer: str | None = None
    max_prompt_tokens: int | None = None
    strict: bool = False
    shape: str = "auto"
    fields: FieldMap = field(default_factory=FieldMap)
    data_source: str | None = None
    ability: str = "creative_writing"
    batch_rows: int = 4096
    progress: bool = True


@dataclass
class Summary:
    kept: Counter = field(default_factory=Counter)  # split -> rows
    rejected: Counter = field(default_factory=Counter)  # reason -> rows
    shapes: Counter = field(default_factory=Counter)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    def render(self) -> str:
        lines = [f"kept {sum(self.kept.values())} rows: " + ", ".join(f"{k} {v}" for k, v in sorted(self.kept.items()))]
        lines.append(f"rejected {self.total_rejected} rows" + (":" if self.rejected else ""))
        lines += [f"  {reason:<24} {count}" for reason, count in self.rejected.most_common()]
        lines += [f"wrote {path}" for path in self.outputs.values()]
        return "\n".join(lines)


def normalised_prompt(messages: list[dict[str, str]]) -> str:
    """What counts as 'the same prompt': NFKC, case-folded, whitespace collapsed, roles kept."""
    text = "\n".join(f"{m['role']}:{m['content']}" for m in messages)
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


def prompt_hash(messages: list[dict[str, str]]) -> bytes:
    return hashlib.blake2b(normalised_prompt(messages).encode("utf-8"), digest_size=8).digest()


def split_of(digest: bytes, seed: int, val_ratio: float) -> str:
    draw = int.from_bytes(hashlib.blake2b(digest, digest_size=8, key=str(seed).encode()).digest(), "big") / 2**64
    return "val" if draw < val_ratio else "train"


class AtomicParquet:
    """A parquet file written under a temporary name and renamed into place by ``commit``."""

    def __init__(self, path: Path, schema: pa.Schema, batch_rows: int):
        self.path, self.schema, self.batch_rows = path, schema, batch_rows
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self.writer = pq.ParquetWriter(self.tmp, schema)
        self.rows: list[dict[str, Any]] = []
        self.count = 0

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.count += len(self.rows)
            self.rows = []

    def commit(self) -> None:
        self.flush()
        self.writer.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        try:
            self.writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class AtomicLines:
    """A JSON-lines file written under a temporary name and renamed into place by ``commit``."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self.handle = open(self.tmp, "w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    def commit(self) -> None:
        self.handle.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.handle.close()
        self.tmp.unlink(missing_ok=True)


def _excerpt(record: Any) -> str:
    try:
        text = json.dumps(record, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(record)
    return text[:300]


def _token_counter(tokenizer_dir: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True, trust_remote_code=True)

    def count(messages: list[dict[str, str]]) -> int:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)

    return count


def convert(options: ConvertOptions) -> Summary:
    """Run the conversion; raises InputError for unreadable inputs (before anything is written)."""
    if not 0 <= options.val_ratio < 1:
        raise ValueError(f"--val-ratio must be in [0, 1), got {options.val_ratio}")
    if (options.tokenizer is None) != (options.max_prompt_tokens is None):
        raise ValueError("--tokenizer and --max-prompt-tokens go together")
    sources = [read_rows(path) for path in options.inputs]  # raises InputError early for missing files
    total = sum(count_rows(p) or 0 for p in options.inputs) or None
    count_tokens = _token_counter(options.tokenizer) if options.tokenizer else None

    out_dir = Path(options.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    writers = {
        split: AtomicParquet(out_dir / f"{split}.parquet", SCHEMA, options.batch_rows) for split in ("train", "val")
    }
    rejects = AtomicLines(Path(options.rejects) if options.rejects else out_dir / "rejects.jsonl")
    summary = Summary()
    seen: dict[bytes, tuple[str, int]] = {}
    committed = False
    try:
        with tqdm(total=total, unit="row", desc="convert", disable=not options.progress, mininterval=1.0) as bar:
            for rows in sources:
                for row in rows:
                    bar.update(1)
                    _convert_row(row, options, count_tokens, seen, writers, rejects, summary)
        if options.strict and summary.total_rejected:
            return summary  # nothing is published; `finally` discards the outputs
        for split, writer in writers.items():
            writer.commit()
            summary.outputs[split] = str(writer.path)
        rejects.commit()
        summary.outputs["rejects"] = str(rejects.path)
        committed = True
        return summary
    finally:
        if not committed:
            for writer in writers.values():
                writer.discard()
            if options.strict and summary.total_rejected:
                rejects.commit()  # the rejects explain the failure
                summary.outputs["rejects"] = str(rejects.path)
            else:
                rejects.discard()


def _convert_row(
    row: SourceRow, options: ConvertOptions, count_tokens, seen, writers, rejects, summary: Summary
) -> None:
    def reject(reason: str, detail: str) -> None:
        summary.rejected[reason] += 1
        record = _excerpt(row.record) if row.record is not None else row.raw
        rejects.write({"source_file": row.source, "row": row.row, "reason": reason, "detail": detail, "record": record})

    if row.error is not None:
        return reject("undecodable", row.error)
    try:
        parsed = parse_record(row.record, options.shape, options.fields)
    except Rejected as err:
        return reject(err.reason, err.detail)
    digest = prompt_hash(parsed.messages)
    if digest in seen:
        first_file, first_row = seen[digest]
        return reject("duplicate", f"same prompt as {first_file} row {first_row}")
    if count_tokens is not None:
        tokens = count_tokens(parsed.messages)
        if tokens > options.max_prompt_tokens:
            return reject("too_long", f"{tokens} prompt tokens > --max-prompt-tokens {options.max_prompt_tokens}")
    seen[digest] = (row.source, row.row)
    split = split_of(digest, options.seed, options.val_ratio)
    writer = writers[split]
    index = writer.count + len(writer.rows)
    writer.append(
        {
            "data_source": parsed.data_source or options.data_source or Path(row.source.split("[")[0]).stem,
            "prompt": parsed.messages,
            "ability": options.ability,
            "reward_model": {"style": REWARD_STYLE, "ground_truth": parsed.spec.to_ground_truth()},
            "extra_info": {
                "index": index,
                "split": split,
                "source_file": row.source,
                "source_row": row.row,
                "shape": parsed.shape,
                "num_constraints": len(parsed.spec.constraints),
                "prompt_hash": digest.hex(),
            },
        }
    )
    summary.kept[split] += 1
    summary.shapes[parsed.shape] += 1
