"""Shared fixtures: a tiny reward model built on the spot, `rewards.serve_rm` serving it, and a
private Ray + TransferQueue."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import requests

from recipe.rlmr.tiny_assets import build_reward_model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def rm_dir(tmp_path_factory):
    return build_reward_model(tmp_path_factory.mktemp("tiny-rm"))


@pytest.fixture(scope="session")
def rm_server(rm_dir):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "rewards.serve_rm", "--model", str(rm_dir), "--port", str(port), "--served-model-name", "tiny-rm", "--threads", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError(f"serve_rm exited: {process.stderr.read()}")
            try:
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)




@pytest.fixture
def closed_port():
    """A loopback port nothing listens on."""
    return free_port()


@pytest.fixture(scope="session")
def transfer_queue():
    """A private local Ray (own namespace and temp dir) with a one-unit TransferQueue."""
    temp_dir = tempfile.mkdtemp(prefix="rlmr-ray-", dir="/tmp")  # short: Ray's socket paths are length-limited
    os.environ.pop("RAY_ADDRESS", None)
    import ray
    import transfer_queue as tq
    from omegaconf import OmegaConf

    ray.init(
        address="local",
        namespace=f"rlmr-test-{uuid.uuid4().hex[:8]}",
        num_cpus=4,  # logical: the controller and the storage unit each ask for one
        include_dashboard=False,
        _temp_dir=temp_dir,
        log_to_driver=False,
    )
    try:
        tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
        yield
    finally:
        try:
            tq.close()
        finally:
            ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)
