"""An ``hf`` rollout for verl: transformers' ``generate`` behind verl's replica interface.

Three pieces, in the places verl looks for them (registered by name in ``recipe.rlmr.rollout``):

``HFRolloutServer``   a Ray actor holding an ``AutoModelForCausalLM`` on one device. The agent
                      loop calls ``generate`` once per trajectory, concurrently; requests that
                      arrive while a batch runs are queued and run together as the next batch
                      (grouped by sampling parameters), so ``generate`` sees as many rows as are
                      waiting.
``HFReplica``         ``RolloutReplica`` subclass (``RolloutReplicaRegistry`` name ``hf``) that
                      starts one server per replica, on the node and the device of the replica's
                      first worker (``rollout_device``).
``HFServerAdapter``   the actor-side ``BaseRollout`` (``_ROLLOUT_REGISTRY[("hf", "async")]``).
                      After each step verl hands it the full ``(name, tensor)`` weights; it
                      copies them to host tensors and ships them to its server through Ray's
                      object store, then tells the server the new ``global_steps``.

Device and dtype: the server generates on the GPU its replica's first worker trains on (same
visible devices, same index), in ``rollout.dtype``; when that worker has no GPU (the CPU backend,
or a CPU-only machine) it generates on CPU in float32, which CPUs run fastest and which the CPU
launcher's fp32 actor reproduces to ~1e-7. ``RLMR_HF_ROLLOUT_DEVICE=cpu`` keeps it on CPU anyway.
Every tensor the server builds is built on the model's device, and every tensor it receives
(weights from the object store arrive on the host) is copied onto it; what it hands back
(token ids, log-probs, ``get_weight``) is on the host.

Log-probs are ``log_softmax(logits / temperature)`` of the chosen token, the quantity verl's
actor recomputes, so ``training/rollout_probs_diff_*`` measures only numerical drift when the
weights are in sync. Greedy requests (temperature 0) report log-probs at temperature 1.

Seeded sampling: a sampled request draws its tokens from its own generator, seeded from what
identifies it, never from the process RNG, so its tokens do not depend on how requests happen to
be batched (``SeededSampler``). The identity is (rollout seed, replica rank, ``global_steps``,
sampling settings, prompt token ids, k), where k counts the earlier requests of the same step with
the same prompt and settings: the n samples of a group are exchangeable, so whatever order they
arrive in, a prompt gets the same multiset of responses. Two runs with the same seed and the same
weights (two arms at step 1) therefore roll out the same responses.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

from recipe.rlmr.rollout.sampling import SeededSampler, sample_seed

BATCH_WINDOW_S = 0.01  # how long a request that finds the server idle waits for company
DEVICE_ENV = "RLMR_HF_ROLLOUT_DEVICE"  # "auto" (default): the worker's GPU if it has one; "cpu": always CPU
THREADS_ENV = "RLMR_HF_ROLLOUT_THREADS"  # torch threads of a CPU server (default: the process's)


def server_actor_name(replica_rank: int, name_suffix: str = "") -> str:
    """The Ray actor name the replica gives its server and the adapter looks up."""
    return f"rlmr_hf_server_{replica_rank}{name_suffix}"


@dataclass(frozen=True)
class WorkerDevice:
    """Where a replica's first worker computes, as that worker sees it.

    ``kind`` is verl's device name there ("cuda", "cpu", ...); ``index`` is its torch device index
    when it holds a usable GPU, else None; ``visible_envvar``/``visible`` name the platform's
    visible-devices variable and its value in the worker (None: unset), which the server copies
    so that the same index means the same GPU in both processes.
    """

    kind: str
    index: int | None = None
    visible_envvar: str | None = None
    visible: str | None = None

    @property
    def has_gpu(self) -> bool:
        return self.kind == "cuda" and self.index is not None


def describe_worker_device() -> WorkerDevice:
    """Run inside a verl worker: the device its engine uses (verl's platform, then torch)."""
    from verl.plugin.platform import get_platform
    from verl.utils.device import get_device_name

    kind = get_device_name()
    if kind != "cuda" or not torch.cuda.is_available():
        return WorkerDevice(kind=kind)  # verl names "cuda" on a CPU-only machine too: no usable GPU
    envvar = get_platform().visible_devices_envvar()
    return WorkerDevice(kind, torch.cuda.current_device(), envvar, os.environ.get(envvar))


def rollout_device(worker: WorkerDevice | None, requested: str = "auto") -> str:
    """The torch device the server generates on: the worker's GPU (``cuda:<its index>``) when it
    has one and ``requested`` is "auto", else "cpu". ``requested`` is ``$RLMR_HF_ROLLOUT_DEVICE``."""
    requested = (requested or "auto").strip().lower()
    if requested not in ("auto", "cpu"):
        raise ValueError(f"{DEVICE_ENV}={requested!r}: expected 'auto' (the worker's GPU if it has one) or 'cpu'")
    if requested == "cpu" or worker is None or not worker.has_gpu:
        return "cpu"
    return f"cuda:{worker.index}"


def server_env_vars(worker: WorkerDevice | None, device: str, noset_envvars: list[str]) -> dict[str, str]:
    """Environment the server's Ray actor needs so that ``device`` names the worker's GPU there.

    The server asks Ray for no GPU (it shares the worker's), so Ray must leave the visible-devices
    variable alone (verl's ``RAY_EXPERIMENTAL_NOSET_*`` names, as verl's vLLM servers do) and the
    server gets the worker's value of it. A CPU server needs nothing."""
    if device == "cpu" or worker is None:
        return {}
    env = {name: "1" for name in noset_envvars}
    if worker.visible_envvar and worker.visible is not None:
        env[worker.visible_envvar] = worker.visible
    return env


def rollout_dtype(device: str, configured: str) -> torch.dtype:
    """float32 on CPU (bf16 is slow there); ``actor_rollout_ref.rollout.dtype`` on a GPU."""
    if device == "cpu":
        return torch.float32
    from verl.utils.torch_dtypes import PrecisionType

    try:
        return PrecisionType.to_dtype(configured)
    except RuntimeError:
        raise ValueError(
            f"actor_rollout_ref.rollout.dtype={configured!r}: expected bfloat16, float16 or float32"
        ) from None


def _model_path(model_config) -> str:
    local = getattr(model_config, "local_path", None)
    if local:
        return local
    return model_config["path"] if hasattr(model_config, "__getitem__") else model_config.path


@dataclass
class _Request:
    prompt_ids: list[int]
    max_tokens: int
    sampling: tuple  # (temperature, top_p, top_k, repetition_penalty): one batch shares these
    want_logprobs: bool
    done: asyncio.Future = field(repr=False)
    sample_seed: int = 0  # seeds this request's own generator (sample_seed())


class _StopWhenAborted:
    """A transformers stopping criterion that ends the running batch once ``event`` is set."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        # on input_ids' device: generate combines it with its own per-row flags there
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class HFRolloutServer:
    """Token-in/token-out generation with a transformers model on ``device`` (one per replica).

    ``device`` is a torch device ("cpu", "cuda:0", ...), normally ``rollout_device(...)`` as the
    replica resolved it; the dtype follows from it (``rollout_dtype``)."""

    def __init__(
        self, config, model_config, replica_rank: int = 0, num_threads: int | None = None, device: str = "cpu"
    ):
        from transformers import AutoModelForCausalLM, StoppingCriteriaList

        self.config = omega_conf_to_dataclass(config)
        self.replica_rank = replica_rank
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"hf rollout: asked to generate on {device} but this process sees no GPU "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
                f"set {DEVICE_ENV}=cpu to keep the rollout on CPU"
            )
        if num_threads:
            torch.set_num_threads(num_threads)
        # sampling draws from each request's own generator (SeededSampler); the process RNG is
        # seeded too, for anything else that draws from it
        torch.manual_seed(int(getattr(self.config, "seed", 0) or 0) + replica_rank)
        path = _model_path(model_config)
        self.dtype = rollout_dtype(str(self.device), self.config.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype, attn_implementation="sdpa")
        self.model.to(self.device)
        self.model.eval()
        generation = self.model.generation_config
        self.eos_ids = self._as_list(generation.eos_token_id) or self._as_list(self.model.config.eos_token_id)
        pad = generation.pad_token_id if generation.pad_token_id is not None else self.model.config.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0)
        self.max_batch = max(1, int(self.config.max_num_seqs or 1))
        self.global_steps = None
        self.weight_version = 0
        self.seed = int(getattr(self.config, "seed", 0) or 0)
        self._occurrences: dict = {}  # (sampling, prompt ids) -> requests seen this step (SeededSampler)
        self._occurrences_step = None

        self._queue: list[_Request] = []
        self._worker: asyncio.Task | None = None
        self._model_lock = asyncio.Lock()  # a batch and a weight load never overlap
        self._abort = threading.Event()  # read by the stopping criterion inside generate
        self._open = asyncio.Event()  # generation gate (abort_all_requests / resume_generation)
        self._open.set()
        self._reject = False
        self._stopping = StoppingCriteriaList([_StopWhenAborted(self._abort)])
        self.stats = {"requests": 0, "batches": 0, "rows": 0, "max_rows": 0, "generate_s": 0.0, "weight_updates": 0}

    def _aborted(self) -> TokenOutput:
        """The answer to a request that never reached the model."""
        return TokenOutput(token_ids=[], stop_reason="aborted", extra_fields={"global_steps": self.global_steps})

    @staticmethod
    def _as_list(ids) -> list[int]:
        if ids is None:
            return []
        return list(ids) if isinstance(ids, (list, tuple)) else [int(ids)]

    # ---- generation -------------------------------------------------------------------------

    def _max_tokens(self, prompt_len: int, sampling_params: dict) -> int:
        limit = sampling_params.get("max_tokens", sampling_params.get("max_new_tokens"))
        response_length = self.config.response_length
        budget = min(response_length, self.config.prompt_length + response_length - prompt_len)
        return max(1, min(int(limit), budget) if limit is not None else budget)

    async def generate(
        self,
        request_id: str,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        **kwargs,
    ) -> TokenOutput:
        if image_data or video_data or kwargs.get("audio_data"):
            raise NotImplementedError("the hf rollout serves text only")
        if not self._open.is_set():
            if self._reject:
                return self._aborted()
            await self._open.wait()
        temperature = float(sampling_params.get("temperature", 1.0))
        top_k = int(sampling_params.get("top_k", -1))
        sampling = (
            temperature,
            float(sampling_params.get("top_p", 1.0)),
            top_k if top_k > 0 else 0,
            float(sampling_params.get("repetition_penalty", 1.0)),
        )
        max_tokens = self._max_tokens(len(prompt_ids), sampling_params)
        request = _Request(
            prompt_ids=list(prompt_ids),
            max_tokens=max_tokens,
            sampling=sampling,
            want_logprobs=bool(sampling_params.get("logprobs", False)),
            done=asyncio.get_running_loop().create_future(),
            sample_seed=self._sample_seed(list(prompt_ids), sampling, max_tokens),
        )
        self._queue.append(request)
        self.stats["requests"] += 1
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await request.done

    def _sample_seed(self, prompt_ids: list[int], sampling: tuple, max_tokens: int) -> int:
        """The seed of this request's generator: its identity (module docstring), k included."""
        if self._occurrences_step != self.global_steps:
            self._occurrences, self._occurrences_step = {}, self.global_steps
        key = (sampling, max_tokens, tuple(prompt_ids))
        k = self._occurrences.get(key, 0)
        self._occurrences[key] = k + 1
        return sample_seed(self.seed, self.replica_rank, self.global_steps, sampling, max_tokens, prompt_ids, k)

    async def _drain(self) -> None:
        """Run queued requests in batches until the queue is empty."""
        while self._queue:
            # the agent loop sends a step's requests within milliseconds of each other: wait
            # briefly so the first one does not run alone
            await asyncio.sleep(BATCH_WINDOW_S)
            if not self._queue:  # abort_all_requests answered them meanwhile
                break
            first = self._queue[0].sampling
            batch = [r for r in self._queue if r.sampling == first][: self.max_batch]
            taken = set(map(id, batch))
            self._queue = [r for r in self._queue if id(r) not in taken]
            try:
                async with self._model_lock:
                    outputs = await asyncio.to_thread(self._generate_batch, batch)
            except Exception as error:  # every waiting request learns why, none hangs
                for request in batch:
                    if not request.done.done():
                        request.done.set_exception(error)
                continue
            for request, output in zip(batch, outputs, strict=True):
                if not request.done.done():
                    request.done.set_result(output)

    @torch.no_grad()
    def _generate_batch(self, batch: list[_Request]) -> list[TokenOutput]:
        from transformers import LogitsProcessorList

        temperature, top_p, top_k, repetition_penalty = batch[0].sampling
        width = max(len(r.prompt_ids) for r in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, request in enumerate(batch):  # left padding: every row ends where generation starts
            input_ids[row, width - len(request.prompt_ids) :] = torch.tensor(request.prompt_ids)
            attention_mask[row, width - len(request.prompt_ids) :] = 1
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)  # built on host, once
        sample = temperature > 0
        sampler = SeededSampler([r.sample_seed for r in batch], temperature, top_p, top_k) if sample else None
        started = time.perf_counter()
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max(r.max_tokens for r in batch),
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=top_p if sample else None,
            top_k=top_k if sample else None,
            repetition_penalty=repetition_penalty,
            eos_token_id=self.eos_ids or None,
            pad_token_id=self.pad_id,
            stopping_criteria=self._stopping,
            logits_processor=LogitsProcessorList([sampler]) if sampler else None,
            return_dict_in_generate=True,
            output_logits=any(r.want_logprobs for r in batch),
        )
        aborted = self._abort.is_set()
        new_tokens = out.sequences[:, width:]  # (rows, steps)
        logprobs = None
        if out.logits:
            logits = torch.stack(out.logits, dim=1).float()  # (rows, steps, vocab): raw, before warpers
            scaled = torch.log_softmax(logits / (temperature if sample else 1.0), dim=-1)
            logprobs = scaled.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1).cpu()  # (rows, steps)
        new_tokens = new_tokens.cpu()  # one transfer; the per-row lists below read host memory
        self.stats["batches"] += 1
        self.stats["rows"] += len(batch)
        self.stats["max_rows"] = max(self.stats["max_rows"], len(batch))
        self.stats["generate_s"] += time.perf_counter() - started

        outputs = []
        for row, request in enumerate(batch):
            tokens = new_tokens[row, : request.max_tokens].tolist()
            finished = next((i for i, t in enumerate(tokens) if t in self.eos_ids), None)
            if finished is not None:
                tokens = tokens[: finished + 1]  # keep the stop token, as vLLM does
            outputs.append(
                TokenOutput(
                    token_ids=tokens,
                    log_probs=logprobs[row, : len(tokens)].tolist()
                    if (request.want_logprobs and logprobs is not None)
                    else None,
                    stop_reason="aborted"
                    if (aborted and finished is None and len(tokens) < request.max_tokens)
                    else "completed",
                    extra_fields={"global_steps": self.global_steps},
                )
            )
        return outputs

    # ---- weights ----------------------------------------------------------------------------

    async def update_weights(self, named_tensors: dict[str, torch.Tensor], global_steps: int | None = None) -> dict:
        """Copy ``named_tensors`` (full HF-named tensors, any device and float dtype) into the model,
        onto its device and dtype; unknown names and wrong shapes are an error."""
        async with self._model_lock:
            # state_dict, not named_parameters: tied weights (lm_head = embed_tokens) keep both names
            targets = self.model.state_dict(keep_vars=True)
            unknown = sorted(set(named_tensors) - set(targets))
            if unknown:
                raise KeyError(f"hf rollout: weights the model does not have: {unknown[:5]} ({len(unknown)} in all)")
            with torch.no_grad():
                for name, tensor in named_tensors.items():
                    target = targets[name]
                    if target.shape != tensor.shape:
                        raise ValueError(
                            f"hf rollout: {name} has shape {tuple(tensor.shape)}, model expects {tuple(target.shape)}"
                        )
                    target.copy_(tensor)  # copy_ moves host tensors onto the model's device and casts to its dtype
            self.weight_version += 1
            self.stats["weight_updates"] += 1
            if global_steps is not None:
                self.global_steps = global_steps
            return {"updated": len(named_tensors), "weight_version": self.weight_version}

    async def get_weight(self, name: str) -> torch.Tensor:
        """One parameter, in the server's dtype, on the host (for checks that weight sync happened)."""
        return dict(self.model.named_parameters())[name].detach().to("cpu", copy=True)

    async def get_stats(self) -> dict:
        return dict(
            self.stats,
            weight_version=self.weight_version,
            global_steps=self.global_steps,
            device=str(self.device),
            dtype=str(self.dtype).removeprefix("torch."),
            node_id=ray.get_runtime_context().get_node_id(),
        )

    # ---- partial rollout: abort and resume --------------------------------------------------

    async def abort_all_requests(self, reject_request: bool = False) -> dict:
        """Close the gate, end the running batch early (its rows come back "aborted") and answer
        queued requests "aborted" at once. New requests wait for ``resume_generation`` (or are
        answered "aborted" when ``reject_request``)."""
        self._open.clear()
        self._reject = reject_request
        self._abort.set()
        queued, self._queue = self._queue, []
        for request in queued:
            if not request.done.done():
                request.done.set_result(self._aborted())
        async with self._model_lock:  # wait for the running batch to stop
            pass
        return {"aborted_count": len(queued)}

    async def resume_generation(self) -> None:
        self._abort.clear()
        self._reject = False
        self._open.set()

    # ---- memory management: the weights stay where they are (small models), so these have ----
    # ---- nothing to free but the KV-cache blocks torch's allocator keeps on a GPU          ----

    async def wake_up(self):
        return None

    async def sleep(self):
        async with self._model_lock:  # let a running batch finish first
            if self.device.type == "cuda":  # hand the cached KV blocks back to the actor's process
                torch.cuda.empty_cache()
            return None

    async def clear_kv_cache(self):
        return None

    async def release_kv_cache(self):
        return None

    async def resume_kv_cache(self):
        return None

    async def start_profile(self, **kwargs):
        return None

    async def stop_profile(self):
        return None


def _node_and_device(worker) -> tuple[str, WorkerDevice]:
    """Run inside the replica's first worker (through ``__ray_call__``)."""
    return ray.get_runtime_context().get_node_id(), describe_worker_device()


class HFReplica(RolloutReplica):
    """One ``HFRolloutServer`` per replica, on the node and the device of the replica's first worker.

    The server asks Ray for no CPU and no GPU: it shares the worker's (as verl's hybrid engines
    share theirs), so it is placed by node affinity and finds the GPU through ``server_env_vars``.
    """

    async def launch_servers(self):
        from verl.plugin.platform import get_platform

        name = server_actor_name(self.replica_rank, self.name_suffix)
        options = {"name": name, "max_concurrency": self.max_concurrency, "num_cpus": 0}
        worker = None
        if self.workers:
            node_id, worker = await self.workers[0].__ray_call__.remote(_node_and_device)
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
        device = rollout_device(worker, os.environ.get(DEVICE_ENV, "auto"))
        env_vars = server_env_vars(worker, device, get_platform().ray_noset_envvars())
        if env_vars:
            options["runtime_env"] = {"env_vars": env_vars}
        threads = int(os.environ.get(THREADS_ENV, "0")) or None
        server = (
            ray.remote(HFRolloutServer)
            .options(**options)
            .remote(
                config=self.config,
                model_config=self.model_config,
                replica_rank=self.replica_rank,
                num_threads=threads,
                device=device,
            )
        )
        stats = await server.get_stats.remote()  # raises here if the model failed to load
        # one line per replica in the trainer's log: on a multi-node cluster, where each replica landed
        print(
            f"hf rollout replica {self.replica_rank} on node {stats['node_id']} generates on {stats['device']} "
            f"in {stats['dtype']}",
            flush=True,
        )
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"hf-replica-{self.replica_rank}{self.name_suffix}"  # a key only: no HTTP


class HFServerAdapter(BaseRollout):
    """Lives in each trainer process; the first rank of each rollout replica owns the server."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        rollout_world_size = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        rank = int(os.environ.get("RANK", "0"))
        self.replica_rank = rank // rollout_world_size if replica_rank == -1 else replica_rank
        self.owns_server = rank % rollout_world_size == 0
        self._server = None

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]):
        return None  # weights and cache stay in host memory

    async def release(self):
        return None

    async def update_weights(
        self, weights, wire_format: str = "named_tensors", global_steps: int | None = None, **kwargs
    ):
        if wire_format != "named_tensors":
            raise NotImplementedError(f"the hf rollout takes full named tensors, not wire_format={wire_format!r}")
        if kwargs.get("peft_config") is not None and kwargs.get("base_sync_done", True):
            raise NotImplementedError("the hf rollout does not load LoRA adapters; set model.lora.merge=True")
        # Every rank walks the generator: building full tensors from FSDP shards is collective.
        if not self.owns_server:
            for _ in weights:
                pass
            return None
        state = {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in weights}
        return await self._server_handle().update_weights.remote(state, global_steps=global_steps)


__all__ = [
    "HFReplica",
    "HFRolloutServer",
    "HFServerAdapter",
    "SeededSampler",
    "WorkerDevice",
    "describe_worker_device",
    "rollout_device",
    "rollout_dtype",
    "sample_seed",
    "server_actor_name",
    "server_env_vars",
]
