"""The verl plugin: `import verl` alone makes `rlmr` usable, in fresh processes, and fails loudly.

Each check runs in a new interpreter, as a Ray worker or TaskRunner would.
"""

import os
import subprocess
import sys
import textwrap

import pytest


def run_python(code: str, env_overrides=None, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_overrides or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def check(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def test_import_verl_registers_the_estimator_and_v1_import_installs_the_trainers(tmp_path):
    out = check(
        run_python(
            """
            import sys
            import verl
            from verl.trainer.ppo.core_algos import get_adv_estimator_fn
            print("estimator", get_adv_estimator_fn("rlmr").__module__, get_adv_estimator_fn("rlmr").__name__)
            print("v1 imported by the plugin:", "verl.trainer.ppo.v1" in sys.modules)
            from verl.trainer.ppo.v1 import get_trainer_cls
            for mode in ("sync", "colocate_async", "separate_async"):
                print(mode, get_trainer_cls(mode).__module__, get_trainer_cls(mode).__name__)
            """,
            cwd=tmp_path,  # not the checkout: the installed entry point must do it
        )
    )
    assert "estimator recipe.rlmr.verdicts rlmr_estimator" in out
    assert "v1 imported by the plugin: False" in out
    assert "sync recipe.rlmr.trainer RLMRTrainerSync" in out
    assert "colocate_async recipe.rlmr.trainer RLMRTrainerColocateAsync" in out
    assert "separate_async recipe.rlmr.trainer RLMRTrainerSeparateAsync" in out


def test_reward_manager_registers_when_verl_loads_its_registry(tmp_path):
    out = check(
        run_python(
            """
            import sys
            import verl
            print("registry imported by the plugin:", "verl.experimental.reward_loop.reward_manager" in sys.modules)
            from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
            cls = get_reward_manager_cls("rlmr")
            print(cls.__module__, cls.__name__)
            """,
            cwd=tmp_path,
        )
    )
    assert "registry imported by the plugin: False" in out
    assert "rewards.manager RLMRRewardManager" in out


def test_importing_the_trainer_module_first_also_installs(tmp_path):
    out = check(
        run_python(
            """
            from recipe.rlmr.trainer import RLMRTrainerSync
            from verl.trainer.ppo.v1 import get_trainer_cls
            print(get_trainer_cls("sync") is RLMRTrainerSync)
            """,
            cwd=tmp_path,
        )
    )
    assert out.strip().endswith("True")


@pytest.mark.parametrize("first", ["recipe.rlmr.advantage", "recipe.rlmr.verdicts", "recipe.rlmr.plugin"])
def test_registered_whichever_module_is_imported_first(tmp_path, first):
    out = check(
        run_python(
            f"""
            import {first}
            from verl.trainer.ppo.core_algos import get_adv_estimator_fn
            print(get_adv_estimator_fn("rlmr").__name__)
            """,
            cwd=tmp_path,
        )
    )
    assert out.strip().endswith("rlmr_estimator")


def test_external_modules_path_works_without_the_entry_point(tmp_path):
    """Clusters where verl-rlmr is only on PYTHONPATH: VERL_USE_EXTERNAL_MODULES=recipe.rlmr.plugin."""
    code = """
        from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY
        print("rlmr" in ADV_ESTIMATOR_REGISTRY)
        """
    disabled = {"VERL_USE_EXTERNAL_PLUGINS": "none"}
    assert check(run_python(code, disabled, cwd=tmp_path)).strip().endswith("False")
    enabled = {**disabled, "VERL_USE_EXTERNAL_MODULES": "recipe.rlmr.plugin"}
    assert check(run_python(code, enabled, cwd=tmp_path)).strip().endswith("True")


def test_a_failing_registration_is_loud_although_verl_swallows_it(tmp_path):
    # Another module claims the name `rlmr` first (external modules load before entry points).
    (tmp_path / "claims_rlmr.py").write_text(
        "from verl.trainer.ppo.core_algos import register_adv_est\nregister_adv_est('rlmr')(lambda **kwargs: None)\n"
    )
    result = run_python(
        "import verl; print('verl imported')",
        {"VERL_USE_EXTERNAL_MODULES": "claims_rlmr", "PYTHONPATH": str(tmp_path)},
        cwd=tmp_path,
    )
    assert "verl imported" in check(result)  # verl swallowed the plugin's exception ...
    assert "[verl-rlmr] registering the rlmr advantage estimator FAILED" in result.stderr  # ... we did not
    assert "already been registered" in result.stderr


def test_failing_registration_raises_when_imported_directly(tmp_path):
    result = run_python(
        """
        import verl
        from verl.trainer.ppo.core_algos import register_adv_est
        register_adv_est("rlmr")(lambda **kwargs: None)
        import recipe.rlmr.plugin
        """,
        {"VERL_USE_EXTERNAL_PLUGINS": "none"},
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "ValueError" in result.stderr and "[verl-rlmr]" in result.stderr


@pytest.mark.parametrize("mode", ["sync", "colocate_async", "separate_async"])
def test_install_leaves_a_foreign_trainer_alone(mode):
    from recipe.rlmr.trainer import RLMR_TRAINERS, install

    class Foreign:
        pass

    registry = {name: verl_cls for name, (verl_cls, _) in RLMR_TRAINERS.items()}
    registry[mode] = Foreign
    install(registry)
    assert registry[mode] is Foreign
    assert all(registry[name] is rlmr_cls for name, (_, rlmr_cls) in RLMR_TRAINERS.items() if name != mode)
