"""verl's ``cpu`` platform: what verl asks of an accelerator, answered by the host CPU.

verl reaches the device through ``get_platform()`` and ``get_torch_device()`` (normally
``torch.cuda``). ``torch.cpu`` covers streams, events and synchronisation but not the memory and
RNG queries verl also makes (``mem_get_info``, ``memory_reserved``, ``get_rng_state``,
``empty_cache`` ...), so ``CPU_DEVICE`` is ``torch.cpu`` plus those, answered from the host:
memory figures are the process's resident set and the machine's RAM, the RNG is torch's CPU one.

Ray placement: verl's resource pools count the platform's Ray resource. We keep ``GPU`` and let
a CPU run declare fake GPU slots (``ray_kwargs.ray_init.num_gpus=N``); torch never sees them.
"""

from __future__ import annotations

import contextlib
import os
from types import ModuleType
from typing import Any

import psutil
import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

from recipe.rlmr.cpu import PLATFORM


def _rss() -> int:
    return psutil.Process(os.getpid()).memory_info().rss


class _HostDevice(ModuleType):
    """``torch.cpu`` with the CUDA-style memory and RNG calls verl makes, answered by the host."""

    def __init__(self):
        super().__init__("rlmr_cpu_device")

    def __getattr__(self, name: str):  # streams, events, synchronize, device_count ...
        return getattr(torch.cpu, name)

    # memory: no caching allocator, so "reserved" and "allocated" are both the resident set
    def empty_cache(self) -> None:
        return None

    def ipc_collect(self) -> None:
        return None

    def memory_allocated(self, device=None) -> int:
        return _rss()

    memory_reserved = max_memory_allocated = max_memory_reserved = memory_allocated

    def reset_peak_memory_stats(self, device=None) -> None:
        return None

    def mem_get_info(self, device=None) -> tuple[int, int]:
        memory = psutil.virtual_memory()
        return memory.available, memory.total

    def set_per_process_memory_fraction(self, fraction: float, device=None) -> None:
        return None

    def get_device_name(self, device=None) -> str:
        return "cpu"

    # the CPU generator is the only one there is
    def get_rng_state(self, device=None) -> torch.Tensor:
        return torch.get_rng_state()

    def set_rng_state(self, state: torch.Tensor, device=None) -> None:
        torch.set_rng_state(state)

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    manual_seed_all = manual_seed


CPU_DEVICE = _HostDevice()


@PlatformRegistry.register(platform=PLATFORM)
class PlatformCPU(PlatformBase):
    """Selected only by ``VERL_PLATFORM=cpu``; auto-detection never picks it."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "host"

    @property
    def device_module(self) -> ModuleType:
        return CPU_DEVICE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        return False  # never auto-detected: a machine with GPUs must keep using them

    def current_device(self) -> str:
        # verl uses this as a device for `.to(...)` / `to_empty(device=...)`; the int 0 would
        # mean cuda:0 to torch, so the host device is named instead.
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # what Ray sets for the (fake) GPU slots; harmless on CPU

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
