"""Every shell command written in README.md and docs/*.md still works as written.

The commands are read from the fenced code blocks marked ``bash``/``sh``/``shell``/``console``
(blocks marked ``text``, ``json`` or nothing are output or data and are not read). Each command
is checked as cheaply as its kind allows:

- ``python -m MODULE [subcommand] ...``: the module runs with ``--help`` after its leading
  subcommand words and exits 0 (so a moved module, a renamed subcommand or an invalid choice
  fails). A ``python -m recipe.rlmr.main_rlmr`` command that names the policy model
  (``actor_rollout_ref.model.path=``) is a complete launch: its overrides go through the launch
  scripts' dry run (``recipe.rlmr.dry_run``), which composes and validates them against verl.
- ``python path/to/script.py ...``: the file exists and answers ``--help``.
- ``make TARGET ...``: the Makefile defines TARGET.
- ``bash path ...``: the file exists (the launch scripts' dry runs are tests/test_launch_scripts.py).
- anything else: its program must be in ``NOT_RUN`` below, with the reason it is not run here.

All module and script checks run in one child interpreter, so verl and torch are imported once.
What ``--help`` cannot show is covered elsewhere: Hydra overrides given to verl's ``main_ppo`` by
tests/test_config.py and tests/test_plugin.py, the CPU launcher and the demo by
tests/test_cpu_e2e.py, the data prep subcommands' options by tests/test_data_prep.py. A
``$(python -c '...')`` substitution is run by ``test_command_substitutions_print_existing_paths``.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}

# Programs whose commands are not run by this test, and why.
NOT_RUN = {
    "pip": "installs packages: `make install` (the first step of `make test` and of CI) runs the CPU install; "
    "the GPU extras pull a CUDA torch and need a GPU machine",
    "vllm": "serves a model on GPUs; vLLM is not installed on CPU machines",
    "ray": "starts or joins a Ray cluster; the tests start private Ray instances themselves "
    "(tests/test_trainer_hook.py, tests/test_group_filter.py)",
    "export": "shell builtin; the VERL_USE_EXTERNAL_MODULES path it sets up is tested by tests/test_plugin.py",
    "uv": "installs packages like pip (docs/install.md, SGLang); `make gpu-stacks` resolves that stack with uv",
    "echo": "writes a file for the next command (docs/install.md's uv override)",
    "tensorboard": "a viewer for logs; tests/test_cpu_e2e.py checks that the demo writes the tensorboard logs",
}
PYTHONS = {"python", "python3", ".venv/bin/python"}
FULL_LAUNCH_KEY = "actor_rollout_ref.model.path="
SUBCOMMAND = re.compile(r"^[a-z][a-z0-9_-]*$")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = {"&&", "||", ";", "|"}


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    argv: tuple[str, ...]  # without leading VAR=value assignments

    @property
    def text(self) -> str:
        return " ".join(self.argv)


def fenced_shell_blocks(path: Path):
    """(line of the block's first line, block text) for each shell-marked fenced block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^\s*(`{3,})\s*([\w+-]*)", lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.group(1), opening.group(2).lower()
        body_start = i + 1
        j = body_start
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        if lang in SHELL_LANGS:
            yield body_start + 1, "\n".join(lines[body_start:j])
        i = j + 1


def commands_in(path: Path) -> list[Command]:
    found = []
    for first_line, block in fenced_shell_blocks(path):
        logical, start = "", None
        for offset, line in enumerate(block.splitlines()):
            if start is None:
                start = first_line + offset
            if line.rstrip().endswith("\\"):
                logical += line.rstrip()[:-1] + " "
                continue
            logical += line
            tokens = shlex.split(logical.removeprefix("$ "), comments=True)
            part: list[str] = []
            for token in [*tokens, ";"]:
                if token in SEPARATORS:
                    while part and ENV_ASSIGNMENT.match(part[0]):
                        part.pop(0)
                    if part:
                        found.append(Command(f"{path.relative_to(REPO)}:{start}", tuple(part)))
                    part = []
                else:
                    part.append(token)
            logical, start = "", None
    return found


ALL_COMMANDS = [command for path in DOC_FILES for command in commands_in(path)]


def classify(command: Command) -> tuple[str, object]:
    """(kind, details) for one command; kind 'unknown' when no rule and no NOT_RUN entry covers it."""
    argv = command.argv
    if argv[0] in PYTHONS and len(argv) >= 3 and argv[1] == "-m":
        module, rest = argv[2], list(argv[3:])
        if module == "recipe.rlmr.main_rlmr" and any(arg.startswith(FULL_LAUNCH_KEY) for arg in rest):
            return "dry_run", rest
        prefix = []
        for arg in rest:
            if not SUBCOMMAND.match(arg):
                break
            prefix.append(arg)
        return "module", (module, [*prefix, "--help"])
    if argv[0] in PYTHONS and len(argv) >= 2 and argv[1].endswith(".py"):
        return "script", argv[1]
    if argv[0] == "make":
        targets = [arg for arg in argv[1:] if not arg.startswith("-") and "=" not in arg]
        return "make", targets or ["<default>"]
    if argv[0] == "bash" and len(argv) >= 2:
        return "file", argv[1]
    if argv[0] in NOT_RUN:
        return "not_run", NOT_RUN[argv[0]]
    return "unknown", None


# The child that runs every module and script check in one interpreter. Each job prints its
# verdict as one JSON line after a marker; the jobs' own output is captured per job.
RUNNER = r"""
import contextlib, io, json, runpy, sys, traceback

def exit_code(err):
    return err.code if isinstance(err.code, int) else (0 if err.code is None else 1)

for job in json.loads(sys.argv[1]):
    kind, target, args = job
    out = io.StringIO()
    try:
        from hydra.core.global_hydra import GlobalHydra
        GlobalHydra.instance().clear()
    except Exception:
        pass
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if kind == "module":
                sys.argv = [target, *args]
                runpy.run_module(target, run_name="__main__", alter_sys=True)
                code = 0
            elif kind == "script":
                sys.argv = [target, *args]
                runpy.run_path(target, run_name="__main__")
                code = 0
            else:  # dry_run
                from recipe.rlmr import dry_run
                code = dry_run.main(list(args))
    except SystemExit as err:
        code = exit_code(err)
    except BaseException:
        code = "raised"
        out.write(traceback.format_exc())
    print("@@JOB " + json.dumps({"job": job, "code": code, "output": out.getvalue()[-3000:]}), flush=True)
"""


@pytest.fixture(scope="module")
def run_results():
    jobs = []
    for command in ALL_COMMANDS:
        kind, details = classify(command)
        if kind == "module":
            jobs.append(["module", details[0], details[1]])
        elif kind == "script":
            jobs.append(["script", details, ["--help"]])
        elif kind == "dry_run":
            jobs.append(["dry_run", "recipe.rlmr.dry_run", details])
    unique = [json.loads(j) for j in dict.fromkeys(json.dumps(job) for job in jobs)]
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(unique)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    verdicts = {}
    for line in result.stdout.splitlines():
        if line.startswith("@@JOB "):
            verdict = json.loads(line[len("@@JOB ") :])
            verdicts[json.dumps(verdict["job"])] = verdict
    missing = [job for job in unique if json.dumps(job) not in verdicts]
    assert not missing, f"the checker died before {missing[0]}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return verdicts


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.M)}


def test_the_docs_hold_commands_and_the_readme_keeps_make_test():
    assert len(ALL_COMMANDS) >= 20, [c.text for c in ALL_COMMANDS]
    readme = [c.argv for c in ALL_COMMANDS if c.where.startswith("README.md")]
    assert ("make", "test") in readme, "CI calls `make test`: the README must keep it as a command"
    assert ("make", "demo") in readme


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: f"{c.where} {c.text[:60]}")
def test_command_works_as_written(command, run_results):
    kind, details = classify(command)
    if kind == "unknown":
        pytest.fail(
            f"{command.where}: no check for `{command.text}`; "
            "check it here or add its program to NOT_RUN with the reason"
        )
    elif kind == "not_run":
        return
    elif kind == "make":
        missing = sorted(set(details) - makefile_targets())
        assert not missing, f"{command.where}: the Makefile has no target {missing} (`{command.text}`)"
    elif kind == "file":
        assert (REPO / details).is_file(), f"{command.where}: {details} does not exist (`{command.text}`)"
    else:
        if kind == "module":
            job = ["module", details[0], details[1]]
        elif kind == "script":
            assert (REPO / details).is_file(), f"{command.where}: {details} does not exist"
            job = ["script", details, ["--help"]]
        else:
            job = ["dry_run", "recipe.rlmr.dry_run", details]
        verdict = run_results[json.dumps(job)]
        assert verdict["code"] == 0, (
            f"{command.where}: `{command.text}` -> {job} exited {verdict['code']}:\n{verdict['output']}"
        )


SUBSTITUTION = re.compile(r"\$\(python -c '([^']*)'\)([^\s\"]*)")


def test_command_substitutions_print_existing_paths():
    """`--config-path "$(python -c '...')/config"` and the like: the code runs and the path it makes exists."""
    found = [
        (command.where, *match.groups())
        for command in ALL_COMMANDS
        for arg in command.argv
        for match in SUBSTITUTION.finditer(arg)
    ]
    for where, code, suffix in found:
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{where}: python -c {code!r} failed:\n{result.stderr[-2000:]}"
        path = Path(result.stdout.strip() + suffix)
        assert path.exists(), f"{where}: {path} does not exist"


# Pages the README links before they are written (issue #11 adds them); remove once they exist.
PENDING_PAGES = {"docs/reward_model.md", "docs/evaluation.md"}
LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_relative_links_reach_a_page_and_heading():
    problems = []
    for page in DOC_FILES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            name = linked.relative_to(REPO).as_posix() if linked.is_relative_to(REPO) else str(linked)
            if not linked.exists():
                if name not in PENDING_PAGES:
                    problems.append(f"{page.name}: {target} (no such file)")
                continue
            if anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+\s+(.*)$", linked.read_text(encoding="utf-8"), flags=re.M)
                if anchor not in {github_anchor(h) for h in headings}:
                    problems.append(f"{page.name}: {target} (no such heading)")
    assert not problems, "\n".join(problems)
