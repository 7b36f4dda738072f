"""``bash benchmarks/gpu_check.sh`` (benchmarks/gpu_check.py) without a GPU: the plan's commands are ones
the tools accept and the experiment stage's verl overrides compose and validate; the figures come out
of canned output in the shape each tool prints or writes; a stage past its limit is a timeout (its
whole process group killed), a failing stage does not stop the next, and the summary says so."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
MACHINE = {"card": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "cuda": "13.0", "gpus": 1}

HF_ROLLOUT_OUT = """\
conversion: 21.3 s (new)
load + greedy chat reply: 3.2 s -> 'The capital of France is Paris.'
rollout server start (cuda:0, torch.bfloat16): 1.1 s
sampling 16 prompts x 96 tokens: 2.4 s (640 tokens/s, 1 generate call(s), 16 rows at most)
"""
ADVANTAGE_OUT = """\
batch 128 prompts x 8 samples, responses padded to 14336 tokens, 16 torch threads, tensors on cuda, median of 21 \
interleaved rounds
  verl grpo                  43.60 ms
  verl grpo_vectorized        1.22 ms
  rlmr                        1.13 ms
  ratio rlmr / verl grpo            0.026  (target <= 1.25)
  ratio rlmr / verl grpo_vectorized 0.926
"""
# verl's console logger, as the run's trainer.log holds it (Ray prefixes the TaskRunner's lines)
TRAINER_LOG = """\
(TaskRunnerV1 pid=812) Training Progress:   0%|          | 0/3
(TaskRunnerV1 pid=812) step:1 - rlmr/violation_rate:0.5 - rlmr/delta_mean:1.9 - rlmr/adv_violators_mean:-1.6 - \
training/rollout_corr/log_ppl_abs_diff:2e-07 - timing_s/gen:9.0 - timing_s/update_actor:3.0 - timing_s/step:20.0
(TaskRunnerV1 pid=812) step:2 - rlmr/violation_rate:0.25 - rlmr/delta_mean:2.1 - rlmr/adv_violators_mean:-1.8 - \
training/rollout_corr/log_ppl_abs_diff:1e-07 - timing_s/gen:4.0 - timing_s/update_actor:1.0 - timing_s/step:6.0
(TaskRunnerV1 pid=812) step:3 - rlmr/violation_rate:0.0 - rlmr/delta_mean:nan - rlmr/adv_violators_mean:nan - \
training/rollout_corr/log_ppl_abs_diff:1e-07 - timing_s/gen:3.0 - timing_s/update_actor:1.2 - timing_s/step:5.0
"""
# rewards.train_rm's OUTPUT/rm_training.json (a 2-step CPU run, trimmed to the parts read)
RM_TRAINING_JSON = {
    "base_model": "/w/train_rm/base",
    "max_input_tokens": 256,
    "trl_version": "0.27.0",
    "settings": {"max_steps": 2, "batch_size": 8},
    "data": {"train": {"read": 32, "kept": 32}},
    "train": {"global_step": 2, "train_loss": 0.7081, "seconds": 0.41, "pairs_per_second": 137.7},
    "report": None,
}


@pytest.fixture(scope="module")
def gc(load_script):
    return load_script(SCRIPT)


def _flag_names(source: Path) -> set[str]:
    """The ``--options`` a script's argparse declares, read from its source without running it."""
    flags = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            flags |= {a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")}
    return flags


def _module_file(module: str) -> Path:
    return Path(importlib.util.find_spec(module).origin)


def test_plan_has_the_four_stages_inside_ten_minutes(gc, tmp_path):
    plan = gc.build_plan(tmp_path, python="py")
    assert [s.name for s in plan] == ["hf_rollout", "experiment", "train_rm", "advantage"]
    assert sum(s.timeout_s for s in plan) <= 570  # the whole check, every stage hanging, stays inside 10 minutes
    assert all(command[0] == "py" for s in plan for command in s.commands)
    hf, experiment, train_rm, advantage = plan
    assert hf.commands[0][hf.commands[0].index("--device") + 1] == "cuda:0"
    assert experiment.commands[0][experiment.commands[0].index("--device") + 1] == "cuda"
    assert advantage.commands[0][advantage.commands[0].index("--device") + 1] == "cuda"
    # the hf stage converts SmolLM2 where the experiment looks for it, so the experiment reuses it
    assert hf.commands[0][hf.commands[0].index("--workdir") + 1] == str(tmp_path / "experiment")
    assert experiment.reads == str(tmp_path / "experiment" / "runs" / "rlmr_seed0" / "trainer.log")
    assert train_rm.reads == str(tmp_path / "train_rm" / "rm" / "rm_training.json")
    assert [s.name for s in gc.build_plan(tmp_path, stages=["advantage"], timeouts={"advantage": 9})] == ["advantage"]
    assert gc.build_plan(tmp_path, stages=["advantage"], timeouts={"advantage": 9})[0].timeout_s == 9
    with pytest.raises(ValueError, match="unknown stage"):
        gc.build_plan(tmp_path, stages=["vllm"])
    with pytest.raises(SystemExit):
        gc.parse_args(["--timeout", "experiment"])  # not STAGE=SECONDS


def test_every_option_in_the_plan_is_one_its_tool_declares(gc, tmp_path):
    from recipe.rlmr.experiment.cli import parse_args as experiment_args
    from rewards.rm_training.train import build_parser

    for stage in gc.build_plan(tmp_path, python="py"):
        for command in stage.commands:
            if command[1] == "-m" and command[2] == "recipe.rlmr.experiment":
                experiment_args(command[3:])  # exits on an unknown option or a bad choice
                continue
            if command[1] == "-m" and command[2] == "rewards.train_rm":
                build_parser().parse_args(command[3:])
                continue
            source = _module_file(command[2]) if command[1] == "-m" else REPO / command[1]
            assert source.is_file(), command
            unknown = {arg for arg in command if arg.startswith("--")} - _flag_names(source)
            assert not unknown, f"{source.name} declares no {unknown}"


def test_experiment_stage_composes_on_verls_cuda_platform(gc, tmp_path):
    """The run the experiment stage launches, rebuilt as its runner does (recipe.rlmr.experiment.runner), composed
    and validated against the pinned verl: trainer.device=cuda, one real GPU, FSDP2, the hf rollout, no fake slot."""
    from recipe.rlmr import dry_run
    from recipe.rlmr.dev import launch
    from recipe.rlmr.experiment.cli import parse_args as experiment_args
    from recipe.rlmr.experiment.policies import POLICIES
    from recipe.rlmr.experiment.runner import Plan

    stage = next(s for s in gc.build_plan(tmp_path) if s.name == "experiment")
    args = experiment_args(stage.commands[0][3:])
    policy = POLICIES[args.policy]
    run = Plan(
        Path(args.workdir), policy, args.arms, args.seeds, args.steps, args.device, tmp_path / "smollm2", args.overrides
    )
    assets = launch.TinyAssets(tmp_path / "smollm2", tmp_path / "rm", tmp_path / "data")
    machine = launch.cpu_overrides(
        assets, "http://127.0.0.1:1", tmp_path, args.steps, prompts_per_step=policy.prompts_per_step,
        samples_per_prompt=policy.samples_per_prompt, response_length=policy.response_length, device=args.device,
        num_gpus=1, lr=policy.lr, reward_model="length",
    )  # fmt: skip
    arm, seed = args.arms[0], args.seeds[0]
    overrides = [o for o in machine + run.arm_overrides(arm, seed) if not o.startswith("hydra.")]
    config = dry_run.check(overrides)
    assert config.trainer.device == "cuda" and config.trainer.n_gpus_per_node == 1
    assert config.actor_rollout_ref.actor.strategy == "fsdp2"
    assert config.actor_rollout_ref.rollout.name == "hf"
    assert config.algorithm.rlmr.mode == "rlmr" and config.trainer.total_training_steps == gc.EXPERIMENT_STEPS
    assert not any(o.startswith("+ray_kwargs.ray_init.num_gpus") for o in overrides)  # Ray counts the real GPU
    assert stage.reads == str(run.run_dir(arm, seed) / "trainer.log")


def test_stage_environment_uses_verls_cuda_platform_and_names_the_plugin_when_not_installed(gc):
    base = {"VERL_PLATFORM": "cpu", "PYTHONPATH": "/tmp/site", "RAY_ADDRESS": "x:1"}
    env = gc.stage_env(base, Path("/repo"), plugin_installed=False)
    assert "VERL_PLATFORM" not in env and "RAY_ADDRESS" not in env  # verl's own CUDA platform, a private Ray
    assert env["PYTHONPATH"] == os.pathsep.join(["/tmp/site", "/repo"])
    assert env["VERL_USE_EXTERNAL_MODULES"] == "recipe.rlmr.plugin"
    assert "VERL_USE_EXTERNAL_MODULES" not in gc.stage_env({}, Path("/repo"), plugin_installed=True)
    changes = gc.env_changes(base, env)
    assert "-VERL_PLATFORM" in changes and "VERL_USE_EXTERNAL_MODULES=recipe.rlmr.plugin" in changes


def test_figures_from_what_the_tools_print(gc):
    hf = gc.parse_hf_rollout(HF_ROLLOUT_OUT)
    assert hf == {
        "conversion_s": 21.3, "chat_s": 3.2, "reply": "'The capital of France is Paris.'", "device": "cuda:0",
        "dtype": "torch.bfloat16", "server_start_s": 1.1, "prompts": 16, "tokens": 96, "sampling_s": 2.4,
        "tokens_per_s": 640.0,
    }  # fmt: skip
    adv = gc.parse_advantage(ADVANTAGE_OUT)
    assert adv == {
        "device": "cuda", "grpo_ms": 43.6, "grpo_vectorized_ms": 1.22, "rlmr_ms": 1.13, "ratio_rlmr_grpo": 0.026,
        "ratio_rlmr_grpo_vectorized": 0.926,
    }  # fmt: skip
    exp = gc.parse_experiment(TRAINER_LOG)
    assert exp["steps"] == 3 and exp["step1_s"] == 20.0
    later = (exp["step_s"], exp["gen_s"], exp["update_s"])
    assert later == pytest.approx((5.5, 3.5, 1.1))  # steps 2.. (step 1 carries the warm-up)
    # violation rate over all steps; delta and violators' advantage skip the step without a mixed group
    assert (exp["violation_rate"], exp["delta_mean"], exp["adv_violators_mean"]) == pytest.approx((0.25, 2.0, -1.7))
    assert exp["rollout_log_ppl_abs_diff"] == pytest.approx(1.333e-7, 1e-3)
    assert exp["per_step"]["2"]["timing_s/update_actor"] == 1.0
    assert gc.parse_experiment("no step lines\n") == {}
    rm = gc.parse_train_rm(json.dumps(RM_TRAINING_JSON))
    assert rm == {"seconds": 0.41, "loss": 0.7081, "steps": 2, "pairs_per_s": 137.7}
    # every documented figure is produced
    for name, figures in (("hf_rollout", hf), ("experiment", exp), ("train_rm", rm), ("advantage", adv)):
        assert {key for key, _ in gc.FIGURES[name]} <= figures.keys(), name
        assert gc.judge(name, 0, False, figures) == ("pass", None)


def test_judging_a_stage(gc):
    hf = gc.parse_hf_rollout(HF_ROLLOUT_OUT)
    assert gc.judge("hf_rollout", None, True, hf) == ("timeout", "killed at its time limit")  # never a pass
    assert gc.judge("hf_rollout", 1, False, hf) == ("fail", "exit status 1")
    on_cpu = gc.parse_hf_rollout(HF_ROLLOUT_OUT.replace("cuda:0", "cpu"))
    assert gc.judge("hf_rollout", 0, False, on_cpu)[0] == "fail"  # exit 0 on the CPU is not the GPU check
    short = gc.parse_experiment(TRAINER_LOG.rsplit("(TaskRunnerV1", 1)[0])
    assert gc.judge("experiment", 0, False, short) == ("fail", "logged 2 of 3 steps")
    assert gc.judge("advantage", 0, False, gc.parse_advantage(ADVANTAGE_OUT.replace("on cuda", "on cpu")))[0] == "fail"
    assert gc.judge("train_rm", 0, False, {})[0] == "fail"


def _stage(gc, name, code, timeout_s=30.0, **kw):
    return gc.Stage(name, f"canned {name}", [[sys.executable, "-c", textwrap.dedent(code)]], timeout_s, **kw)


def test_a_hanging_stage_is_a_timeout_and_its_process_group_is_killed(gc, tmp_path):
    pid_file = tmp_path / "child.pid"
    code = f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        print({HF_ROLLOUT_OUT!r}, flush=True)  # figures printed before the hang are still not a pass
        time.sleep(60)
    """
    started = time.monotonic()
    result = gc.run_stage(_stage(gc, "hf_rollout", code, timeout_s=3), dict(os.environ), tmp_path / "hf.log")
    assert time.monotonic() - started < 15
    assert result.status == "timeout" and result.returncode is None
    assert result.figures["tokens_per_s"] == 640.0  # what it managed is kept
    grandchild = Path(f"/proc/{pid_file.read_text()}/status")

    def gone() -> bool:  # exited, or a zombie left for init to reap
        try:
            return "State:\tZ" in grandchild.read_text()
        except FileNotFoundError:
            return True

    deadline = time.monotonic() + 3  # SIGKILL was sent; give the kernel a moment
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(), "the stage's grandchild survived the timeout"


def test_run_checks_goes_on_after_a_failure_and_writes_the_summary(gc, tmp_path):
    rm_json = tmp_path / "rm_training.json"
    plan = [
        _stage(gc, "hf_rollout", f"print({HF_ROLLOUT_OUT!r})"),
        _stage(gc, "experiment", "import sys; print('Traceback: boom'); sys.exit(3)", reads=str(tmp_path / "none")),
        _stage(gc, "train_rm", f"open({str(rm_json)!r}, 'w').write({json.dumps(RM_TRAINING_JSON)!r})",
               reads=str(rm_json)),
        _stage(gc, "advantage", "import time; time.sleep(30)", timeout_s=2),
    ]  # fmt: skip
    out = tmp_path / "out"
    summary = gc.run_checks(plan, out, dict(os.environ), MACHINE, "bash benchmarks/gpu_check.sh", cwd=tmp_path)
    statuses = {s["name"]: s["status"] for s in summary["stages"]}
    assert statuses == {"hf_rollout": "pass", "experiment": "fail", "train_rm": "pass", "advantage": "timeout"}
    assert summary["ok"] is False and summary["card"] == "NVIDIA H100 80GB HBM3"
    failed = next(s for s in summary["stages"] if s["name"] == "experiment")
    assert failed["returncode"] == 3 and "Traceback: boom" in failed["reason"]
    written = json.loads((out / "summary.json").read_text())
    assert written["stages"][2]["figures"]["loss"] == 0.7081 and (out / "train_rm.log").is_file()
    markdown = (out / "summary.md").read_text()
    assert "NVIDIA H100 80GB HBM3" in markdown and "| advantage | timeout |" in markdown
    assert "tokens_per_s 640" in markdown and "loss 0.7081" in markdown
    # a machine without a GPU: every stage skipped, nothing run, not ok
    plain = gc.run_checks(plan[:1], tmp_path / "cpu", {}, {"card": None, "torch": "2.13.0"}, "x", cwd=tmp_path)
    assert [s["status"] for s in plain["stages"]] == ["skip"] and plain["ok"] is False


def test_a_missing_package_fails_the_stage_by_name(gc, tmp_path):
    stage = replace(_stage(gc, "advantage", "print('never')"), requires=["surely_not_installed_pkg"])
    result = gc.run_stage(stage, dict(os.environ), tmp_path / "a.log")
    assert result.status == "fail" and "surely_not_installed_pkg" in result.reason
    assert "never" not in (tmp_path / "a.log").read_text()


def test_dry_run_prints_the_plan_and_runs_nothing(gc, tmp_path, capsys):
    assert gc.main(["--dry-run", "--workdir", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "recipe.rlmr.experiment" in printed and "--device cuda" in printed and "limit 300 s" in printed
    assert "all limits together: 570 s" in printed
    assert not (tmp_path / "out").exists()
