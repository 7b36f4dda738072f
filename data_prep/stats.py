"""`stats`: a readable summary of a converted parquet file, read in batches."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow.parquet as pq

from rewards.spec import ConstraintSpec


def summarize(path: str, tokenizer_dir: str | None = None, batch_rows: int = 4096) -> str:
    parquet = pq.ParquetFile(path)
    count_tokens = None
    if tokenizer_dir:
        from data_prep.convert import _token_counter

        count_tokens = _token_counter(tokenizer_dir)
    kinds, per_prompt, sources = Counter(), Counter(), Counter()
    lengths: list[int] = []
    rows = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=["data_source", "prompt", "reward_model"]):
        for record in batch.to_pylist():
            rows += 1
            sources[record["data_source"]] += 1
            spec = ConstraintSpec.parse(record["reward_model"]["ground_truth"])
            per_prompt[len(spec.constraints)] += 1
            for constraint in spec.constraints:
                kinds["judge (free text)" if constraint.type == "judge" else constraint.instruction_id] += 1
            messages = record["prompt"]
            lengths.append(count_tokens(messages) if count_tokens else sum(len(m["content"]) for m in messages))
    unit = "tokens (chat template applied)" if count_tokens else "characters"
    lines = [f"{path}: {rows} rows"]
    lines.append("data sources: " + ", ".join(f"{name} {n}" for name, n in sources.most_common()))
    lines.append("constraints per prompt: " + ", ".join(f"{k}: {per_prompt[k]}" for k in sorted(per_prompt)))
    lines.append("constraint kinds:")
    lines += [f"  {kind:<48} {n}" for kind, n in kinds.most_common()]
    if lengths:
        p = np.percentile(np.array(lengths), [0, 50, 90, 99, 100])
        lines.append(
            f"prompt length in {unit}: min {p[0]:.0f}, p50 {p[1]:.0f}, p90 {p[2]:.0f}, p99 {p[3]:.0f}, max {p[4]:.0f}"
        )
    return "\n".join(lines)
