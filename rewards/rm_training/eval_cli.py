"""Evaluate a trained reward model on held-out preference pairs.

    python -m rewards.eval_rm --model DIR --pairs PAIRS [--output report.json] [--max-length N]
        [--batch-size 8] [--rejects PATH] [--device auto]

Prints the pairwise accuracy, the score distribution (mean, std, percentiles) of chosen and of
rejected responses, and the pooled score std next to a suggested scale for RLMR's
``algorithm.rlmr.gamma`` (a margin in RM units). Pairs are read and formatted exactly as in training
(``rewards.rm_training.pairs``, ``rewards.rm_format``); bad rows are counted and, with ``--rejects``
(default: next to ``--output``), written with their reasons. ``--max-length`` defaults to the
value the model was trained with (``rm_training.json``), else 4096.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rewards.eval_rm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="trained reward model folder")
    p.add_argument("--pairs", required=True, help="held-out pairs (.jsonl, .json, .csv, .parquet)")
    p.add_argument("--output", default=None, help="write the report as JSON here")
    p.add_argument("--max-length", type=int, default=None, help="tokens per side (default: as trained)")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per forward pass")
    p.add_argument("--margin-key", default="margin")
    p.add_argument("--rejects", default=None, help="rejects file (default: beside --output)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true")
    return p


def trained_max_length(model_dir: str | Path) -> int | None:
    meta = Path(model_dir) / "rm_training.json"
    if meta.is_file():
        return json.loads(meta.read_text()).get("max_input_tokens")
    return None


def evaluate(args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rewards.rm_training.evaluate import pair_report, score_pairs
    from rewards.rm_training.pairs import prepare_pairs

    max_length = args.max_length or trained_max_length(args.model) or 4096
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        raise ValueError(f"{args.model}: the tokenizer has no pad token (was it saved by rewards.train_rm?)")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(args.model, dtype=dtype).to(device)
    rejects = args.rejects or (str(Path(args.output).with_suffix("")) + ".rejects.jsonl" if args.output else None)
    with tempfile.TemporaryDirectory(prefix="eval_rm-") as scratch:
        dataset, summary = prepare_pairs(
            args.pairs,
            tokenizer,
            max_length,
            Path(scratch) / "pairs",
            margin_key=args.margin_key or None,
            rejects_path=rejects,
            progress=not args.no_progress,
        )
        chosen, rejected = score_pairs(model, dataset, tokenizer.pad_token_id, args.batch_size, not args.no_progress)
    report = pair_report(chosen, rejected)
    report["model"], report["max_input_tokens"], report["data"] = str(args.model), max_length, summary.as_dict()
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rewards.readers import InputError
    from rewards.rm_training.evaluate import render_report
    from rewards.rm_training.pairs import PairsError

    try:
        report = evaluate(args)
    except (PairsError, InputError, FileNotFoundError, OSError, ValueError) as err:
        print(f"eval_rm: {err}", file=sys.stderr)
        return 2
    data = report["data"]
    rejected = sum(data["rejected"].values())
    print(f"{args.pairs}: {data['kept']} pairs scored, {rejected} rows rejected {data['rejected']}")
    print(render_report(report, title=str(args.model)))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0
