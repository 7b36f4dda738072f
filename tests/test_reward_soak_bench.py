"""benchmarks/reward_soak.py at a tiny size: the manager against the faulty RM and judge (each in its own
process) for 2 steps x 32 trajectories, with the faults scaled up so every kind shows; every check of the
full-size soak must pass (one result per trajectory and its own, no task, connection or socket left,
RSS within its bound), and a leak the soak is meant to catch makes it fail."""

from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "reward_soak.py"


@pytest.fixture(scope="module")
def soak(load_script):
    return load_script(SCRIPT)


def test_tiny_soak_passes_its_checks(soak, capsys):
    assert soak.main(["--steps", "2", "--batch", "32", "--fault-scale", "3"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "total: 64 trajectories" in out
    assert "p99_s" in out and "rss_mib" in out


def test_a_leaked_task_fails_the_soak(soak, capsys, monkeypatch):
    """A task left running after a step (what a lost micro-batch send would be) is caught."""
    import asyncio

    real = soak.load_reward_manager

    def leaky_manager(config, tokenizer):
        manager = real(config, tokenizer)
        run_single = manager.run_single

        async def leaking(row):
            asyncio.ensure_future(asyncio.sleep(3600))
            return await run_single(row)

        manager.run_single = leaking
        return manager

    monkeypatch.setattr(soak, "load_reward_manager", leaky_manager)
    assert soak.main(["--steps", "1", "--batch", "4", "--fault-scale", "0"]) == 1
    assert "asyncio tasks alive between steps" in capsys.readouterr().out


def test_error_causes_are_classified(soak):
    assert soak.cause("writing_rm: http://x/classify: HTTP 503: scripted") == "writing_rm:5xx"
    assert soak.cause("judge: vllm answered a non-finite score; writing_rm: x: no answer within 0.5s") == (
        "judge:non-finite+writing_rm:timeout"
    )
    assert soak.cause("sample not scored within reward.rlmr.sample_timeout_s=1") == "sample:timeout"
