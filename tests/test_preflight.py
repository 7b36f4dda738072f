"""The reward endpoints' preflight (``rewards.preflight``, command ``recipe.rlmr.preflight``) against loopback servers:
``rewards.serve_rm`` serving a tiny reward model and the scripted judge (``recipe.rlmr.dev.servers.reward``).

Each misconfiguration fails with a message naming the endpoint (URL and model) and the error; the
last test runs verl's ``main_ppo`` through the CPU launcher with a wrong RM URL and checks that it
stops before any worker started."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

import recipe.rlmr
from recipe.rlmr.dev.servers.reward import FakeJudge, FakeRM
from recipe.rlmr.dry_run import compose_recipe
from recipe.rlmr.preflight import main
from rewards.preflight import PreflightError, preflight

CONFIG_DIR = Path(recipe.rlmr.__file__).parent / "config"


def config_for(rm_url, rm_dir, judge_url=None, *extra, rm_model="tiny-rm"):
    overrides = [
        f"reward.rlmr.writing_rm.url={rm_url}",
        f"reward.rlmr.writing_rm.model={rm_model}",
        f"reward.rlmr.writing_rm.tokenizer={rm_dir}",
        "reward.rlmr.writing_rm.max_retries=1",
        "reward.rlmr.writing_rm.backoff_s=0.01",
        "reward.rlmr.judge.model=judge-model",
        "reward.rlmr.judge.max_retries=1",
        "reward.rlmr.judge.backoff_s=0.01",
        "reward.rlmr.preflight.timeout_s=20",
    ]
    if judge_url:
        overrides.append(f"reward.rlmr.judge.url={judge_url}")
    return compose_recipe(overrides + list(extra))


def failure(config) -> str:
    with pytest.raises(PreflightError) as caught:
        preflight(config, log=None)
    return str(caught.value)


@pytest.fixture
def judge():
    with FakeJudge() as server:
        yield server


def test_both_endpoints_answer(rm_server, rm_dir, judge):
    results = preflight(config_for(rm_server, rm_dir, judge.url), log=None)
    assert [r.status for r in results] == ["ok", "ok"]
    rm, verdict = results
    assert rm.endpoint.startswith(f"writing RM at {rm_server} (model tiny-rm, vllm_classify")
    assert rm.detail.startswith("scored the probe sample")
    assert verdict.endpoint == f"judge at {judge.url} (model judge-model)" and "verdict" in verdict.detail
    assert judge.log.answered["ok"] == 1


def test_wrong_rm_url_names_the_endpoint(rm_dir, judge, closed_port):
    url = f"http://127.0.0.1:{closed_port}"
    message = failure(config_for(url, rm_dir, judge.url))
    assert f"writing RM at {url} (model tiny-rm" in message
    assert "Cannot connect to host" in message
    assert "reward.rlmr.preflight.enable=false" in message  # says how to turn it off
    assert "judge at" not in message  # the judge answered


def test_wrong_model_name_is_the_servers_404(rm_server, rm_dir, judge):
    message = failure(config_for(rm_server, rm_dir, judge.url, rm_model="no-such-rm"))
    assert f"writing RM at {rm_server} (model no-such-rm" in message
    assert "HTTP 404" in message and "The model `no-such-rm` does not exist" in message


def test_rm_pointed_at_a_chat_server(rm_dir, judge):
    """The judge's URL given as the RM's: the chat server has no /classify."""
    message = failure(config_for(judge.url, rm_dir, judge.url))
    assert f"writing RM at {judge.url}" in message and f"{judge.url}/classify: HTTP 404" in message


def test_rm_answering_another_protocols_shape(rm_dir, judge):
    with FakeRM() as rm:
        rm.inject(wrong_shape=10)  # more than the attempts
        message = failure(config_for(rm.url, rm_dir, judge.url))
        assert rm.log.answered["wrong_shape"] == 2  # first attempt and one retry
    assert f"writing RM at {rm.url}" in message and "malformed vllm_classify answer" in message


def test_rm_that_answers_right_passes(rm_dir, judge):
    """The scripted RM without faults: the failing case above fails for its shape, nothing else."""
    with FakeRM() as rm:
        [result, _] = preflight(config_for(rm.url, rm_dir, judge.url), log=None)
    assert result.status == "ok"


def test_unloadable_tokenizer(rm_server, rm_dir, judge, tmp_path):
    missing = tmp_path / "no-tokenizer-here"
    message = failure(config_for(rm_server, rm_dir, judge.url, f"reward.rlmr.writing_rm.tokenizer={missing}"))
    assert f"writing RM at {rm_server}" in message and f"tokenizer '{missing}' does not load" in message


@pytest.mark.parametrize(
    "fault, expected",
    [
        ("status_5xx", "HTTP 503"),
        ("wrong_shape", "unusable judge answer"),
    ],
)
def test_judge_failures_name_the_judge(rm_server, rm_dir, judge, fault, expected):
    judge.inject(**{fault: 10})
    message = failure(config_for(rm_server, rm_dir, judge.url))
    assert f"judge at {judge.url} (model judge-model)" in message and expected in message
    assert "writing RM at" not in message


def test_hanging_judge_is_time_boxed(rm_server, rm_dir, judge):
    judge.inject(hang=10)
    message = failure(config_for(rm_server, rm_dir, judge.url, "reward.rlmr.preflight.timeout_s=1"))
    assert f"judge at {judge.url}" in message
    assert "no usable answer within reward.rlmr.preflight.timeout_s=1 s" in message


def test_judge_pointed_at_the_rm_server(rm_server, rm_dir):
    message = failure(config_for(rm_server, rm_dir, rm_server))
    assert f"judge at {rm_server}" in message and "/v1/chat/completions: HTTP 404" in message


def test_every_failure_is_reported_at_once(rm_dir, closed_port, judge):
    judge.inject(status_5xx=10)
    message = failure(config_for(f"http://127.0.0.1:{closed_port}", rm_dir, judge.url))
    assert "writing RM at" in message and "judge at" in message


def test_the_key_turns_it_off(rm_dir, judge, closed_port):
    config = config_for(f"http://127.0.0.1:{closed_port}", rm_dir, judge.url, "reward.rlmr.preflight.enable=false")
    assert preflight(config, log=None) == []
    assert judge.log.requests == 0


def test_no_judge_and_a_verl_served_rm_are_skipped_with_a_note(judge):
    config = compose_recipe(["reward.reward_model.enable=true"])
    results = preflight(config, log=None)
    assert [r.status for r in results] == ["skipped", "skipped"]
    assert "served by verl" in results[0].endpoint and "not probed" in results[0].detail
    assert "reward.rlmr.judge.url" in results[1].detail


def test_no_writing_rm_at_all_fails():
    config = compose_recipe([])
    assert "reward.rlmr.writing_rm.url" in failure(config)


def test_other_reward_managers_are_not_probed(rm_dir, closed_port):
    config = config_for(f"http://127.0.0.1:{closed_port}", rm_dir, None, "reward.reward_manager.name=naive")
    assert preflight(config, log=None) == []


def test_command_exit_codes(rm_server, rm_dir, judge, closed_port, capsys):
    good = [
        f"reward.rlmr.writing_rm.url={rm_server}",
        "reward.rlmr.writing_rm.model=tiny-rm",
        f"reward.rlmr.writing_rm.tokenizer={rm_dir}",
        f"reward.rlmr.judge.url={judge.url}",
        "reward.rlmr.judge.model=judge-model",
    ]
    assert main(good) == 0
    out = capsys.readouterr().out
    assert "PREFLIGHT OK" in out and f"OK      writing RM at {rm_server}" in out
    bad_url = f"http://127.0.0.1:{closed_port}"
    assert main([*good, f"reward.rlmr.writing_rm.url={bad_url}", "reward.rlmr.writing_rm.backoff_s=0.01"]) == 1
    err = capsys.readouterr().err
    assert "PREFLIGHT FAILED: PreflightError: reward endpoint preflight failed" in err and bad_url in err


def test_command_as_a_module_and_a_launch_script_dry_run_with_preflight(rm_dir, closed_port):
    """``python -m recipe.rlmr.preflight`` and ``PREFLIGHT=1 DRY_RUN=1 bash run_*.sh`` exit 1 naming the URL; a plain
    dry run contacts nothing and passes."""
    import os

    bad_url = f"http://127.0.0.1:{closed_port}"
    overrides = [
        f"reward.rlmr.writing_rm.url={bad_url}",
        "reward.rlmr.writing_rm.model=tiny-rm",
        f"reward.rlmr.writing_rm.tokenizer={rm_dir}",
        "reward.rlmr.writing_rm.max_retries=0",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "recipe.rlmr.preflight", *overrides], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert f"writing RM at {bad_url} (model tiny-rm" in result.stderr, result.stderr[-2000:]
    old = subprocess.run([sys.executable, "-m", "rewards.preflight"], capture_output=True, text=True, timeout=300)
    assert old.returncode == 1 and "python -m recipe.rlmr.preflight" in old.stderr, old.stderr  # the old spelling

    script = CONFIG_DIR.parent / "scripts" / "run_qwen3_8b.sh"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RM_", "JUDGE_", "PREFLIGHT"))}
    env.update(DRY_RUN="1", PYTHON=sys.executable, RM_URL=bad_url, RM_MODEL="tiny-rm", RM_TOKENIZER=str(rm_dir))
    for preflight_flag, expected_rc in (("1", 1), ("0", 0)):
        result = subprocess.run(
            ["bash", str(script), "reward.rlmr.writing_rm.max_retries=0"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**env, "PREFLIGHT": preflight_flag},
        )
        assert result.returncode == expected_rc, (preflight_flag, result.stderr[-2000:])
        assert (f"writing RM at {bad_url} (model tiny-rm" in result.stderr) == (preflight_flag == "1")


@pytest.mark.slow
def test_verl_main_ppo_through_the_cpu_launcher_stops_before_any_worker(tmp_path, closed_port):
    """The CPU launcher (behind ``make demo``) runs verl's ``main_ppo``; a wrong RM URL stops it when the RLMR
    trainer is built, before any worker (``WorkerDict``) starts or any weight loads."""
    from recipe.rlmr.dev import launch

    bad_url = f"http://127.0.0.1:{closed_port}"
    started = time.monotonic()
    result = launch.run(tmp_path, steps=1, entry="verl", extra=[f"reward.rlmr.writing_rm.url={bad_url}"], timeout_s=420)
    seconds = time.monotonic() - started
    log = (tmp_path / "trainer.log").read_text(errors="replace")
    assert result.returncode != 0
    assert "reward endpoint preflight failed" in log and f"writing RM at {bad_url} (model tiny-rm" in log, log[-4000:]
    assert "(WorkerDict" not in log and "Training Progress" not in log
    print(f"main_ppo through the CPU launcher stopped by the preflight after {seconds:.1f} s (assets, RM, Ray)")
