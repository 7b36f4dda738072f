"""Rollouts of our own that verl selects by name (``actor_rollout_ref.rollout.name``).

``hf`` (``rollout/hf.py``): transformers' ``generate`` behind verl's replica interface, on the
GPU of the replica's first worker when that worker trains on one, on CPU otherwise. It needs no
inference engine, so it serves CPU runs (``recipe.rlmr.cpu``) and single-GPU smoke runs alike.

Importing this package registers the ``hf`` name with verl's two rollout registries, and costs
nothing beyond verl's own rollout package: the replica registry takes a loader function and
``_ROLLOUT_REGISTRY`` a dotted class path, so ``rollout/hf.py`` is imported only when a run
selects the rollout. The plugin imports this package right after verl imports
``verl.workers.rollout``, in every process, whatever the platform.
"""

from __future__ import annotations

HF_ROLLOUT = "hf"
HF_ADAPTER = f"{__name__}.hf.HFServerAdapter"  # the actor-side BaseRollout, by dotted path


def _load_hf_replica():
    from recipe.rlmr.rollout.hf import HFReplica

    return HFReplica


def register() -> None:
    """Make ``actor_rollout_ref.rollout.name=hf`` known to verl (idempotent, imports nothing heavy)."""
    from verl.workers.rollout.base import _ROLLOUT_REGISTRY
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    RolloutReplicaRegistry.register(HF_ROLLOUT, _load_hf_replica)
    _ROLLOUT_REGISTRY[(HF_ROLLOUT, "async")] = HF_ADAPTER


register()
