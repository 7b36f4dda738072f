"""A scripted OpenAI-compatible chat server on loopback, for `expand`'s tests and benchmark.

Not a model: ``POST /v1/chat/completions`` pops the next ``Reply`` of its script (then asks
``fallback(i)`` for request ``i``) and answers it over real HTTP. Replies can be a chat completion
with given content, an HTTP status, a slow or never-finishing answer, or a 200 that is not a chat
completion. The server can hold a fixed latency and a cap on requests served at once (``slots``).

In a test: ``with ScriptedChatServer(script) as server: server.base_url`` (its own event loop in a
daemon thread, port 0). For the benchmark, in a process of its own:

    python -m data_prep.testing_server --latency-ms 200 --slots 16   # prints "port N"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    kind: str  # "content" | "status" | "slow" | "hang" | "not_chat"
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


_SYLLABLES = [c + v for c in "bdfghklmnprstvz" for v in "aeiou"]
GENRES = ["poem", "short story", "letter", "speech", "fable", "diary entry", "song lyrics", "scene"]


def unique_task(i: int) -> Reply:
    """A valid answer whose prompt shares almost no word pairs with any other i (made-up words)."""
    rng = random.Random(i)
    words = [rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES) for _ in range(8)]
    limit = rng.choice([80, 120, 200])
    genre = GENRES[i % len(GENRES)]
    prompt = f"Write a {genre} about {' '.join(words)}. Use at most {limit} words."
    rule = {"type": "rule", "instruction_id": "rlmr:word_range", "kwargs": {"max_words": limit}}
    return Reply.task(prompt, [rule], genre=genre)


@dataclass
class ServerLog:
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    served: Counter = field(default_factory=Counter)  # reply kind -> count
    bodies: list = field(default_factory=list)


class ScriptedChatServer:
    def __init__(
        self,
        script: list[Reply] | None = None,
        fallback: Callable[[int], Reply] = unique_task,
        latency_s: float = 0.0,
        slots: int = 1024,
        keep_bodies: bool = False,
    ):
        self.script = list(script or [])
        self.fallback, self.latency_s, self.slots, self.keep_bodies = fallback, latency_s, slots, keep_bodies
        self.log = ServerLog()
        self._arrived = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_for_requests(self, count: int, timeout_s: float = 60.0) -> bool:
        """Block until ``count`` requests have arrived (for tests that act at a given point)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self.log.requests >= count, timeout=timeout_s)

    def _next(self) -> Reply:
        number = self.log.requests
        with self._arrived:
            self.log.requests += 1
            self._arrived.notify_all()
        return self.script.pop(0) if self.script else self.fallback(number)

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.keep_bodies:
            self.log.bodies.append(body)
        reply = self._next()
        async with self._semaphore:
            self.log.in_flight += 1
            self.log.max_in_flight = max(self.log.max_in_flight, self.log.in_flight)
            try:
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                if reply.kind == "hang":
                    await self._closing.wait()
                if reply.kind == "slow":
                    await asyncio.sleep(reply.delay_s)
                self.log.served[reply.kind] += 1
                if reply.kind == "status":
                    error = {"error": {"message": "scripted failure", "code": reply.status}}
                    return web.json_response(error, status=reply.status)
                if reply.kind == "not_chat":
                    return web.json_response({"object": "list", "data": []})
                return web.json_response(
                    {
                        "id": f"chatcmpl-{self.log.requests}",
                        "object": "chat.completion",
                        "model": body.get("model"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply.content},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                )
            finally:
                self.log.in_flight -= 1

    async def _start(self, port: int) -> None:
        self._semaphore = asyncio.Semaphore(self.slots)
        self._closing = asyncio.Event()
        app = web.Application()
        app.add_routes([web.post("/v1/chat/completions", self._chat)])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        self._closing.set()
        await self._runner.cleanup()

    def start(self, port: int = 0) -> ScriptedChatServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(port), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> ScriptedChatServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="scripted chat server answering unique valid tasks")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--slots", type=int, default=1024)
    args = parser.parse_args()
    server = ScriptedChatServer(latency_s=args.latency_ms / 1000, slots=args.slots).start(args.port)
    print(f"port {server.port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
