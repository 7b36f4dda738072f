"""The two spots where verl has no extension point for a CPU run, patched narrowly.

Both are installed only by the opt-in CPU backend (``VERL_PLATFORM=cpu``).

1. ``collapse_duplicate_backends``: verl builds its process-group backend as
   ``f"cpu:gloo,{device}:{backend}"``; with device ``cpu`` that is ``"cpu:gloo,cpu:gloo"``, which
   torch rejects ("Duplicate device type cpu"). We wrap ``torch.distributed.init_process_group``
   so a backend string naming one device twice with the same backend becomes that backend alone.
   Any other string passes through unchanged.
2. ``unpinned_cpu_offload``: verl's FSDP2 engine gives forward-only models (the reference policy)
   ``CPUOffloadPolicy(pin_memory=True)``; pinning needs an accelerator. Inside that one module the
   policy class is swapped for a subclass that never pins.
"""

from __future__ import annotations

import functools

import torch.distributed


def collapse_backend(backend):
    """``"cpu:gloo,cpu:gloo"`` -> ``"gloo"``; anything else unchanged.

    Invariant: the result names the same (device, backend) pairs, without repeats; a string
    that maps one device to two different backends is returned as is (torch will say why).
    """
    if not isinstance(backend, str) or "," not in backend:
        return backend
    pairs = {}
    for part in backend.split(","):
        device, _, name = part.strip().partition(":")
        if not name or pairs.setdefault(device, name) != name:
            return backend
    if len(pairs) == 1:
        return next(iter(pairs.values()))
    return ",".join(f"{device}:{name}" for device, name in pairs.items())


def collapse_duplicate_backends() -> None:
    original = torch.distributed.init_process_group
    if getattr(original, "_rlmr_collapses_backends", False):
        return

    @functools.wraps(original)
    def init_process_group(*args, **kwargs):
        if "backend" in kwargs:
            kwargs["backend"] = collapse_backend(kwargs["backend"])
        elif args:
            args = (collapse_backend(args[0]), *args[1:])
        return original(*args, **kwargs)

    init_process_group._rlmr_collapses_backends = True
    torch.distributed.init_process_group = init_process_group


def unpinned_cpu_offload(fsdp_engine_module) -> None:
    """Make ``fsdp_engine_module.CPUOffloadPolicy(...)`` build policies with ``pin_memory=False``."""
    policy_cls = fsdp_engine_module.CPUOffloadPolicy
    if policy_cls is None or getattr(policy_cls, "_rlmr_unpinned", False):
        return

    class UnpinnedCPUOffloadPolicy(policy_cls):
        _rlmr_unpinned = True

        def __init__(self, pin_memory: bool = False, **kwargs):
            super().__init__(pin_memory=False, **kwargs)

    fsdp_engine_module.CPUOffloadPolicy = UnpinnedCPUOffloadPolicy
