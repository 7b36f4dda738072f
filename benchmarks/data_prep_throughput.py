"""Data prep throughput: `convert` on 200,000 generated rows; rows per second and peak memory.

    python benchmarks/data_prep_throughput.py [--rows 200000] [--format jsonl|parquet]

Rows are generic-shape prompts with two rule constraints each (1% exact duplicates, 1% with an
unknown instruction id, so the reject path is exercised too). Peak memory is the process's
maximum resident set size, printed before (imports done) and after the conversion.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def generate(rows: int):
    for i in range(rows):
        if i % 100 == 1:
            i -= 1  # duplicate of the previous prompt
        instruction = "rlmr:no_such_check" if i % 100 == 50 else "rlmr:word_range"
        yield {
            "prompt": f"Write a short story about a lighthouse keeper, variation {i}, in the style of a letter home.",
            "constraints": [
                {"type": "rule", "instruction_id": instruction, "kwargs": {"max_words": 100 + i % 400}},
                {"type": "rule", "instruction_id": "rlmr:title", "kwargs": {}},
            ],
        }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    args = parser.parse_args()

    from data_prep.convert import ConvertOptions, convert

    work = Path(tempfile.mkdtemp(prefix="rlmr-dataprep-bench-"))
    source = work / f"input.{args.format}"
    if args.format == "jsonl":
        with open(source, "w") as handle:
            for record in generate(args.rows):
                handle.write(json.dumps(record) + "\n")
    else:
        writer = None
        batch = []
        for record in generate(args.rows):
            batch.append(record)
            if len(batch) == 10_000:
                table = pa.Table.from_pylist(batch)
                writer = writer or pq.ParquetWriter(source, table.schema)
                writer.write_table(table)
                batch = []
        if batch:
            table = pa.Table.from_pylist(batch)
            writer = writer or pq.ParquetWriter(source, table.schema)
            writer.write_table(table)
        writer.close()

    before = peak_rss_mib()
    start = time.perf_counter()
    summary = convert(ConvertOptions(inputs=[str(source)], output_dir=str(work / "out"), progress=False))
    elapsed = time.perf_counter() - start
    print(f"{args.rows} {args.format} rows in {elapsed:.1f} s: {args.rows / elapsed:,.0f} rows/s")
    print(f"kept {sum(summary.kept.values())}, rejected {dict(summary.rejected)}")
    print(f"peak RSS: {before:.0f} MiB before converting (imports), {peak_rss_mib():.0f} MiB after")


if __name__ == "__main__":
    main()
