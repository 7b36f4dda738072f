"""The ``hf`` rollout (recipe/rlmr/rollout/hf.py): its registration with verl on any platform, the
choice of device and dtype, the server (batching, log-probs, weight loads, abort/resume) and its
actor-side adapter. The CUDA branch (server tests parametrized with ``cuda:0``, a replica whose
worker holds a GPU) runs only where torch sees a GPU.

Inside verl's trainer it is exercised by test_cpu_e2e.py.
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

from recipe.rlmr.dev.tiny_assets import build_policy_model
from recipe.rlmr.rollout.hf import (
    DEVICE_ENV,
    WorkerDevice,
    describe_worker_device,
    rollout_device,
    rollout_dtype,
    server_env_vars,
)

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU: the CUDA branch needs one")
DEVICES = ["cpu", pytest.param("cuda:0", marks=needs_gpu)]

# ---- registration --------------------------------------------------------------------------


def test_hf_is_registered_without_the_cpu_platform_and_loaded_only_when_asked_for(tmp_path):
    """A fresh interpreter, no VERL_PLATFORM, outside the checkout: the installed plugin alone."""
    code = """
        import sys
        import verl
        print("rollout packages imported by import verl:", "verl.workers.rollout" in sys.modules,
              "recipe.rlmr.rollout" in sys.modules)
        from verl.workers.rollout.base import get_rollout_class
        from verl.workers.rollout.replica import get_rollout_replica_class
        print("hf module imported by the registration:", "recipe.rlmr.rollout.hf" in sys.modules)
        replica, adapter = get_rollout_replica_class("hf"), get_rollout_class("hf", "async")
        print("classes", replica.__module__, replica.__name__, adapter.__name__)
        backend = ("platform", "engines", "patches")  # (the package itself only says whether it is on)
        print("cpu backend loaded:", any(f"recipe.rlmr.cpu.{name}" in sys.modules for name in backend))
        """
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    command = [sys.executable, "-c", textwrap.dedent(code)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "rollout packages imported by import verl: False False" in result.stdout  # lazy: import verl stays cheap
    assert "hf module imported by the registration: False" in result.stdout  # the name alone, until asked for
    assert "classes recipe.rlmr.rollout.hf HFReplica HFServerAdapter" in result.stdout
    assert "cpu backend loaded: False" in result.stdout  # the CPU platform stays opt-in


# ---- device and dtype choice (pure; no GPU needed) -----------------------------------------

GPU_WORKER = WorkerDevice("cuda", index=1, visible_envvar="CUDA_VISIBLE_DEVICES", visible="4,5")


@pytest.mark.parametrize(
    "worker, requested, expected",
    [
        (None, "auto", "cpu"),  # no worker to follow (tests, a replica without workers)
        (WorkerDevice("cpu"), "auto", "cpu"),  # the CPU backend
        (WorkerDevice("cuda"), "auto", "cpu"),  # verl says "cuda" on a CPU-only machine: no index, no GPU
        (WorkerDevice("npu", index=0), "auto", "cpu"),  # only CUDA GPUs are followed
        (GPU_WORKER, "auto", "cuda:1"),  # the worker's own index
        (GPU_WORKER, " AUTO ", "cuda:1"),
        (GPU_WORKER, "", "cuda:1"),  # unset means auto
        (GPU_WORKER, "cpu", "cpu"),  # RLMR_HF_ROLLOUT_DEVICE=cpu keeps it on CPU anyway
    ],
)
def test_rollout_device_follows_the_workers_gpu(worker, requested, expected):
    assert rollout_device(worker, requested) == expected


@pytest.mark.parametrize("requested", ["gpu", "cuda", "cuda:0"])
def test_rollout_device_refuses_other_requests_naming_the_variable(requested):
    with pytest.raises(ValueError, match=DEVICE_ENV):
        rollout_device(GPU_WORKER, requested)


NOSET = ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]


def test_server_env_copies_the_workers_visible_devices_and_keeps_ray_off_them():
    assert server_env_vars(GPU_WORKER, "cuda:1", NOSET) == {
        "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1",
        "CUDA_VISIBLE_DEVICES": "4,5",  # so that cuda:1 is the worker's GPU in the server too
    }
    unset = WorkerDevice("cuda", index=0, visible_envvar="CUDA_VISIBLE_DEVICES", visible=None)
    assert server_env_vars(unset, "cuda:0", NOSET) == {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}
    assert server_env_vars(GPU_WORKER, "cpu", NOSET) == {}  # a CPU server needs nothing
    assert server_env_vars(None, "cpu", NOSET) == {}


@pytest.mark.parametrize(
    "where, configured, expected",
    [
        ("cpu", "bfloat16", torch.float32),  # CPUs run float32 fastest; the CPU launcher's actor is fp32
        ("cpu", "float16", torch.float32),
        ("cuda:0", "bfloat16", torch.bfloat16),  # a GPU follows actor_rollout_ref.rollout.dtype
        ("cuda:0", "bf16", torch.bfloat16),
        ("cuda:1", "float16", torch.float16),
        ("cuda:0", "float32", torch.float32),
    ],
)
def test_rollout_dtype(where, configured, expected):
    assert rollout_dtype(where, configured) == expected


def test_rollout_dtype_refuses_an_unknown_dtype_naming_the_key():
    with pytest.raises(ValueError, match=r"actor_rollout_ref\.rollout\.dtype='int8'"):
        rollout_dtype("cuda:0", "int8")


def test_this_process_is_described_as_it_is():
    worker = describe_worker_device()
    assert worker.has_gpu == torch.cuda.is_available()
    if worker.has_gpu:
        assert worker.index == torch.cuda.current_device()
        assert worker.visible == os.environ.get(worker.visible_envvar)


def test_the_abort_criterion_answers_on_the_inputs_device():
    """The criterion's flags meet generate's own per-row flags on the model's device. "meta"
    stands in for a GPU here: a flag built on the host would show as device cpu."""
    from recipe.rlmr.rollout.hf import _StopWhenAborted

    event = threading.Event()
    criterion = _StopWhenAborted(event)
    input_ids = torch.empty((3, 5), dtype=torch.long, device="meta")
    assert criterion(input_ids, None).device == input_ids.device
    event.set()
    flags = criterion(torch.zeros((2, 4), dtype=torch.long), None)
    assert flags.tolist() == [True, True]


# ---- the hf rollout server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return build_policy_model(tmp_path_factory.mktemp("tiny-policy"))


def rollout_config(**overrides):
    from verl.workers.config import RolloutConfig

    settings = dict(name="hf", prompt_length=64, response_length=16, max_num_seqs=8, tensor_model_parallel_size=1)
    settings.update(overrides)
    return RolloutConfig(**settings)


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture
def server(policy_dir, device):
    """A server on each device; float32 on the GPU too, so log-probs can be checked to 1e-4."""
    from recipe.rlmr.rollout.hf import HFRolloutServer

    return HFRolloutServer(rollout_config(dtype="float32"), {"path": str(policy_dir)}, device=device)


SAMPLING = {"temperature": 0.7, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}


def reference_logprobs(model, prompt, tokens, temperature):
    """A plain forward pass of ``model`` (on its own device), on the host."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens], device=model.device)).logits[0, len(prompt) - 1 : -1].cpu()
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
    from recipe.rlmr.rollout.hf import HFRolloutServer

    server = HFRolloutServer(rollout_config(max_num_seqs=2), {"path": str(policy_dir)})
    calls = spy_on_generate(server)
    outputs = generate_all(server, [[5 + i, 6] for i in range(5)], [SAMPLING] * 5)
    assert [call["rows"] for call in calls] == [2, 2, 1]
    assert server.stats["batches"] == 3 and server.stats["rows"] == 5 and server.stats["max_rows"] == 2
    assert all(output.stop_reason == "completed" and output.token_ids for output in outputs)


def sampled_tokens(policy_dir, seed: int, replica_rank: int = 0) -> list[list[int]]:
    """Tokens a fresh server samples for three prompts (16 tokens each, never stopping early)."""
    from recipe.rlmr.rollout.hf import HFRolloutServer

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
    loaded = server.model.model.embed_tokens.weight
    assert loaded.device == server.device  # host tensors in, the model's device out
    assert torch.equal(loaded.cpu(), other.model.embed_tokens.weight)
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


@pytest.mark.parametrize("device", DEVICES)
def test_abort_returns_partial_output_and_resume_reopens(policy_dir, device):
    from recipe.rlmr.rollout.hf import HFRolloutServer

    config = rollout_config(response_length=4000, prompt_length=16)
    server = HFRolloutServer(config, {"path": str(policy_dir)}, device=device)
    server.eos_ids = []
    generating = threading.Event()  # set by generate itself once it has produced a token

    def token_produced(input_ids, scores, **kwargs):
        generating.set()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

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


@needs_gpu
def test_gpu_server_runs_in_the_configured_dtype_and_answers_on_the_host(policy_dir, tmp_path):
    """verl's default rollout dtype (bfloat16) on the GPU; weights arrive as float32 host tensors."""
    from transformers import AutoModelForCausalLM

    from recipe.rlmr.rollout.hf import HFRolloutServer

    server = HFRolloutServer(rollout_config(), {"path": str(policy_dir)}, device="cuda:0")
    trained = AutoModelForCausalLM.from_pretrained(str(build_policy_model(tmp_path / "trained", seed=5)))
    name = "model.layers.0.mlp.up_proj.weight"

    async def scenario():
        stats = await server.get_stats()
        await server.update_weights(trained.state_dict(), global_steps=2)
        output = await server.generate(request_id="a", prompt_ids=[5, 6, 7], sampling_params=SAMPLING)
        return stats, await server.get_weight(name), output

    stats, served, output = asyncio.run(scenario())
    assert stats["device"] == "cuda:0" and stats["dtype"] == "bfloat16"
    assert served.device.type == "cpu" and served.dtype == torch.bfloat16
    assert torch.equal(served, trained.get_parameter(name).detach().to(torch.bfloat16))
    assert output.token_ids and len(output.log_probs) == len(output.token_ids)
    assert output.extra_fields["global_steps"] == 2


# ---- the replica: server placement and device, with a stand-in worker -----------------------


def launch_replica(policy_dir, worker):
    """``HFReplica.launch_servers`` for a one-worker replica, as verl's ``init_hybrid`` calls it."""
    from recipe.rlmr.rollout.hf import HFReplica

    model_config = {"path": str(policy_dir)}
    replica = HFReplica(replica_rank=0, config=rollout_config(), model_config=model_config, gpus_per_node=1)
    replica.workers = [worker]
    asyncio.run(replica.launch_servers())
    return replica.server_handle


def visible_devices(actor) -> str | None:
    import ray

    return ray.get(actor.__ray_call__.remote(lambda _: os.environ.get("CUDA_VISIBLE_DEVICES")))


@pytest.mark.ray
def test_replica_without_a_gpu_serves_on_cpu(transfer_queue, policy_dir, monkeypatch):
    import ray

    monkeypatch.setenv(DEVICE_ENV, "cpu")  # a GPU machine too: the variable keeps it on the host
    worker = ray.remote(SimpleNamespace).options(num_cpus=0).remote()  # only its node and device are asked
    server = launch_replica(policy_dir, worker)
    try:
        stats = ray.get(server.get_stats.remote())
        assert stats["device"] == "cpu" and stats["dtype"] == "float32"
    finally:
        ray.kill(server)
        ray.kill(worker)


@pytest.mark.ray
def test_a_bad_device_request_fails_the_launch_naming_the_variable(transfer_queue, policy_dir, monkeypatch):
    import ray

    monkeypatch.setenv(DEVICE_ENV, "gpu")
    worker = ray.remote(SimpleNamespace).options(num_cpus=0).remote()
    try:
        with pytest.raises(ValueError, match=DEVICE_ENV):
            launch_replica(policy_dir, worker)
    finally:
        ray.kill(worker)


@needs_gpu
@pytest.mark.ray
def test_replica_whose_worker_holds_a_gpu_serves_on_that_gpu(transfer_queue, policy_dir, monkeypatch):
    import ray

    monkeypatch.delenv(DEVICE_ENV, raising=False)
    worker = ray.remote(SimpleNamespace).options(num_cpus=0, num_gpus=1).remote()  # Ray hands it one GPU
    server = launch_replica(policy_dir, worker)
    try:
        stats = ray.get(server.get_stats.remote())
        assert stats["device"] == "cuda:0" and stats["dtype"] == "bfloat16"  # verl's default rollout dtype
        assert visible_devices(server) == visible_devices(worker)  # the same GPU, not merely a GPU
        greedy = {**SAMPLING, "temperature": 0}
        output = ray.get(server.generate.remote(request_id="a", prompt_ids=[5, 6, 7], sampling_params=greedy))
        assert output.token_ids
    finally:
        ray.kill(server)
        ray.kill(worker)


# ---- the actor-side adapter, with the server as a named Ray actor ----------------------------


@pytest.mark.ray
def test_adapter_ships_the_actors_weights_to_its_server(transfer_queue, policy_dir, tmp_path, monkeypatch):
    import ray
    from transformers import AutoModelForCausalLM

    from recipe.rlmr.rollout.hf import HFRolloutServer, HFServerAdapter, server_actor_name

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


# ---- seeded sampling: a request's tokens depend on what it is, not on its batch ------------


def multisets(server, requests, batches) -> dict:
    """Send ``requests`` ((prompt, params) pairs) in ``batches`` (lists of indices, one
    ``generate_all`` each); the sorted token outputs per prompt."""
    found: dict = {}
    for batch in batches:
        outputs = generate_all(server, [requests[i][0] for i in batch], [requests[i][1] for i in batch])
        for i, output in zip(batch, outputs, strict=True):
            found.setdefault(tuple(requests[i][0]), []).append(tuple(output.token_ids))
    return {prompt: sorted(tokens) for prompt, tokens in found.items()}


def test_seeded_sampling_ignores_order_and_batching_and_follows_seed_and_step(policy_dir):
    """Same requests (3 prompts x 3 samples, one prompt twice as long), sent at once into one
    batch, reversed, and one at a time with max_num_seqs 1: the same multiset of responses per
    prompt. Another seed or another step: other responses. Log-probs stay the raw logits' ones."""
    from recipe.rlmr.rollout.hf import HFRolloutServer

    hot = {**SAMPLING, "temperature": 0.9, "top_k": 20, "top_p": 0.95}
    requests = [(prompt, hot) for prompt in ([5, 6], [7], [8, 9, 10, 11, 12]) for _ in range(3)]
    every = list(range(len(requests)))

    def run(max_num_seqs=16, seed=0, step=1, batches=(every,)):
        server = HFRolloutServer(rollout_config(seed=seed, max_num_seqs=max_num_seqs), {"path": str(policy_dir)})
        server.eos_ids, server.global_steps = [], step
        return server, multisets(server, requests, batches)

    server, together = run()
    assert all(len(set(tokens)) > 1 for tokens in together.values())  # the samples of a prompt differ
    assert run(batches=(every[::-1],))[1] == together
    assert run(max_num_seqs=1, batches=([i] for i in every[::2] + every[1::2]))[1] == together
    assert run(max_num_seqs=2, batches=(every[4:], every[:4]))[1] == together
    assert run(seed=1)[1] != together
    assert run(step=2)[1] != together
    outputs = generate_all(server, [requests[0][0]], [hot])  # log-probs: the raw logits at the temperature
    expected = reference_logprobs(server.model, requests[0][0], outputs[0].token_ids, 0.9)
    assert torch.allclose(torch.tensor(outputs[0].log_probs), expected, atol=1e-4)


def test_seeded_sampler_keeps_to_top_k_and_to_the_warped_distribution():
    """The sampler warps as transformers does: with top-k 2 only the two best tokens come out, in
    proportion to their renormalised probabilities at the temperature."""
    from recipe.rlmr.rollout.sampling import SeededSampler, sample_seed

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(4000, 1)
    sampler = SeededSampler([sample_seed(i) for i in range(4000)], temperature=0.5, top_p=1.0, top_k=2)
    forced = sampler(torch.zeros((4000, 1), dtype=torch.long), logits)
    tokens = forced.argmax(-1)
    assert torch.isfinite(forced).sum(-1).eq(1).all()  # exactly one token allowed per row
    assert set(tokens.tolist()) == {0, 1}
    expected = torch.softmax(torch.tensor([2.0, 1.0]) / 0.5, -1)[0].item()  # ~0.88
    assert abs(tokens.eq(0).float().mean().item() - expected) < 0.03
