"""``python -m recipe.rlmr.pipeline``: the paper's stages in one command, one work directory, files between them.

    python -m recipe.rlmr.pipeline --workdir DIR [--quick] [--from STAGE] [--until STAGE] [--set FIELD=VALUE ...]
                                   [--expand-url URL --expand-model NAME]

Stages, in order (``STAGES``): prompts, pairs, rm, arms, merge, evaluate, overopt, report. Each stage
(and each arm within a per-arm stage) records its summary in ``DIR/state/``; a recorded stage is skipped
on the next run, so a killed run resumes where it stopped (a killed arm restarts that arm's training).
``--from STAGE`` forgets that stage and every later one and runs them again. ``--quick`` is the tiny
preset (minutes on a 2-core CPU); without it, SmolLM2-135M-Instruct (hours). ``--set`` changes any
preset field (``recipe/rlmr/pipeline/presets.py``). At the end: ``summary.md``, ``results.csv``,
``overopt.csv`` and ``pipeline.png`` in DIR.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from recipe.rlmr.pipeline import stages
from recipe.rlmr.pipeline.presets import PRESETS, Preset
from recipe.rlmr.pipeline.prompts import run_prompts

STAGES = ("prompts", "pairs", "rm", "arms", "merge", "evaluate", "overopt", "report")
PER_ARM = {"arms", "merge", "overopt"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m recipe.rlmr.pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", required=True, help="every stage's files go here")
    parser.add_argument("--quick", action="store_true", help="the tiny preset (minutes); default: the full one")
    parser.add_argument("--from", dest="start", choices=STAGES, help="run this stage and every later one again")
    parser.add_argument("--until", dest="stop", choices=STAGES, help="stop after this stage")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--expand-url", default=None, help="an OpenAI-compatible server for self-instruct expansion")
    parser.add_argument("--expand-model", default=None, help="the model name that server serves")
    args = parser.parse_args(argv)
    if args.expand_url and not args.expand_model:
        parser.error("--expand-url needs --expand-model")
    return args


class StateBook:
    """Which stage units are done, with their summaries, as one JSON file per unit under ``state/``."""

    def __init__(self, work: Path):
        self.dir = work / "state"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, stage: str, unit: str | None) -> Path:
        return self.dir / (f"{stage}.{unit}.json" if unit else f"{stage}.json")

    def get(self, stage: str, unit: str | None = None) -> dict | None:
        path = self._path(stage, unit)
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, stage: str, unit: str | None, summary: dict) -> None:
        path = self._path(stage, unit)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        tmp.replace(path)

    def forget_from(self, stage: str) -> None:
        for later in STAGES[STAGES.index(stage) :]:
            for path in self.dir.glob(f"{later}.*json"):
                path.unlink()


def check_preset(work: Path, preset: Preset) -> None:
    """A workdir keeps the preset it was started with: mixing two presets' files would mean nothing."""
    path = work / "preset.json"
    current = {k: list(v) if isinstance(v, tuple) else v for k, v in preset.__dict__.items()}
    if path.exists():
        before = json.loads(path.read_text())
        changed = {k: (before.get(k), v) for k, v in current.items() if before.get(k) != v}
        if changed:
            raise SystemExit(
                f"{work} was started with another preset; changed fields (before, now): {changed}. "
                "Use a new --workdir, or --from the first stage they affect after editing preset.json."
            )
    else:
        path.write_text(json.dumps(current, indent=2) + "\n")


def run(args: argparse.Namespace) -> int:
    preset = PRESETS["quick" if args.quick else "full"].with_overrides(args.overrides)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    check_preset(work, preset)
    book = StateBook(work)
    if args.start:
        book.forget_from(args.start)
    models = ["base", *preset.arms]
    units = {
        "prompts": [None],
        "pairs": [None],
        "rm": [None],
        "arms": list(preset.arms),
        "merge": list(preset.arms),
        "evaluate": [*models, *(f"pairwise_{arm}" for arm in preset.arms)],
        "overopt": list(preset.arms),
        "report": [None],
    }
    started = time.monotonic()
    for number, stage in enumerate(STAGES, 1):
        for unit in units[stage]:
            label = f"[pipeline] {number}/{len(STAGES)} {stage}" + (f" {unit}" if unit else "")
            if book.get(stage, unit) is not None and stage != "report":
                print(f"{label}: done before, skipped", flush=True)
                continue
            print(f"{label}: running", flush=True)
            t0 = time.monotonic()
            summary = run_unit(work, preset, stage, unit, args, book)
            summary["seconds"] = round(time.monotonic() - t0, 1)
            book.put(stage, unit, summary)
            shown = {k: v for k, v in summary.items() if not isinstance(v, (dict, list)) and k != "run_dir"}
            print(f"{label}: done in {summary['seconds']:.0f} s {shown}", flush=True)
        if stage == args.stop:
            print(f"[pipeline] stopped after {stage} (--until)", flush=True)
            return 0
    print(f"[pipeline] finished in {time.monotonic() - started:.0f} s: {work / 'summary.md'}", flush=True)
    return 0


def run_unit(work: Path, preset: Preset, stage: str, unit: str | None, args, book: StateBook) -> dict:
    if stage == "prompts":
        return run_prompts(work / "prompts", preset, args.expand_url, args.expand_model)
    if stage == "pairs":
        return stages.run_pairs(work, preset, stages.policy_path(work, preset))
    if stage == "rm":
        return stages.run_rm(work, preset)
    if stage == "arms":
        return stages.run_arm(work, preset, unit)
    if stage == "merge":
        return stages.run_merge(work, preset, unit)
    if stage == "evaluate":
        if unit.startswith("pairwise_"):
            return stages.run_pairwise(work, preset, unit.removeprefix("pairwise_"))
        return stages.run_evaluate(work, preset, unit)
    if stage == "overopt":
        return stages.run_overopt(work, preset, unit)
    from recipe.rlmr.pipeline.report import write_report

    return write_report(work, preset, book)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except stages.GateError as error:
        print(f"[pipeline] stopped by the RM gate: {error}", file=sys.stderr)
        return 3
    except (RuntimeError, ValueError, FileNotFoundError) as error:
        print(f"[pipeline] failed: {error}", file=sys.stderr)
        return 1
