"""verl plugin: makes ``algorithm.adv_estimator=rlmr`` known in every process that imports verl.

Loaded by ``import verl`` through the ``verl.plugins`` entry point of the installed
``verl-rlmr`` distribution, or through ``VERL_USE_EXTERNAL_MODULES=recipe.rlmr.plugin`` where the
package is only on ``PYTHONPATH``. It does two things:

1. registers ``rlmr`` with verl's advantage-estimator registry (cheap, done at once);
2. installs the RLMR-aware V1 trainer classes (``recipe.rlmr.trainer``) into verl's trainer
   registry right after ``verl.trainer.ppo.v1`` is imported. That module costs seconds to import,
   so only the processes that build a trainer (the TaskRunner) pay for it.

verl swallows exceptions raised by plugins (logged at debug level only), so every failure here is
printed to stderr with its traceback before it is re-raised.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import traceback
from types import ModuleType

logger = logging.getLogger(__name__)

ESTIMATOR_NAME = "rlmr"
_V1_MODULE = "verl.trainer.ppo.v1"


def _shout(what: str) -> None:
    message = f"[verl-rlmr] {what} FAILED in pid {os.getpid()}; algorithm.adv_estimator=rlmr will not work here.\n"
    sys.stderr.write(message + traceback.format_exc())
    sys.stderr.flush()
    logger.error(message.strip())


def _install_trainers() -> None:
    try:
        # Importing the module installs the classes (last line of the module). If that module is
        # what triggered the V1 import, it is still half-built here and installs when it finishes.
        importlib.import_module("recipe.rlmr.trainer")
    except Exception:
        _shout("installing the RLMR-aware V1 trainer classes")
        raise


class _InstallAfterExec(importlib.abc.Loader):
    """Wraps the loader of ``verl.trainer.ppo.v1`` and installs the trainers once it has run."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _install_trainers()

    def __getattr__(self, name: str):  # get_resource_reader, is_package, ... of the real loader
        return getattr(self._loader, name)


class _WatchV1Import(importlib.abc.MetaPathFinder):
    """One-shot finder: hands back the normal spec of ``verl.trainer.ppo.v1`` with a wrapped loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _V1_MODULE:
            return None
        sys.meta_path.remove(self)  # one shot, and lets the real finders answer the lookup below
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _InstallAfterExec(spec.loader)
        return spec


def register() -> None:
    """Register the estimator now and the trainer classes now or when V1 is imported."""
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, register_adv_est

    from recipe.rlmr.verdicts import rlmr_estimator

    if ADV_ESTIMATOR_REGISTRY.get(ESTIMATOR_NAME) is not rlmr_estimator:
        register_adv_est(ESTIMATOR_NAME)(rlmr_estimator)

    if _V1_MODULE in sys.modules:
        _install_trainers()
    elif not any(isinstance(finder, _WatchV1Import) for finder in sys.meta_path):
        sys.meta_path.insert(0, _WatchV1Import())


try:
    register()
except Exception:
    _shout("registering the rlmr advantage estimator")
    raise
