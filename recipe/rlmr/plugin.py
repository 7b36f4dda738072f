"""verl plugin: makes ``algorithm.adv_estimator=rlmr`` known in every process that imports verl.

Loaded by ``import verl`` through the ``verl.plugins`` entry point of the installed
``verl-rlmr`` distribution, or through ``VERL_USE_EXTERNAL_MODULES=recipe.rlmr.plugin`` where the
package is only on ``PYTHONPATH``. It does three things:

1. registers ``rlmr`` with verl's advantage-estimator registry (cheap, done at once);
2. installs the RLMR-aware V1 trainer classes (``recipe.rlmr.trainer``) right after
   ``verl.trainer.ppo.v1`` is imported, the ``rlmr`` reward manager (``rewards.manager``)
   right after verl's reward-manager registry is, and the name of the ``hf`` rollout
   (``recipe.rlmr.rollout``) right after ``verl.workers.rollout`` is. Those verl modules cost
   seconds to import, so only the processes that use them pay for it.
3. only with ``VERL_PLATFORM=cpu``: the opt-in CPU backend (``recipe.rlmr.cpu``): the ``cpu``
   platform and the gloo backend fix at once, the CPU FSDP engines when verl imports its engine
   package.

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


def _shout(what: str) -> None:
    message = f"[verl-rlmr] {what} FAILED in pid {os.getpid()}; verl-rlmr will not work in this process.\n"
    sys.stderr.write(message + traceback.format_exc())
    sys.stderr.flush()
    logger.error(message.strip())


# verl module -> our module that registers into it when imported. These verl modules cost
# seconds to import, so we wait until a process imports them itself (the TaskRunner imports the
# V1 trainers, reward-loop workers the reward managers, rollout users the rollout package).
_INSTALL_AFTER = {
    "verl.trainer.ppo.v1": "recipe.rlmr.trainer",  # RLMR-aware V1 trainer classes
    "verl.experimental.reward_loop.reward_manager": "rewards.manager",  # the `rlmr` reward manager
    "verl.workers.rollout": "recipe.rlmr.rollout",  # the `hf` rollout's name (its module loads on use)
}


# Added to _INSTALL_AFTER only when the CPU backend is asked for (VERL_PLATFORM=cpu).
_CPU_INSTALL_AFTER = {
    "verl.workers.engine.fsdp.transformer_impl": "recipe.rlmr.cpu.engines",  # FSDP engines for device cpu
}


def _enable_cpu_backend() -> None:
    from recipe.rlmr import cpu

    if not cpu.enabled():
        return
    try:
        from recipe.rlmr.cpu import patches, platform  # noqa: F401  (platform registers `cpu`)

        patches.collapse_duplicate_backends()
    except Exception:
        _shout("enabling the CPU backend (VERL_PLATFORM=cpu)")
        raise
    _INSTALL_AFTER.update(_CPU_INSTALL_AFTER)


def _install(module_name: str) -> None:
    """Import our module that registers into ``module_name``'s registry (it registers at import)."""
    installer = _INSTALL_AFTER[module_name]
    try:
        # If `installer` is what triggered the verl import, it is half-built here; it finishes
        # (and registers) once this returns.
        importlib.import_module(installer)
    except Exception:
        _shout(f"installing {installer} into {module_name}")
        raise


class _InstallAfterExec(importlib.abc.Loader):
    """Wraps the loader of a watched verl module and installs ours once it has run."""

    def __init__(self, loader: importlib.abc.Loader, module_name: str):
        self._loader = loader
        self._module_name = module_name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _install(self._module_name)

    def __getattr__(self, name: str):  # get_resource_reader, is_package, ... of the real loader
        return getattr(self._loader, name)


class _WatchImports(importlib.abc.MetaPathFinder):
    """Hands back the normal spec of each watched verl module, once, with a wrapped loader."""

    def __init__(self, module_names):
        self.pending = set(module_names)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)  # one shot; also lets the real finders answer the lookup below
        if not self.pending:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _InstallAfterExec(spec.loader, fullname)
        return spec


def register() -> None:
    """Register the estimator now, and each of ``_INSTALL_AFTER`` now or when verl imports its module."""
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, register_adv_est

    from recipe.rlmr.verdicts import rlmr_estimator

    if ADV_ESTIMATOR_REGISTRY.get(ESTIMATOR_NAME) is not rlmr_estimator:
        register_adv_est(ESTIMATOR_NAME)(rlmr_estimator)

    if any(isinstance(finder, _WatchImports) for finder in sys.meta_path):
        return
    _enable_cpu_backend()
    waiting = []
    for module_name in _INSTALL_AFTER:
        if module_name in sys.modules:
            _install(module_name)
        else:
            waiting.append(module_name)
    if waiting:
        sys.meta_path.insert(0, _WatchImports(waiting))


try:
    register()
except Exception:
    _shout("registering the rlmr advantage estimator")
    raise
