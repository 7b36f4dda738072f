"""Loopback OpenAI-compatible chat servers (``POST /v1/chat/completions``), both on ``LoopbackServer``.

- ``HFChatServer(model_dir)`` (user-facing dev tool): a transformers causal LM behind the route (chat
  template, ``generate``; concurrent requests batched, each sampled from its own seed). What
  ``vllm serve`` offers, minus the speed: enough to run ``python -m evaluation generate`` end to end on CPU
  with a tiny model
  (``python -m recipe.rlmr.dev.tiny_assets policy-model DIR``). Not for real evaluation.
- ``ScriptedChatServer`` (test double, and the stand-in LLM of ``benchmarks/expand_throughput.py``):
  answers from a script or by rule, over real HTTP.

      ScriptedChatServer([Reply.task(...), Reply.error(503), ...], fallback=unique_task)
      ScriptedChatServer(lambda body: "content")      # a rule: the content for each request body

  A script's replies are taken in arrival order (then ``fallback(i)`` for request ``i``): a chat
  completion with given content, an HTTP status, a slow or never-finishing answer, or a 200 that is
  not a chat completion. A server answering by rule takes faults from ``inject(status_5xx=2, ...)``
  (``FAULTS``, in that order) or ``fault_for(body)``, and with ``gate=N`` holds each request until N
  are in flight (so a concurrency bound is reached and observable without timing). It can hold a
  fixed latency and a cap on requests served at once (``slots``). ``server.log`` counts requests,
  the most held at once and the answers by kind, and keeps the bodies (unless ``keep_bodies=False``).

In a process of its own (each prints ``READY_LINE`` + its url once it listens):

    python -m recipe.rlmr.dev.servers.chat hf MODEL_DIR [--port 8000] [--served-model-name NAME]
    python -m recipe.rlmr.dev.servers.chat scripted [--port 0] [--latency-ms 200] [--slots 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from recipe.rlmr.dev.servers.base import READY_LINE, LoopbackServer
from recipe.rlmr.rollout.sampling import SeededSampler, sample_seed

__all__ = ["READY_LINE", "GENRES", "HFChatServer", "Reply", "ScriptedChatServer", "completion", "unique_task"]


def completion(body: dict[str, Any], content: str, finish_reason: str = "stop", number: int = 0) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
    }


@dataclass(frozen=True)
class Reply:
    kind: str  # "content" | "status" | "slow" | "hang" | "not_chat" | "not_json"
    content: str = ""
    status: int = 200
    delay_s: float = 0.0

    @classmethod
    def text(cls, content: str) -> Reply:
        return cls("content", content)

    @classmethod
    def task(cls, prompt: str, constraints: list, genre: str | None = "poem", fence: bool = False) -> Reply:
        body = {"prompt": prompt, "constraints": constraints}
        if genre is not None:
            body["genre"] = genre
        text = json.dumps(body, ensure_ascii=False)
        return cls.text(f"Here is the task:\n```json\n{text}\n```" if fence else text)

    @classmethod
    def error(cls, status: int = 503) -> Reply:
        return cls("status", status=status)

    @classmethod
    def slow(cls, delay_s: float, content: str) -> Reply:
        return cls("slow", content, delay_s=delay_s)

    @classmethod
    def hang(cls) -> Reply:
        return cls("hang")

    @classmethod
    def not_chat(cls) -> Reply:
        return cls("not_chat")

    @classmethod
    def not_json(cls) -> Reply:
        return cls("not_json")


_SYLLABLES = [c + v for c in "bdfghklmnprstvz" for v in "aeiou"]
GENRES = ["poem", "short story", "letter", "speech", "fable", "diary entry", "song lyrics", "scene"]


def unique_task(i: int) -> Reply:
    """A valid expansion answer whose prompt shares almost no word pairs with any other i (made-up words)."""
    rng = random.Random(i)
    words = [rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES) for _ in range(8)]
    limit = rng.choice([80, 120, 200])
    genre = GENRES[i % len(GENRES)]
    prompt = f"Write a {genre} about {' '.join(words)}. Use at most {limit} words."
    rule = {"type": "rule", "instruction_id": "rlmr:word_range", "kwargs": {"max_words": limit}}
    return Reply.task(prompt, [rule], genre=genre)


class ScriptedChatServer(LoopbackServer):
    """Test double answering from a script or by rule; see the module docstring."""

    FAULTS = ("status_5xx", "bad_request", "not_json", "hang")
    _FAULT_REPLIES = {
        "status_5xx": Reply.error(503),
        "bad_request": Reply.error(400),
        "not_json": Reply.not_json(),
        "hang": Reply.hang(),
    }

    def __init__(
        self,
        script: list[Reply] | Callable[[dict[str, Any]], str] | None = None,
        fallback: Callable[[int], Reply] = unique_task,
        latency_s: float = 0.0,
        slots: int = 1024,
        keep_bodies: bool = True,
        gate: int = 1,
        gate_wait_s: float = 5.0,
    ):
        super().__init__(keep_bodies=keep_bodies)
        self.answer = script if callable(script) else None
        self.script = [] if callable(script) else list(script or [])
        self.fallback, self.latency_s, self.slots = fallback, latency_s, slots
        self.gate, self.gate_wait_s = gate, gate_wait_s
        self.faults: Counter = Counter()
        self.fault_for: Callable[[dict[str, Any]], str | None] | None = None  # per-request fault by rule
        self._lock = threading.Lock()
        self._crowd: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        """The url as OpenAI SDKs are given it (``/v1``); the chat client takes either."""
        return f"{self.url}/v1"

    @property
    def requests(self) -> int:
        return self.log.requests

    @property
    def max_in_flight(self) -> int:
        return self.log.max_in_flight

    @property
    def bodies(self) -> list:
        return self.log.bodies

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/chat/completions", self._chat)]

    def inject(self, **faults: int) -> None:
        """The next answers by rule fail this way, in FAULTS order (e.g. ``inject(status_5xx=2)``)."""
        with self._lock:
            self.faults.update(faults)

    def _take_fault(self, body: dict[str, Any]) -> str | None:
        with self._lock:
            for name in self.FAULTS:
                if self.faults[name] > 0:
                    self.faults[name] -= 1
                    return name
        return self.fault_for(body) if self.fault_for else None

    async def _wait_for_crowd(self) -> None:
        """Hold until ``gate`` requests are in flight; then all those held go on together."""
        if self._crowd is None:
            self._crowd = asyncio.Event()
        crowd = self._crowd
        if self.log.in_flight >= self.gate:
            crowd.set()
            self._crowd = asyncio.Event()
            return
        try:
            await asyncio.wait_for(crowd.wait(), self.gate_wait_s)
        except asyncio.TimeoutError:
            pass  # fewer requests than the gate are left: answer anyway

    async def _start(self, port: int = 0) -> None:
        self._semaphore = asyncio.Semaphore(self.slots)
        await super()._start(port)

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        number = self.arrived(request, body)
        reply = None
        if self.answer is None:  # a script: its replies in arrival order
            reply = self.script.pop(0) if self.script else self.fallback(number)
        async with self._semaphore:
            with self.track():
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                if self.gate > 1:
                    await self._wait_for_crowd()
                if reply is None:
                    fault = self._take_fault(body)
                    if fault is not None:
                        reply = self._FAULT_REPLIES[fault]
                    else:
                        content = await asyncio.get_running_loop().run_in_executor(None, self.answer, body)
                        reply = Reply.text(content)
                if reply.kind == "hang":
                    await self.hang()
                if reply.kind == "slow":
                    await asyncio.sleep(reply.delay_s)
                self.log.answered[reply.kind] += 1
                if reply.kind == "status":
                    error = {"error": {"message": "scripted failure", "code": reply.status}}
                    return web.json_response(error, status=reply.status)
                if reply.kind == "not_chat":
                    return web.json_response({"object": "list", "data": []})
                if reply.kind == "not_json":
                    return web.Response(text="<html>bad gateway</html>", content_type="text/html")
                return web.json_response(completion(body, reply.content, number=number + 1))


class HFChatServer(LoopbackServer):
    """User-facing dev tool: chat completions from a transformers model folder; greedy at temperature 0,
    else sampled.

    Requests that arrive together are generated together: a request that finds the model idle waits
    ``batch_window_s`` for company, then every queued request with the same sampling settings
    (temperature, top_p, max_tokens) runs as one left-padded batch of at most ``max_batch_size`` rows
    (1: one request at a time, the old behaviour, kept for benchmarks). Each sampled request draws from
    its own generator (``recipe.rlmr.rollout.sampling.SeededSampler``), so its answer does not depend on
    which requests shared its batch: with a ``seed`` in the body the answer is reproducible (same seed,
    same messages, same settings: same text, as OpenAI's ``seed`` promises); without one the server
    draws a fresh seed per request, so repeated requests give different samples.
    """

    def __init__(
        self,
        model_dir: str,
        served_model_name: str | None = None,
        max_batch_size: int = 32,
        batch_window_s: float = 0.02,
        seed: int = 0,
    ):
        super().__init__()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
        self.served_model_name = served_model_name
        self.max_batch_size, self.batch_window_s = max_batch_size, batch_window_s
        self._torch = torch
        self._rng = random.Random(seed)  # seeds of requests that bring none
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos_ids = sorted(
            {*eos, *([self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else [])}
        )
        self.stats = Counter()  # batches, rows, max_rows
        self._queue: list[dict[str, Any]] = []
        self._draining: asyncio.Task | None = None
        self._model_lock: asyncio.Lock | None = None

    @property
    def requests(self) -> int:
        return self.log.requests

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/chat/completions", self._chat)]

    def _prepare(self, body: dict[str, Any]) -> dict[str, Any]:
        """A queued request: prompt ids, the settings a batch shares, and its own seed."""
        ids = self.tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, return_dict=True)[
            "input_ids"
        ]
        temperature = float(body.get("temperature", 1.0))
        top_p = float(body.get("top_p") or 1.0)
        max_new = int(body.get("max_tokens") or 256)
        settings = (temperature, top_p if temperature > 0 else 1.0, max_new)
        if body.get("seed") is not None:
            seed = sample_seed(int(body["seed"]), settings, list(ids))
        else:
            seed = self._rng.getrandbits(63)
        return {"ids": list(ids), "settings": settings, "seed": seed}

    def _generate_batch(self, batch: list[dict[str, Any]]) -> list[tuple[str, str]]:
        torch = self._torch
        from transformers import LogitsProcessorList

        temperature, top_p, max_new = batch[0]["settings"]
        width = max(len(r["ids"]) for r in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, request in enumerate(batch):  # left padding: generation starts at the same column
            input_ids[row, width - len(request["ids"]) :] = torch.tensor(request["ids"])
            attention_mask[row, width - len(request["ids"]) :] = 1
        options: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": self.pad_id, "eos_token_id": self.eos_ids}
        if temperature > 0:
            sampler = SeededSampler([r["seed"] for r in batch], temperature, top_p, 0)
            options.update(do_sample=True, top_k=None, top_p=None, temperature=None)
            options["logits_processor"] = LogitsProcessorList([sampler])
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)[:, width:]
        self.stats.update(batches=1, rows=len(batch))
        self.stats["max_rows"] = max(self.stats["max_rows"], len(batch))
        answers = []
        for row in out.tolist():
            stop = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
            tokens = row[:stop] if stop is not None else row
            finish = "stop" if stop is not None else "length"
            answers.append((self.tokenizer.decode(tokens, skip_special_tokens=True), finish))
        return answers

    async def _drain(self) -> None:
        """Generate queued requests, batch by batch, until the queue is empty."""
        while self._queue:
            await asyncio.sleep(self.batch_window_s)  # let the rest of a burst arrive
            settings = self._queue[0]["settings"]
            batch = [r for r in self._queue if r["settings"] == settings][: self.max_batch_size]
            taken = set(map(id, batch))
            self._queue = [r for r in self._queue if id(r) not in taken]
            try:
                answers = await asyncio.to_thread(self._generate_batch, batch)
            except Exception as error:  # every waiting request learns why; none hangs
                for request in batch:
                    request["done"].set_exception(error)
                continue
            for request, answer in zip(batch, answers, strict=True):
                request["done"].set_result(answer)

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.served_model_name and body.get("model") != self.served_model_name:
            return web.json_response({"error": {"message": f"model {body.get('model')!r} not served"}}, status=404)
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return web.json_response({"error": {"message": "'messages' must be a non-empty list"}}, status=400)
        number = self.arrived(request, body)
        with self.track():
            queued = self._prepare(body)
            queued["done"] = asyncio.get_running_loop().create_future()
            self._queue.append(queued)
            if self._draining is None or self._draining.done():
                self._draining = asyncio.create_task(self._drain())
            text, finish = await queued["done"]
        return web.json_response(completion(body, text, finish, number=number + 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="kind", required=True)
    hf = kinds.add_parser("hf", help="a transformers causal LM folder (with a chat template)")
    hf.add_argument("model_dir", help="a transformers causal LM folder (with a chat template)")
    hf.add_argument("--port", type=int, default=8000)
    hf.add_argument("--served-model-name", default=None, help="refuse requests for other model names")
    hf.add_argument("--max-batch-size", type=int, default=32, help="requests generated together (1: one at a time)")
    scripted = kinds.add_parser("scripted", help="answers unique valid expansion tasks (expand's benchmark)")
    scripted.add_argument("--port", type=int, default=0)
    scripted.add_argument("--latency-ms", type=float, default=200.0)
    scripted.add_argument("--slots", type=int, default=1024)
    args = parser.parse_args(argv)
    if args.kind == "hf":
        server = HFChatServer(args.model_dir, args.served_model_name, max_batch_size=args.max_batch_size)
    else:
        server = ScriptedChatServer(latency_s=args.latency_ms / 1000, slots=args.slots, keep_bodies=False)
    server.serve_forever(args.port)


if __name__ == "__main__":
    main()
