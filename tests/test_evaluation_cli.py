"""`python -m evaluation --help` documents every flag of every command."""

import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.cli import _parser

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", ["generate", "ifeval", "writingbench", "pairwise"])
def test_every_flag_has_help(command):
    subparsers = next(a for a in _parser()._actions if a.dest == "command")
    parser = subparsers.choices[command]
    undocumented = [a.option_strings for a in parser._actions if a.option_strings and not (a.help or "").strip()]
    assert undocumented == []
    text = parser.format_help()
    assert all(option in text for a in parser._actions for option in a.option_strings)


def test_module_entry_point_prints_help():
    done = subprocess.run(
        [sys.executable, "-m", "evaluation", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert all(name in done.stdout for name in ("generate", "ifeval", "writingbench", "pairwise"))
