"""Shared fixtures: a tiny reward model built on the spot, `rewards.serve_rm` serving it, and a
private Ray + TransferQueue."""

import importlib.util
import os
import shutil
import sys
import tempfile
import uuid

import pytest

from recipe.rlmr.dev.servers.base import free_port
from recipe.rlmr.dev.servers.base import serve_in_subprocess as serve_rm
from recipe.rlmr.dev.tiny_assets import build_reward_model


@pytest.fixture(scope="session")
def load_script():
    """Import a script that is no package module (``benchmarks/*.py``) from its path: ``load_script(path)``.
    It stays in ``sys.modules`` under its file's stem while the session runs (dataclasses look their
    module up there)."""
    loaded = []

    def load(path):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        loaded.append(spec.name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


@pytest.fixture(scope="session")
def rm_dir(tmp_path_factory):
    return build_reward_model(tmp_path_factory.mktemp("tiny-rm"))


@pytest.fixture(scope="session")
def rm_server(rm_dir):
    with serve_rm(rm_dir, served_model_name="tiny-rm") as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def rm_server_by_path(rm_dir):
    """serve_rm as verl's managed RM looks behind its router: served under the model path,
    addressed as "ip:port" with no scheme (what verl hands to reward managers)."""
    with serve_rm(rm_dir) as port:
        yield f"127.0.0.1:{port}"


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
