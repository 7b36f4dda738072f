"""The pins the suite runs on are the GPU stacks' pins, and the GPU-stack check's own logic.

`make gpu-stacks` (CI) resolves every stack of docs/install.md against the registry; these fast tests
check, from the installed verl's metadata alone, what that check and docs/install.md rely on.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import zipfile
from importlib.metadata import requires, version
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def _load_check():
    spec = importlib.util.spec_from_file_location("check_gpu_stacks", REPO / ".ci" / "check_gpu_stacks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


check = _load_check()


def verl_pin(extra: str, name: str) -> str:
    """The exact version verl's ``extra`` pins for ``name``."""
    for line in requires("verl"):
        req = Requirement(line)
        if req.name == name and req.marker is not None and req.marker.evaluate({"extra": extra}):
            (spec,) = req.specifier
            assert spec.operator == "==", f"verl[{extra}] asks {req}, not an exact pin"
            return spec.version
    raise AssertionError(f"verl[{extra}] does not require {name}")


def constraint_pins() -> dict[str, str]:
    text = (REPO / "requirements" / "constraints-cpu.txt").read_text()
    pins = (line.split("#")[0].strip() for line in text.splitlines())
    return dict(pin.split("==") for pin in pins if pin)


def test_cpu_constraints_pin_what_the_gpu_extras_pin():
    pins = constraint_pins()
    assert pins["transformers"] == verl_pin("vllm", "transformers") == verl_pin("sglang", "transformers")
    assert pins["trl"] == verl_pin("fsdp", "trl") == verl_pin("megatron", "trl")
    assert pins["torch"] == "2.13.0"  # the local CPU build; the GPU stacks' 2.11.0 has no CPU wheel here


def test_the_suite_runs_on_those_versions():
    pins = constraint_pins()
    for name in ("transformers", "trl"):
        assert version(name) == pins[name], f"installed {name} {version(name)}, constraints say {pins[name]}"
    assert version("torch").split("+")[0] == pins["torch"]


def test_our_trl_pin_is_the_training_extras_pin():
    setup_py = (REPO / "setup.py").read_text()
    (ours,) = re.findall(r'"trl==([^"]+)"', setup_py)
    assert ours == verl_pin("fsdp", "trl"), "any other TRL pin makes .[vllm,fsdp] and .[megatron] unresolvable"
    # and nothing of ours pins what only the GPU extras may pin
    assert not re.search(r'"(transformers|vllm|sglang)[=<>!~]', setup_py)


def test_placeholder_wheel_is_a_metadata_only_wheel_of_the_pinned_version(tmp_path):
    path = check.placeholder_wheel(tmp_path, "flash-attn", "2.8.3")
    assert path.name == "flash_attn-2.8.3-py3-none-any.whl"
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        metadata = zf.read("flash_attn-2.8.3.dist-info/METADATA").decode()
    assert names == {f"flash_attn-2.8.3.dist-info/{n}" for n in ("METADATA", "WHEEL", "RECORD")}
    assert "Name: flash-attn\n" in metadata and "Version: 2.8.3\n" in metadata and "Requires-Dist" not in metadata


def test_left_out_builds_are_the_versions_verl_pins():
    assert check.LEFT_OUT["flash-attn"][0] == verl_pin("flash-attn-cu130torch211", "flash-attn")
    assert check.LEFT_OUT["cupy-cuda13x"][0] == verl_pin("cupy-cu130", "cupy-cuda13x")


def test_megatron_requirements_drop_only_what_cannot_come_from_pypi():
    reqs = {Requirement(r).name: r for r in check.verl_extra_requirements("megatron", ("megatron-bridge", "apex"))}
    assert "megatron-bridge" not in reqs and "apex" not in reqs
    assert "flash-attn" not in reqs and "cupy-cuda13x" not in reqs and "verl" not in reqs
    assert reqs["trl"] == "trl==0.27.0" and reqs["torch"] == "torch==2.11.0"
    assert {"megatron-core", "transformer-engine", "nvidia-modelopt"} <= set(reqs)


def test_resolved_versions_reads_pip_reports_and_uv_output(tmp_path):
    pip_report = tmp_path / "pip.json"
    pip_report.write_text(
        '{"install": [{"metadata": {"name": "Liger_Kernel", "version": "0.8.5"}},'
        ' {"metadata": {"name": "torch", "version": "2.11.0"}}]}'
    )
    assert check.resolved_versions(pip_report) == {"liger-kernel": "0.8.5", "torch": "2.11.0"}
    uv_out = tmp_path / "uv.txt"
    uv_out.write_text("-e file:///x\ntorch==2.11.0\n    # via verl\nsglang==0.5.12\n")
    assert check.resolved_versions(uv_out) == {"torch": "2.11.0", "sglang": "0.5.12"}


def test_every_stack_is_in_the_install_docs():
    install_md = (REPO / "docs" / "install.md").read_text()
    for name, stack in check.STACKS.items():
        engine, backend = name.split("+")
        row = {"vllm": "vLLM", "sglang": "SGLang"}[engine] + " x " + {"fsdp": "FSDP", "megatron": "Megatron"}[backend]
        assert f"| {row}" in install_md, f"docs/install.md has no row for {name}"
        assert f"'.[{','.join(stack.extras)}]'" in install_md or stack.verl_extra, name


def test_a_stack_that_does_not_resolve_fails_the_check_and_shows_the_command(monkeypatch, capsys):
    """A failed resolution is a red check (exit 1) whose log names the stack, pip's reason and the
    command that reproduces it; the other stacks are still checked."""
    import subprocess

    asked = []

    def failing_resolve(project, stack, find_links, report):
        asked.append(stack)
        proc = subprocess.CompletedProcess([], 1, stdout="", stderr="ERROR: ResolutionImpossible: torch==9.9\n")
        return proc, "pip install --dry-run -e .[gpu-vllm]"

    monkeypatch.setattr(check, "resolve", failing_resolve)
    names = list(check.STACKS)[:2]
    assert check.main([arg for name in names for arg in ("--stack", name)]) == 1
    out = capsys.readouterr()
    assert len(asked) == 2
    assert f"FAIL {names[0]}" in out.out and "pip install --dry-run -e .[gpu-vllm]" in out.out
    assert "ResolutionImpossible: torch==9.9" in out.out
    assert f"2 of 2 GPU stacks do not resolve: {', '.join(names)}" in out.err


def test_megatron_stacks_resolve_for_python_3_12_with_the_bridges_core(monkeypatch, tmp_path):
    """Megatron-Bridge 0.5.x needs Python 3.12 and builds against megatron-core 0.18.2: the check asks uv
    for exactly that (verl's unpinned megatron-core replaced, not doubled), and install.md says so."""
    import subprocess

    seen = {}

    def fake_run(cmd, env=None, input=None, capture_output=None, text=None):
        seen["cmd"], seen["stdin"] = cmd, input
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    monkeypatch.setattr(check.subprocess, "run", fake_run)
    for name in ("vllm+megatron", "sglang+megatron"):
        check.resolve(REPO, check.STACKS[name], tmp_path, tmp_path / f"{name}.txt")
        cmd = seen["cmd"]
        assert cmd[1:3] == ["pip", "compile"], name
        assert cmd[cmd.index("--python-version") + 1] == "3.12"
        reqs = [Requirement(line) for line in seen["stdin"].splitlines() if not line.startswith("-e ")]
        cores = [str(req) for req in reqs if req.name == "megatron-core"]
        assert cores == ["megatron-core==0.18.2"], cores
    check.resolve(REPO, check.STACKS["vllm+fsdp"], tmp_path, tmp_path / "fsdp.json")
    assert seen["cmd"][1:4] == ["-m", "pip", "install"]  # the other stacks: the running interpreter's pip
    install_md = (REPO / "docs" / "install.md").read_text()
    assert check.MEGATRON_CORE in install_md and f"Python {check.MEGATRON_PYTHON}" in install_md
