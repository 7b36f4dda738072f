"""Scripted loopback servers for fault tests and benchmarks: not models.

A 72B judge cannot run here, so ``FakeJudge`` speaks the real OpenAI chat-completions wire
protocol and decides by rule: a constraint is satisfied when the response contains the phrase
quoted in it ('like this'); unquoted constraints are satisfied. Faults are scripted per server:
the next N answers can be HTTP 5xx, malformed JSON, truncated JSON, hang, be wrong (the
opposite verdict, a negated score), or come in another protocol's shape. ``FakeRM`` answers
vLLM ``/classify`` with a score derived from the text. Both can hold a fixed service time and a
concurrency cap (``slots``), which is what the throughput benchmark needs.

Servers run on their own event loop in a daemon thread: ``with FakeJudge(...) as judge: judge.url``,
or in a process of their own (what the benchmark does, so they do not share the client's GIL):

    python -m rewards.fake_servers judge [--port N] --service-ms 150 --slots 64

Both bind the port they are given, by default 0 (any free port), and report the port they got:
``server.port`` in a thread, a line ``rewards.fake_servers listening on http://127.0.0.1:PORT`` on
stdout as a process. Nothing probes a free port and binds it later.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field, fields

from aiohttp import web

READY_LINE = "rewards.fake_servers listening on "  # followed by http://127.0.0.1:PORT, the port actually bound


@dataclass
class Faults:
    """Faults to inject into the next answers, consumed in this order."""

    status_5xx: int = 0
    malformed: int = 0
    truncated: int = 0
    hang: int = 0
    wrong: int = 0  # a well-formed answer with the opposite verdicts (judge) or a negated score (RM)
    status_429: int = 0  # HTTP 429 Too Many Requests (worth retrying)
    status_400: int = 0  # HTTP 400 Bad Request (not worth retrying)
    wrong_shape: int = 0  # valid JSON in another protocol's shape (RM: SGLang rows; judge: prose, no verdict JSON)


@dataclass
class ServerLog:
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    answered: Counter = field(default_factory=Counter)
    bodies: list = field(default_factory=list)  # with keep_bodies: each request's JSON body
    headers: list = field(default_factory=list)  # with keep_bodies: each request's headers (a dict)


class _LoopbackServer:
    def __init__(self, service_time_s: float = 0.0, slots: int = 1024, keep_bodies: bool = False):
        self.service_time_s, self.slots, self.keep_bodies = service_time_s, slots, keep_bodies
        self.faults = Faults()
        self.log = ServerLog()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def inject(self, **faults: int) -> None:
        with self._lock:
            for name, count in faults.items():
                setattr(self.faults, name, getattr(self.faults, name) + count)

    def _take_fault(self) -> str | None:
        with self._lock:
            for name in (f.name for f in fields(Faults)):
                if getattr(self.faults, name) > 0:
                    setattr(self.faults, name, getattr(self.faults, name) - 1)
                    return name
        return None

    async def _serve(self, request: web.Request, answer) -> web.Response:
        """Common path: count, cap concurrency, apply the next fault, wait the service time."""
        body = await request.json()
        self.log.requests += 1
        if self.keep_bodies:
            self.log.bodies.append(body)
            self.log.headers.append(dict(request.headers))
        async with self._semaphore:
            self.log.in_flight += 1
            self.log.max_in_flight = max(self.log.max_in_flight, self.log.in_flight)
            try:
                fault = self._take_fault()
                if fault == "hang":
                    await asyncio.sleep(3600)
                if self.service_time_s:
                    await asyncio.sleep(self.service_time_s)
                if fault == "status_5xx":
                    self.log.answered["5xx"] += 1
                    return web.json_response({"error": {"message": "scripted failure", "code": 503}}, status=503)
                if fault in ("status_429", "status_400"):
                    status = int(fault.removeprefix("status_"))
                    self.log.answered[str(status)] += 1
                    return web.json_response({"error": {"message": "scripted failure", "code": status}}, status=status)
                if fault == "wrong_shape":
                    self.log.answered["wrong_shape"] += 1
                    return web.json_response(self.wrong_shape_answer(body))
                payload = json.dumps(answer(body, wrong=fault == "wrong"))
                if fault == "malformed":
                    self.log.answered["malformed"] += 1
                    return web.Response(text="<html>bad gateway</html>", content_type="application/json")
                if fault == "truncated":
                    self.log.answered["truncated"] += 1
                    return web.Response(text=payload[: len(payload) // 2], content_type="application/json")
                self.log.answered["ok"] += 1
                return web.Response(text=payload, content_type="application/json")
            finally:
                self.log.in_flight -= 1

    def wrong_shape_answer(self, body: dict) -> dict:
        raise NotImplementedError

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _stats(self, _: web.Request) -> web.Response:
        log = self.log
        return web.json_response(
            {"requests": log.requests, "max_in_flight": log.max_in_flight, "answered": dict(log.answered)}
        )

    async def _start(self, port: int = 0) -> None:
        self._semaphore = asyncio.Semaphore(self.slots)
        app = web.Application()
        app.add_routes(self.routes() + [web.get("/health", self._health), web.get("/stats", self._stats)])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __enter__(self):
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def judge_rule(constraint: str, response: str) -> bool:
    quoted = re.findall(r"'([^']+)'", constraint)
    return all(q.lower() in response.lower() for q in quoted)


class FakeJudge(_LoopbackServer):
    """OpenAI-compatible ``POST /v1/chat/completions`` answering verdict JSON by ``judge_rule``.

    ``wrap_content``, if set, rewrites each answer's message content (a fence, prose around it)."""

    wrap_content = None  # Callable[[str], str] | None

    def routes(self):
        return [web.post("/v1/chat/completions", self._chat)]

    @staticmethod
    def answer(body: dict, wrong: bool = False) -> dict:
        user = body["messages"][-1]["content"]
        constraints = re.findall(r"^(\d+)\. (.*)$", user.split("## Response")[0], flags=re.MULTILINE)
        response = user.split("## Response\n", 1)[1].rsplit("\n\n## Your JSON verdict", 1)[0]
        verdicts = [
            {"id": int(i), "satisfied": judge_rule(text, response) != wrong, "reason": "scripted rule"}
            for i, text in constraints
        ]
        content = json.dumps({"verdicts": verdicts})
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(user.split()), "completion_tokens": len(content.split())},
        }

    def wrong_shape_answer(self, body: dict) -> dict:
        """A chat completion whose content is prose, not the verdict JSON (a model ignoring the format)."""
        answer = self.answer(body)
        answer["choices"][0]["message"]["content"] = "The response satisfies every constraint."
        return answer

    def _wrapped_answer(self, body: dict, wrong: bool = False) -> dict:
        answer = self.answer(body, wrong=wrong)
        if self.wrap_content is not None:
            message = answer["choices"][0]["message"]
            message["content"] = self.wrap_content(message["content"])
        return answer

    async def _chat(self, request: web.Request) -> web.Response:
        return await self._serve(request, self._wrapped_answer)


class FakeRM(_LoopbackServer):
    """vLLM-style ``POST /classify``; the score is the text length in hundreds of characters.

    With ``reverse_rows`` the rows come back last first (each still carrying its ``index``)."""

    reverse_rows = False

    def routes(self):
        return [web.post("/classify", self._classify)]

    @staticmethod
    def answer(body: dict, wrong: bool = False) -> dict:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        sign = -1.0 if wrong else 1.0
        data = [
            {"index": i, "label": "LABEL_0", "probs": [sign * len(t) / 100.0], "num_classes": 1}
            for i, t in enumerate(texts)
        ]
        return {"object": "list", "data": data}

    def wrong_shape_answer(self, body: dict) -> dict:
        """SGLang's embeddings rows where vLLM's classify rows belong (a backend set to the wrong server)."""
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return {"object": "list", "data": [{"index": i, "embedding": [len(t) / 100.0]} for i, t in enumerate(texts)]}

    def _ordered_answer(self, body: dict, wrong: bool = False) -> dict:
        answer = self.answer(body, wrong=wrong)
        if self.reverse_rows:
            answer["data"].reverse()
        return answer

    async def _classify(self, request: web.Request) -> web.Response:
        return await self._serve(request, self._ordered_answer)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a scripted loopback server in the foreground.")
    parser.add_argument("kind", choices=["judge", "rm"])
    parser.add_argument("--port", type=int, default=0, help="0: a free port chosen by the OS (announced on stdout)")
    parser.add_argument("--service-ms", type=float, default=0.0)
    parser.add_argument("--slots", type=int, default=1024)
    args = parser.parse_args()
    server = (FakeJudge if args.kind == "judge" else FakeRM)(args.service_ms / 1000, args.slots)
    loop = server._loop
    asyncio.set_event_loop(loop)
    loop.run_until_complete(server._start(args.port))
    print(f"{READY_LINE}{server.url}", flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
