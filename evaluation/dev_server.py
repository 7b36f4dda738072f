"""Loopback OpenAI-compatible chat servers for development and tests (not for real evaluation).

- ``HFChatServer(model_dir)``: ``POST /v1/chat/completions`` in front of a transformers causal LM
  (chat template, ``generate``; one generation at a time, the others wait). What ``vllm serve``
  offers, minus the speed: enough to run ``generate`` end to end on CPU with a tiny model
  (``python -m recipe.rlmr.dev.tiny_assets policy-model DIR``).
- ``ScriptedChatServer(answer)``: the same route, answered by ``answer(body) -> str`` (the content)
  or by a scripted fault: HTTP 5xx, HTTP 400, a body that is not JSON, or a hang. It counts requests and the
  most requests it ever held at once (``max_in_flight``), and can hold each request until ``gate``
  requests are in flight (so a concurrency bound is reached and observable without timing).

Both run on their own event loop in a daemon thread: ``with HFChatServer(dir) as server: server.url``.

    python -m evaluation.dev_server MODEL_DIR --port 8000 --served-model-name tiny
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web


def completion(body: dict[str, Any], content: str, finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-dev",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
    }


class _Server:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def _start(self, port: int) -> None:
        app = web.Application()
        app.add_routes([web.post("/v1/chat/completions", self._chat), web.get("/health", self._health)])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    def __enter__(self):
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(0), self._loop).result(timeout=60)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


class HFChatServer(_Server):
    """Chat completions from a transformers model folder; greedy at temperature 0, else sampled."""

    def __init__(self, model_dir: str, served_model_name: str | None = None):
        super().__init__()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
        self.served_model_name = served_model_name
        self._torch = torch
        self._lock = threading.Lock()
        self.requests = 0

    def _generate(self, body: dict[str, Any]) -> tuple[str, str]:
        torch = self._torch
        ids = self.tokenizer.apply_chat_template(
            body["messages"], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        max_new = int(body.get("max_tokens") or 256)
        temperature = float(body.get("temperature", 1.0))
        options: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": self.tokenizer.pad_token_id}
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature, top_p=float(body.get("top_p", 1.0)))
        else:
            options.update(do_sample=False, temperature=None, top_p=None)
        with self._lock, torch.no_grad():
            if "seed" in body:
                torch.manual_seed(int(body["seed"]))
            out = self.model.generate(ids, **options)[0, ids.shape[1] :]
        finished = bool(len(out)) and int(out[-1]) == self.tokenizer.eos_token_id
        text = self.tokenizer.decode(out, skip_special_tokens=True)
        return text, "stop" if finished or len(out) < max_new else "length"

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.served_model_name and body.get("model") != self.served_model_name:
            return web.json_response({"error": {"message": f"model {body.get('model')!r} not served"}}, status=404)
        self.requests += 1
        text, finish = await asyncio.get_running_loop().run_in_executor(None, self._generate, body)
        return web.json_response(completion(body, text, finish))


class ScriptedChatServer(_Server):
    """Answers by rule, with scripted faults; see the module docstring."""

    FAULTS = ("status_5xx", "bad_request", "not_json", "hang")

    def __init__(self, answer: Callable[[dict[str, Any]], str], gate: int = 1, gate_wait_s: float = 5.0):
        super().__init__()
        self.answer = answer
        self.gate, self.gate_wait_s = gate, gate_wait_s
        self.faults: Counter = Counter()
        self.fault_for: Callable[[dict[str, Any]], str | None] | None = None  # per-request fault by rule
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._crowd: asyncio.Event | None = None

    def inject(self, **faults: int) -> None:
        """The next answers fail this way, in FAULTS order (e.g. ``inject(status_5xx=2)``)."""
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
        if self.in_flight >= self.gate:
            crowd.set()
            self._crowd = asyncio.Event()
            return
        try:
            await asyncio.wait_for(crowd.wait(), self.gate_wait_s)
        except asyncio.TimeoutError:
            pass  # fewer requests than the gate are left: answer anyway

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.requests += 1
            self.bodies.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate > 1:
                await self._wait_for_crowd()
            fault = self._take_fault(body)
            if fault == "hang":
                await asyncio.sleep(3600)
            if fault == "status_5xx":
                return web.json_response({"error": {"message": "scripted failure"}}, status=503)
            if fault == "bad_request":
                return web.json_response({"error": {"message": "scripted bad request"}}, status=400)
            if fault == "not_json":
                return web.Response(text="<html>bad gateway</html>", content_type="text/html")
            content = await asyncio.get_running_loop().run_in_executor(None, self.answer, body)
            return web.json_response(completion(body, content))
        finally:
            self.in_flight -= 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a transformers causal LM folder (with a chat template)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=None, help="refuse requests for other model names")
    args = parser.parse_args()
    server = HFChatServer(args.model_dir, args.served_model_name)
    asyncio.set_event_loop(server._loop)
    server._loop.run_until_complete(server._start(args.port))
    print(json.dumps({"url": server.url}), flush=True)
    server._loop.run_forever()


if __name__ == "__main__":
    main()
