"""The opt-in CPU backend, piece by piece: registration (and its absence), the two patches, the
``hf`` rollout server (batching, log-probs, weight loads, abort/resume) and its actor-side adapter.

The whole backend inside verl's trainer is exercised by test_cpu_e2e.py.
"""

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from recipe.rlmr.cpu.patches import collapse_backend
from recipe.rlmr.dev.tiny_assets import build_policy_model


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
        "replica False",
        "adapter False",
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


# ---- the hf rollout server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return build_policy_model(tmp_path_factory.mktemp("tiny-policy"))


def rollout_config(**overrides):
    from verl.workers.config import RolloutConfig

    settings = dict(name="hf", prompt_length=64, response_length=16, max_num_seqs=8, tensor_model_parallel_size=1)
    settings.update(overrides)
    return RolloutConfig(**settings)


@pytest.fixture
def server(policy_dir):
    from recipe.rlmr.cpu.hf_rollout import HFRolloutServer

    return HFRolloutServer(rollout_config(), {"path": str(policy_dir)})


SAMPLING = {"temperature": 0.7, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}


def reference_logprobs(model, prompt, tokens, temperature):
    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits / temperature, -1).gather(-1, torch.tensor(tokens)[:, None]).squeeze(-1)


def test_concurrent_requests_run_as_one_batch_with_exact_logprobs(server):
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [20], [30, 31]]

    async def scenario():
        return await asyncio.gather(
            *[server.generate(request_id=str(i), prompt_ids=p, sampling_params=SAMPLING) for i, p in enumerate(prompts)]
        )

    outputs = asyncio.run(scenario())
    assert server.stats["max_rows"] == len(prompts)  # left-padded into one generate call
    for prompt, output in zip(prompts, outputs, strict=False):
        assert 1 <= len(output.token_ids) <= 16
        assert output.stop_reason == "completed"
        if len(output.token_ids) < 16:
            assert output.token_ids[-1] in server.eos_ids  # stopped at the stop token, which is kept
        expected = reference_logprobs(server.model, prompt, output.token_ids, 0.7)
        assert torch.allclose(torch.tensor(output.log_probs), expected, atol=1e-4)


def test_max_tokens_is_bounded_by_the_remaining_context(server):
    server.eos_ids = []  # a model that never stops on its own
    prompt = list(range(1, 61))  # 60 of the 64 + 16 tokens of context

    async def scenario():
        long = await server.generate(request_id="a", prompt_ids=prompt, sampling_params=SAMPLING)
        short = await server.generate(request_id="b", prompt_ids=[1], sampling_params={**SAMPLING, "max_tokens": 3})
        return long, short

    long, short = asyncio.run(scenario())
    assert len(long.token_ids) == 16 and len(short.token_ids) == 3


def spy_on_generate(server) -> list[dict]:
    """Record every ``model.generate`` call the server makes: its rows and its sampling settings."""
    calls = []
    original = server.model.generate

    def generate(**kwargs):
        calls.append(
            {
                "rows": kwargs["input_ids"].shape[0],
                "settings": tuple(kwargs[k] for k in ("temperature", "top_p", "top_k", "repetition_penalty")),
            }
        )
        return original(**kwargs)

    server.model.generate = generate
    return calls


def generate_all(server, prompts, params) -> list:
    """Send every request at once, as the agent loop does."""

    async def scenario():
        return await asyncio.gather(
            *[
                server.generate(request_id=str(i), prompt_ids=p, sampling_params=s)
                for i, (p, s) in enumerate(zip(prompts, params, strict=True))
            ]
        )

    return asyncio.run(scenario())


def as_generate_settings(params: dict) -> tuple:
    """What the server must hand to ``model.generate`` for these sampling params (top_k -1 is off: 0)."""
    return (params["temperature"], params["top_p"], max(params["top_k"], 0), params["repetition_penalty"])


@pytest.mark.parametrize(
    "change",
    [{"temperature": 1.3}, {"top_p": 0.8}, {"top_k": 5}, {"repetition_penalty": 1.3}],
    ids=lambda change: next(iter(change)),
)
def test_requests_with_different_sampling_params_never_share_a_batch(server, change):
    other = {**SAMPLING, **change}
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12], [13]]
    params = [SAMPLING, other, SAMPLING, other]  # interleaved: grouping is by params, not arrival runs
    calls = spy_on_generate(server)
    outputs = generate_all(server, prompts, params)
    assert sorted(call["rows"] for call in calls) == [2, 2]
    assert {call["settings"] for call in calls} == {as_generate_settings(SAMPLING), as_generate_settings(other)}
    assert server.stats["batches"] == 2 and server.stats["max_rows"] == 2
    for prompt, param, output in zip(prompts, params, outputs, strict=True):
        # log-probs at the request's own temperature: a request run in the other group would fail here
        expected = reference_logprobs(server.model, prompt, output.token_ids, param["temperature"])
        assert torch.allclose(torch.tensor(output.log_probs), expected, atol=1e-4)


def test_max_num_seqs_bounds_the_rows_of_every_generate_call(policy_dir):
    from recipe.rlmr.cpu.hf_rollout import HFRolloutServer

    server = HFRolloutServer(rollout_config(max_num_seqs=2), {"path": str(policy_dir)})
    calls = spy_on_generate(server)
    outputs = generate_all(server, [[5 + i, 6] for i in range(5)], [SAMPLING] * 5)
    assert [call["rows"] for call in calls] == [2, 2, 1]
    assert server.stats["batches"] == 3 and server.stats["rows"] == 5 and server.stats["max_rows"] == 2
    assert all(output.stop_reason == "completed" and output.token_ids for output in outputs)


def sampled_tokens(policy_dir, seed: int, replica_rank: int = 0) -> list[list[int]]:
    """Tokens a fresh server samples for three prompts (16 tokens each, never stopping early)."""
    from recipe.rlmr.cpu.hf_rollout import HFRolloutServer

    server = HFRolloutServer(rollout_config(seed=seed), {"path": str(policy_dir)}, replica_rank=replica_rank)
    server.eos_ids = []
    hot = {**SAMPLING, "temperature": 1.0}
    return [output.token_ids for output in generate_all(server, [[5, 6], [7], [8, 9, 10]], [hot] * 3)]


def test_rollout_seed_makes_sampling_reproducible(policy_dir):
    first = sampled_tokens(policy_dir, seed=1)
    assert all(len(tokens) == 16 for tokens in first)
    assert sampled_tokens(policy_dir, seed=1) == first  # same seed, same tokens
    assert sampled_tokens(policy_dir, seed=2) != first  # another seed, other tokens
    assert sampled_tokens(policy_dir, seed=1, replica_rank=1) != first  # replicas do not sample alike


def test_update_weights_changes_what_the_server_generates(server, policy_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    other = AutoModelForCausalLM.from_pretrained(str(build_policy_model(tmp_path / "other", seed=7)))
    greedy = {**SAMPLING, "temperature": 0}

    async def scenario():
        before = await server.generate(request_id="a", prompt_ids=[5, 6, 7], sampling_params=greedy)
        result = await server.update_weights(other.state_dict(), global_steps=3)
        after = await server.generate(request_id="b", prompt_ids=[5, 6, 7], sampling_params=greedy)
        return before, result, after

    before, result, after = asyncio.run(scenario())
    assert result["weight_version"] == 1
    assert torch.equal(server.model.model.embed_tokens.weight, other.model.embed_tokens.weight)
    assert after.extra_fields["global_steps"] == 3
    assert torch.allclose(
        torch.tensor(after.log_probs), reference_logprobs(other, [5, 6, 7], after.token_ids, 1.0), atol=1e-4
    )
    assert before.log_probs != after.log_probs


def test_update_weights_refuses_unknown_names_and_wrong_shapes(server):
    with pytest.raises(KeyError, match="not.a.weight"):
        asyncio.run(server.update_weights({"not.a.weight": torch.zeros(1)}))
    with pytest.raises(ValueError, match="model.norm.weight"):
        asyncio.run(server.update_weights({"model.norm.weight": torch.zeros(3)}))
    assert server.weight_version == 0


def test_abort_returns_partial_output_and_resume_reopens(policy_dir):
    from recipe.rlmr.cpu.hf_rollout import HFRolloutServer

    server = HFRolloutServer(rollout_config(response_length=4000, prompt_length=16), {"path": str(policy_dir)})
    server.eos_ids = []
    generating = threading.Event()  # set by generate itself once it has produced a token

    def token_produced(input_ids, scores, **kwargs):
        generating.set()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    server._stopping.append(token_produced)

    async def scenario():
        running = asyncio.create_task(server.generate(request_id="a", prompt_ids=[5, 6], sampling_params=SAMPLING))
        assert await asyncio.to_thread(generating.wait, 120), "generate never started"
        aborted = await server.abort_all_requests()
        partial = await running
        requests_before = server.stats["requests"]
        waiting = asyncio.create_task(
            server.generate(request_id="b", prompt_ids=[5], sampling_params={**SAMPLING, "max_tokens": 2})
        )
        await asyncio.sleep(0)  # one turn of the loop: the new request runs up to its first await
        # the gate is closed until resume_generation: the request waits before it is even queued
        held = not waiting.done() and server.stats["requests"] == requests_before and not server._queue
        await server.resume_generation()
        return aborted, partial, held, await waiting

    aborted, partial, held, resumed = asyncio.run(scenario())
    assert aborted == {"aborted_count": 0}  # the request was running, not queued
    assert partial.stop_reason == "aborted" and 0 < len(partial.token_ids) < 4000
    assert len(partial.log_probs) == len(partial.token_ids)
    assert held and resumed.stop_reason == "completed" and len(resumed.token_ids) == 2


def test_abort_with_reject_answers_new_requests_at_once(server):
    async def scenario():
        await server.abort_all_requests(reject_request=True)
        return await server.generate(request_id="a", prompt_ids=[5], sampling_params=SAMPLING)

    output = asyncio.run(scenario())
    assert output.stop_reason == "aborted" and output.token_ids == []


def test_multimodal_requests_are_refused(server):
    with pytest.raises(NotImplementedError, match="text only"):
        asyncio.run(server.generate(request_id="a", prompt_ids=[5], sampling_params=SAMPLING, image_data=["x"]))


# ---- the actor-side adapter, with the server as a named Ray actor ----------------------------


@pytest.mark.ray
def test_adapter_ships_the_actors_weights_to_its_server(transfer_queue, policy_dir, tmp_path, monkeypatch):
    import ray
    from transformers import AutoModelForCausalLM

    from recipe.rlmr.cpu.hf_rollout import HFRolloutServer, HFServerAdapter, server_actor_name

    config = rollout_config()
    model_config = SimpleNamespace(path=str(policy_dir))  # the adapter only needs to exist next to its server
    server = (
        ray.remote(HFRolloutServer)
        .options(name=server_actor_name(0), num_cpus=0)
        .remote(config, {"path": str(policy_dir)})
    )
    trained = AutoModelForCausalLM.from_pretrained(str(build_policy_model(tmp_path / "trained", seed=11)))
    try:
        # rank 1 of a two-rank rollout world owns no server, but must walk the weights (FSDP's
        # full-tensor gathers are collective)
        monkeypatch.setenv("RANK", "1")
        walked = []
        follower = HFServerAdapter(rollout_config(tensor_model_parallel_size=2), model_config, device_mesh=None)
        assert follower.replica_rank == 0 and not follower.owns_server
        result = asyncio.run(
            follower.update_weights(
                ((n, walked.append(n) or t) for n, t in trained.state_dict().items()), global_steps=1
            )
        )
        assert result is None and len(walked) == len(trained.state_dict())
        assert ray.get(server.get_stats.remote())["weight_updates"] == 0

        monkeypatch.setenv("RANK", "0")
        owner = HFServerAdapter(config, model_config, device_mesh=None)
        asyncio.run(owner.update_weights(iter(trained.state_dict().items()), global_steps=5))
        stats = ray.get(server.get_stats.remote())
        assert stats["weight_updates"] == 1 and stats["global_steps"] == 5
        served = ray.get(server.get_weight.remote("model.layers.0.mlp.up_proj.weight"))
        assert torch.equal(served, trained.model.layers[0].mlp.up_proj.weight)

        with pytest.raises(NotImplementedError, match="delta_flush"):
            asyncio.run(owner.update_weights(iter([]), wire_format="delta_flush"))
    finally:
        ray.kill(server)
