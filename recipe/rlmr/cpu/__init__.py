"""Opt-in CPU backend: run verl's real trainer on a machine with no accelerator.

Switched on by ``VERL_PLATFORM=cpu`` (verl's own platform selector) in the environment of the
process that starts Ray; Ray's workers inherit it. Nothing here runs otherwise, so a GPU run is
untouched. What it adds to verl, through verl's extension points:

    platform   the ``cpu`` platform (gloo collectives, CPU "devices", Ray actors that only
               need the fake GPU slots the run declares with ``ray_init.num_gpus``)
    engines    verl's FSDP/FSDP2 training engines registered for device ``cpu``
    patches    two small fixes for spots verl gives no hook for (see ``patches``)

The launcher that builds tiny assets and starts a small run (``make demo``, the tests, the
experiment) is a development tool and runs on CPU or CUDA: ``recipe.rlmr.dev.launch``.

The rollout a CPU run uses, ``hf`` (``recipe.rlmr.rollout.hf``), is not part of the backend: it
is registered in every process, whatever the platform, and generates on CPU when the replica's
worker has no GPU.
"""

from __future__ import annotations

import os

PLATFORM = "cpu"


def enabled() -> bool:
    """True when this process was asked to run verl on CPU (``VERL_PLATFORM=cpu``)."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM
