"""Starting the loopback servers: each binds port 0 itself and reports the port it got, so no
port is probed first and bound later (another process could take it in between)."""

import subprocess
import sys

import pytest
import requests

from recipe.rlmr.dev.servers.base import serve_in_subprocess
from recipe.rlmr.dev.servers.reward import READY_LINE as FAKE_READY_LINE


def test_serve_rm_yields_the_port_it_listens_on(rm_server):
    port = int(rm_server.rsplit(":", 1)[1])
    assert port > 0
    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).text == "ok"


def test_serve_rm_that_dies_before_serving_is_reported_with_its_output(tmp_path):
    with pytest.raises(RuntimeError, match=r"(?s)rewards.serve_rm exited with 1 before serving: .*no-model-here"):
        with serve_in_subprocess(tmp_path / "no-model-here"):
            pass


def test_fake_server_process_announces_its_bound_port():
    process = subprocess.Popen(
        [sys.executable, "-m", "recipe.rlmr.dev.servers.reward", "rm"], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    try:
        line = process.stdout.readline()  # blocks until the server listens (or exits: empty line)
        assert line.startswith(FAKE_READY_LINE), line
        url = line.removeprefix(FAKE_READY_LINE).strip()
        assert requests.get(f"{url}/health", timeout=5).text == "ok"
        body = requests.post(f"{url}/classify", json={"input": ["abcd"]}, timeout=5).json()
        assert body["data"][0]["probs"] == [0.04]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_rm_output_goes_to_the_log_file_when_given(tmp_path):
    log = tmp_path / "serve_rm.log"
    with pytest.raises(RuntimeError, match=f"exited with 1 before serving: see {log}"):
        with serve_in_subprocess(tmp_path / "no-model-here", log_path=log):
            pass
    assert "no-model-here" in log.read_text() and "Traceback" in log.read_text()


def test_announced_server_runs_a_fake_server_process_on_the_port_it_announced():
    from recipe.rlmr.dev.servers.base import announced_server

    command = [sys.executable, "-m", "recipe.rlmr.dev.servers.reward", "judge"]
    with announced_server(command, FAKE_READY_LINE) as port:
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).text == "ok"
    with pytest.raises(requests.ConnectionError):  # stopped on exit
        requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
