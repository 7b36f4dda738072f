"""verl's FSDP training engines, registered for device ``cpu``.

verl registers its FSDP/FSDP2 engines for ``cuda`` and ``npu`` only; the engine code itself is
device-agnostic (FSDP2 shards CPU tensors over gloo). Imported by the plugin right after verl
imports ``verl.workers.engine.fsdp.transformer_impl``, and only with the CPU backend on.
"""

from __future__ import annotations

from verl.workers.engine.base import EngineRegistry
from verl.workers.engine.fsdp import transformer_impl

from recipe.rlmr.cpu.patches import unpinned_cpu_offload


def register() -> None:
    registered = EngineRegistry._engines
    for model_type, engine in (
        ("language_model", transformer_impl.FSDPEngineWithLMHead),
        ("value_model", transformer_impl.FSDPEngineWithValueHead),
    ):
        backends = [b for b in ("fsdp", "fsdp2") if "cpu" not in registered.get(model_type, {}).get(b, {})]
        if backends:
            EngineRegistry.register(model_type=model_type, backend=backends, device="cpu")(engine)
    unpinned_cpu_offload(transformer_impl)


register()
