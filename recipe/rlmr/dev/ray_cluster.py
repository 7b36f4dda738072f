"""A Ray cluster of several nodes on this machine, started the way a real one is: ``ray start``.

    with local_cluster(nodes=2, cpus_per_node=4, gpus_per_node=1, env=..., worker_env=...) as cluster:
        launch.run(..., ray_address=cluster.address, nnodes=cluster.nodes)

The head is ``ray start --head`` and every other node ``ray start --address=<head>``, each a raylet
with resources of its own (``gpus_per_node`` are fake slots on a CPU machine: Ray's placement counts
them, the CPU backend does the work), all bound to 127.0.0.1. ``env`` is the head's environment and
``worker_env`` the other nodes' (default: ``env``), so a test can start a worker node without
something the head has and check that the job's runtime environment supplies it.

Token authentication is on, as Ray 2.60 has it by default: the cluster's token lies in its folder, and
every process that joins (a node, a driver such as verl's ``main_ppo``) needs ``cluster.driver_env()``.

The cluster gets a root temporary folder of its own: ``ray.init()`` without an address in another
process does not find and join it (Ray looks for a running cluster under its default folder), and on
exit exactly this cluster's processes are stopped (``ray stop`` would stop every Ray on the machine)
and the folder is removed. The nodes share the machine's disk, so each node's log monitor forwards
the same worker logs: a driver sees every worker line twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from recipe.rlmr.dev.servers.base import free_port


@dataclass(frozen=True)
class LocalCluster:
    address: str  # host:port of the head's GCS, for ray_kwargs.ray_init.address
    nodes: int
    temp_dir: Path  # the cluster's own root temporary folder (session logs under session_latest/logs)

    @property
    def token_path(self) -> Path:
        return self.temp_dir / "auth_token"

    def driver_env(self) -> dict[str, str]:
        """What a process joining the cluster adds to its environment: the token to authenticate with."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    def node_ids(self) -> list[str]:
        """The alive nodes' Ray ids, asked from a short-lived driver in a process of its own."""
        code = (
            f"import json, ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
            "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))"
        )
        env = {**os.environ, **self.driver_env()}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
        )
        return json.loads(out.stdout.strip().splitlines()[-1])


def _ray(args: list[str], env: dict[str, str]) -> None:
    command = [str(Path(sys.executable).with_name("ray")), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _processes_of(temp_dir: Path) -> list[psutil.Process]:
    """The processes whose command line names the cluster's folder (GCS, raylets, monitors) and all
    their descendants: workers and agents rename themselves (``ray::WorkerDict``), so only their
    parentage gives them away."""
    roots = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.pid != os.getpid() and any(str(temp_dir) in arg for arg in cmdline):
            roots.append(process)
    mine = {process.pid: process for process in roots}
    for root in roots:
        with contextlib.suppress(psutil.Error):
            mine.update({child.pid: child for child in root.children(recursive=True)})
    mine.pop(os.getpid(), None)
    return list(mine.values())


def stop(temp_dir: Path, grace_s: float = 10.0) -> None:
    """SIGTERM this cluster's processes, then SIGKILL those still alive after ``grace_s``."""
    processes = _processes_of(temp_dir)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=grace_s)


@contextlib.contextmanager
def local_cluster(
    nodes: int = 2,
    cpus_per_node: int = 4,
    gpus_per_node: int = 1,
    env: dict[str, str] | None = None,
    worker_env: dict[str, str] | None = None,
    wait_s: float = 120.0,
) -> Iterator[LocalCluster]:
    if nodes < 1:
        raise ValueError(f"nodes must be at least 1, got {nodes}")
    # short: Ray's unix sockets live under it, and a socket path may not pass 107 characters
    temp_dir = Path(tempfile.mkdtemp(prefix="rlmr-ray-", dir="/tmp"))
    port = free_port()  # `ray start --head` takes a number; the moment between is a race accepted in dev tooling
    address = f"127.0.0.1:{port}"
    cluster = LocalCluster(address, nodes, temp_dir)
    cluster.token_path.write_text(secrets.token_hex(32))
    cluster.token_path.chmod(0o600)
    env = {**(os.environ if env is None else env), **cluster.driver_env()}
    worker_env = {**(env if worker_env is None else worker_env), **cluster.driver_env()}
    for environment in (env, worker_env):
        environment.pop("RAY_ADDRESS", None)
    common = [
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={cpus_per_node}",
        f"--num-gpus={gpus_per_node}",
        "--disable-usage-stats",
    ]
    try:
        _ray(["start", "--head", f"--port={port}", f"--temp-dir={temp_dir}", "--include-dashboard=false", *common], env)
        for _ in range(nodes - 1):
            _ray(["start", f"--address={address}", *common], worker_env)
        deadline = time.monotonic() + wait_s
        while len(cluster.node_ids()) < nodes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the local Ray cluster at {address} has not got {nodes} nodes after {wait_s:.0f} s")
            time.sleep(1.0)
        yield cluster
    finally:
        stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
