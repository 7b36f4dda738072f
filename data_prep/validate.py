"""`validate`: check a parquet file against the schema `convert` writes, parse every constraint
spec, and load it with verl's own RL dataset class (``RLHFDataset``) and a tokenizer."""

from __future__ import annotations

import pyarrow.parquet as pq

from data_prep.convert import SCHEMA
from rewards.spec import ConstraintSpec


def validate(path: str, tokenizer_dir: str, max_prompt_length: int = 4096, batch_rows: int = 4096) -> list[str]:
    """Problems found (empty when the file is good); each names the row and what is wrong."""
    problems: list[str] = []
    schema = pq.read_schema(path)
    for expected in SCHEMA:
        if expected.name not in schema.names:
            problems.append(f"{path}: missing column {expected.name!r}")
        elif not schema.field(expected.name).type.equals(expected.type):
            problems.append(
                f"{path}: column {expected.name!r} is {schema.field(expected.name).type}, expected {expected.type}"
            )
    if problems:
        return problems
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=["prompt", "reward_model"]):
        for record in batch.to_pylist():
            row += 1
            try:
                ConstraintSpec.parse(record["reward_model"]["ground_truth"])
            except ValueError as err:
                problems.append(f"{path} row {row}: reward_model.ground_truth: {str(err)[:300]}")
            if not record["prompt"] or not any(m["role"] == "user" and m["content"].strip() for m in record["prompt"]):
                problems.append(f"{path} row {row}: prompt has no non-empty user message")
    if problems:
        return problems

    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True, trust_remote_code=True)
    config = OmegaConf.create(
        {
            "prompt_key": "prompt",
            "max_prompt_length": max_prompt_length,
            "filter_overlong_prompts": False,
            "return_raw_chat": True,
        }
    )
    try:
        dataset = RLHFDataset(data_files=[path], tokenizer=tokenizer, config=config)
        if len(dataset):
            dataset[0]
            dataset[len(dataset) - 1]
    except Exception as err:
        problems.append(f"{path}: verl's RLHFDataset cannot load it: {type(err).__name__}: {err}")
    return problems
