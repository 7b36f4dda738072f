#!/usr/bin/env python3
"""Check that every GPU stack docs/install.md documents resolves beside this project.

    python .ci/check_gpu_stacks.py [--stack NAME ...] [--json OUT] [--project DIR]

For each stack (rollout engine x training backend) it runs ``pip install --dry-run --ignore-installed``
of this project with that stack's extras, which resolves from the registry's metadata alone: no
CUDA wheel is downloaded, nothing is installed. A conflict (for example a pin of ours that differs
from one of verl 0.9.1's extras) fails the check with pip's own explanation. It prints, per stack,
the resolved versions users will get (torch, transformers, trl, vllm/sglang, ...) and writes them
as JSON with ``--json``.

Left out, and said so in the output: ``flash-attn`` and ``cupy-cuda13x``, which verl's ``fsdp`` and
``megatron`` extras pull through its ``flash-attn-cu130torch211`` and ``cupy-cu130`` extras. flash-attn
2.8.3 is an sdist whose setup imports torch, so it cannot even produce metadata under pip's build
isolation on any machine (verl's docs install it in a second step, after torch, with
``--no-build-isolation``; docs/install.md does the same); cupy is a CUDA-only build. The check stands
in a metadata-only placeholder wheel of the exact pinned version for each, so everything else
resolves as it would on a cluster. It resolves for the running interpreter and platform (CI: Python
3.11, Linux x86_64), except the Megatron stacks: Megatron-Bridge 0.5.x and megatron-core 0.18 require
Python 3.12, so uv resolves those for 3.12. The machine's global torch cap (``/etc/xdg/pip``) is
lifted for these calls.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stack:
    """One documented install: this project's extras plus what the stack needs beyond them."""

    extras: tuple[str, ...]
    # requirements of one of verl's extras added by hand (that extra itself cannot be resolved, see ``why``)
    verl_extra: str | None = None
    skip: tuple[str, ...] = ()  # names dropped from ``verl_extra``'s requirements
    overrides: tuple[str, ...] = ()  # uv --override pins (pip has no override: these stacks resolve with uv)
    adds: tuple[str, ...] = ()  # requirements the documented install adds beside the extras
    python: str | None = None  # resolve for this Python (with uv) instead of the running interpreter's
    why: str = ""


# Megatron-Bridge 0.5.2 (verl[megatron]==0.9.1's pin; its git branch r0.5.0) declares requires-python
# ">=3.12,<3.13" and builds against Megatron-LM core 0.18.2 (its 3rdparty submodule).
MEGATRON_PYTHON = "3.12"
MEGATRON_CORE = "megatron-core==0.18.2"

# Keep in step with docs/install.md's matrix.
STACKS: dict[str, Stack] = {
    "vllm+fsdp": Stack(extras=("vllm", "fsdp")),
    "sglang+fsdp": Stack(
        extras=("sglang", "fsdp"),
        overrides=("transformers==5.9.0",),
        why="verl[sglang]==0.9.1 itself conflicts (sglang 0.5.12 pins transformers==5.6.0, verl pins 5.9.0 and "
        "excludes 5.6.0): resolved with uv and verl's transformers pin as an override",
    ),
    "vllm+megatron": Stack(
        extras=("vllm",),
        verl_extra="megatron",
        skip=("megatron-bridge", "apex"),
        adds=(MEGATRON_CORE,),
        python=MEGATRON_PYTHON,
        why="verl[megatron]==0.9.1 itself cannot resolve (megatron-bridge==0.5.2 is not on PyPI; PyPI's 'apex' is an "
        "unrelated package): its other requirements are resolved here, those two come from NVIDIA's sources; "
        f"Python {MEGATRON_PYTHON} (Megatron-Bridge 0.5.x and megatron-core 0.18 require it) and {MEGATRON_CORE}, "
        "the core Megatron-Bridge 0.5.2 builds against",
    ),
    "sglang+megatron": Stack(
        extras=("sglang",),
        verl_extra="megatron",
        skip=("megatron-bridge", "apex"),
        overrides=("transformers==5.9.0",),
        adds=(MEGATRON_CORE,),
        python=MEGATRON_PYTHON,
        why="both of the above",
    ),
}
# CUDA-only or unbuildable-without-torch requirements: name -> the version verl 0.9.1 pins, and why.
LEFT_OUT: dict[str, tuple[str, str]] = {
    "flash-attn": ("2.8.3", "sdist whose setup imports torch: install it after torch with --no-build-isolation"),
    "cupy-cuda13x": ("14.0.1", "CUDA 13 build of cupy: resolved and installed on the cluster only"),
}
# Packages whose resolved version docs/install.md reports.
REPORTED = (
    "torch",
    "transformers",
    "trl",
    "vllm",
    "sglang",
    "verl",
    "ray",
    "megatron-core",
    "liger-kernel",
    "peft",
)


def verl_extra_requirements(extra: str, skip: tuple[str, ...]) -> list[str]:
    """What the installed verl's ``extra`` requires, less verl itself, ``skip`` and the left-out builds."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    out = []
    for line in requires("verl") or []:
        req = Requirement(line)
        if req.marker is None or not req.marker.evaluate({"extra": extra}):
            continue
        if req.name == "verl" or req.name in skip or req.name in LEFT_OUT:
            continue
        req.marker = None
        out.append(str(req))
    return out


def placeholder_wheel(folder: Path, name: str, version: str) -> Path:
    """A metadata-only wheel ``name==version`` (no files, no dependencies) for the dry run."""
    dist = name.replace("-", "_")
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: dry-run placeholder\n"
    wheel = "Wheel-Version: 1.0\nGenerator: verl-rlmr check_gpu_stacks\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{info}/METADATA", metadata)
        zf.writestr(f"{info}/WHEEL", wheel)
        zf.writestr(f"{info}/RECORD", f"{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")
    return path


def resolve(project: Path, stack: Stack, find_links: Path, report: Path) -> tuple[subprocess.CompletedProcess, str]:
    """Resolve ``stack`` (nothing installed). Returns pip's or uv's process and the command, for the log."""
    spec = f"{project}[{','.join(stack.extras)}]"
    from packaging.requirements import Requirement

    replaced = tuple(Requirement(add).name for add in stack.adds)  # verl's own line for these is dropped
    extra_reqs = verl_extra_requirements(stack.verl_extra, stack.skip + replaced) if stack.verl_extra else []
    extra_reqs += stack.adds
    env = dict(os.environ)
    env.pop("PIP_FIND_LINKS", None)  # the local CPU torch wheel must not stand in for the cluster's
    if stack.overrides or stack.python:
        overrides = report.with_suffix(".overrides.txt")
        overrides.write_text("".join(pin + "\n" for pin in stack.overrides))
        python = stack.python or f"{sys.version_info.major}.{sys.version_info.minor}"
        uv = shutil.which("uv", path=os.path.dirname(sys.executable)) or shutil.which("uv")
        if uv is None:
            raise SystemExit("uv not found: pip install uv (the test extra has it)")
        cmd = [
            uv, "pip", "compile", "--quiet", "--no-header", "--python-version", python,
            "--python-platform", "x86_64-manylinux_2_34",
            "--override", str(overrides), "--find-links", str(find_links),
            *(arg for name in LEFT_OUT for arg in ("--only-binary", name)),
            "-o", str(report), "-",
        ]  # fmt: skip
        stdin = "\n".join([f"-e {spec}", *extra_reqs]) + "\n"
        return subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True), " ".join(cmd[:-3])
    cmd = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
        "--report", str(report), "--find-links", str(find_links),
        # only the placeholder may answer for these (never the sdist / the real CUDA wheel)
        "--only-binary", ",".join(LEFT_OUT),
        "-e", spec, *extra_reqs,
    ]  # fmt: skip
    env["PIP_CONSTRAINT"] = ""  # lift this machine's global torch cap (/etc/xdg/pip): the GPU stacks pin 2.11.0
    return subprocess.run(cmd, env=env, capture_output=True, text=True), " ".join(cmd)


def failure_lines(output: str, keep: int = 25) -> list[str]:
    """The tail of pip's or uv's output that explains a failure (progress and download lines dropped)."""
    noise = ("WARNING: Location", "Collecting ", "  Downloading ", "  Using cached", "  Obtaining ", "Processing ")
    lines = [ln for ln in output.splitlines() if ln.strip() and not ln.startswith(noise) and "━" not in ln]
    return lines[-keep:]


def resolved_versions(report: Path) -> dict[str, str]:
    """{name: version} from pip's JSON report or uv's requirements output."""
    text = report.read_text()
    if text.lstrip().startswith("{"):
        data = json.loads(text)
        pairs = [(item["metadata"]["name"], item["metadata"]["version"]) for item in data.get("install", [])]
    else:
        pins = (line.split("#")[0].strip() for line in text.splitlines())
        pairs = [tuple(pin.split("==", 1)) for pin in pins if "==" in pin]
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pairs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", action="append", choices=sorted(STACKS), help="check only these (default: all)")
    p.add_argument("--project", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--json", type=Path, help="write {stack: {package: version}} here")
    args = p.parse_args(argv)

    names = args.stack or list(STACKS)
    left_out = ", ".join(f"{n}=={v} ({why})" for n, (v, why) in LEFT_OUT.items())
    print(f"left out of the resolution (placeholder of the pinned version): {left_out}", flush=True)
    results: dict[str, dict[str, str]] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gpu-stacks-") as tmp:
        links = Path(tmp) / "placeholders"
        links.mkdir()
        for name, (version, _) in LEFT_OUT.items():
            placeholder_wheel(links, name, version)
        for name in names:
            stack = STACKS[name]
            extras = stack.extras
            start = time.monotonic()
            report = Path(tmp) / f"{name}.json"
            proc, command = resolve(args.project, stack, links, report)
            took = time.monotonic() - start
            if proc.returncode != 0:
                failed.append(name)
                print(f"FAIL {name} (.[{','.join(extras)}]) after {took:.0f} s: {command}", flush=True)
                print("\n".join("    " + ln for ln in failure_lines(proc.stdout + "\n" + proc.stderr)), flush=True)
                continue
            versions = resolved_versions(report)
            results[name] = {k: versions[k] for k in REPORTED if k in versions}
            shown = " ".join(f"{k}={v}" for k, v in results[name].items())
            on = f", Python {stack.python}" if stack.python else ""
            print(f"ok   {name} (.[{','.join(extras)}]{on}) in {took:.0f} s: {shown}", flush=True)
            if stack.why:
                print(f"     note: {stack.why}", flush=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"left_out": LEFT_OUT, "notes": {n: STACKS[n].why for n in results}, "stacks": results}, indent=2
            )
            + "\n"
        )
    if failed:
        print(f"{len(failed)} of {len(names)} GPU stacks do not resolve: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(names)} GPU stacks resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
