"""The opt-in CPU backend, piece by piece: registration (and its absence) and the two patches.

The ``hf`` rollout a CPU run uses is tested in test_hf_rollout.py; the whole backend inside verl's
trainer is exercised by test_cpu_e2e.py.
"""

import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recipe.rlmr.cpu.patches import collapse_backend


def run_python(code: str, **env) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    environment.update(env)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


# ---- registration ----------------------------------------------------------------------------

_REGISTRATION_PROBE = """
    import torch.distributed
    import verl
    from verl.plugin.platform import PlatformRegistry
    from verl.workers.engine.base import EngineRegistry
    import verl.workers.engine.fsdp.transformer_impl as fsdp
    from verl.workers.rollout.base import _ROLLOUT_REGISTRY
    from verl.workers.rollout.replica import RolloutReplicaRegistry
    print("platform", PlatformRegistry.get("cpu") is not None)
    print("engine", "cpu" in EngineRegistry._engines["language_model"]["fsdp2"])
    print("replica", "hf" in RolloutReplicaRegistry._registry)
    print("adapter", ("hf", "async") in _ROLLOUT_REGISTRY)
    print("init_patched", getattr(torch.distributed.init_process_group, "_rlmr_collapses_backends", False))
    print("offload_patched", getattr(fsdp.CPUOffloadPolicy, "_rlmr_unpinned", False))
"""


def test_without_verl_platform_cpu_nothing_is_registered_or_patched():
    out = run_python(_REGISTRATION_PROBE)
    for line in (
        "platform False",
        "engine False",
        "replica True",  # the hf rollout is not part of the backend: registered on every platform
        "adapter True",
        "init_patched False",
        "offload_patched False",
    ):
        assert line in out


def test_verl_platform_cpu_registers_everything_verl_needs():
    out = run_python(
        _REGISTRATION_PROBE
        + """
    from verl.utils.device import get_device_name, get_torch_device, get_nccl_backend, get_device_id
    from verl.workers.rollout.replica import get_rollout_replica_class
    from verl.workers.rollout.base import get_rollout_class
    print("device", get_device_name(), get_nccl_backend(), get_device_id())
    device = get_torch_device()
    free, total = device.mem_get_info()
    print("memory", 0 < free <= total, device.memory_reserved() > 0)
    state = device.get_rng_state(); a = torch.rand(3); device.set_rng_state(state)
    print("rng", torch.equal(a, torch.rand(3)))
    print("classes", get_rollout_replica_class("hf").__name__, get_rollout_class("hf", "async").__name__)
    print("unpinned", fsdp.CPUOffloadPolicy(pin_memory=True).pin_memory)
    """,
        VERL_PLATFORM="cpu",
    )
    for line in (
        "platform True",
        "engine True",
        "replica True",
        "adapter True",
        "init_patched True",
        "offload_patched True",
        "device cpu gloo cpu",
        "memory True True",
        "rng True",
        "classes HFReplica HFServerAdapter",
        "unpinned False",
    ):
        assert line in out, out


def test_verls_own_process_group_init_works_on_cpu():
    """verl asks for backend "cpu:gloo,cpu:gloo" here; torch alone rejects it.

    MASTER_PORT=0: rank 0's store binds a port the OS hands out, so parallel runs never collide."""
    out = run_python(
        """
    import os
    os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="0")
    import torch, verl
    from verl.utils.distributed import initialize_global_process_group_ray
    initialize_global_process_group_ray()
    t = torch.ones(2); torch.distributed.all_reduce(t)
    print("backend", torch.distributed.get_backend(), t.tolist())
    store = torch.distributed.distributed_c10d._get_default_store()
    while not hasattr(store, "port"):
        store = store.underlying_store
    print("store port", store.port)
    """,
        VERL_PLATFORM="cpu",
    )
    assert "backend gloo [1.0, 1.0]" in out
    assert int(out.split("store port", 1)[1].split()[0]) > 0  # a real port, bound by the OS


def test_the_cpu_platform_is_never_auto_detected():
    from recipe.rlmr.cpu.platform import PlatformCPU

    assert PlatformCPU().is_platform_available(use_smi_check=True) is False


# ---- the backend-string patch ----------------------------------------------------------------


@pytest.mark.parametrize(
    "given_backend, expected",
    [
        ("cpu:gloo,cpu:gloo", "gloo"),
        ("cpu:gloo,cuda:nccl", "cpu:gloo,cuda:nccl"),  # a GPU run's string passes through
        ("nccl", "nccl"),
        ("cpu:gloo,cpu:mpi", "cpu:gloo,cpu:mpi"),  # conflicting: left for torch to reject
        (None, None),
    ],
)
def test_collapse_backend(given_backend, expected):
    assert collapse_backend(given_backend) == expected


@given(st.lists(st.sampled_from(["cpu:gloo", "cuda:nccl", "npu:hccl"]), min_size=1, max_size=6))
def test_collapse_backend_keeps_each_pair_once(parts):
    collapsed = collapse_backend(",".join(parts))
    unique = list(dict.fromkeys(parts))
    if len(parts) == 1:
        assert collapsed == parts[0]
    elif len(unique) == 1:
        assert collapsed == unique[0].split(":")[1]
    else:
        assert collapsed.split(",") == unique
