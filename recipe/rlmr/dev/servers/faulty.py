"""Loopback RM and judge servers that answer with a chosen fault, or a random steady mix of them:
the non-finite-score tests (tests/test_nonfinite_scores.py) and the reward soak benchmark
(benchmarks/reward_soak.py).

``FaultyRM`` serves all three writing-RM wire formats (vLLM ``/classify`` and ``/pooling``, SGLang
``/v1/embeddings``); a good answer scores a text ``len(text) / 100``. ``FaultyJudge`` serves OpenAI
chat completions; a good answer says every constraint of the prompt is satisfied.

What each request gets: the next entry of ``script`` (a list of fault names, consumed in order),
else a draw from ``mix`` ({fault name: probability}, the rest answering well) with a seeded RNG.
Faults (``FAULTS``): ``5xx``; ``hang_short`` (answers well after ``hang_short_s``, meant to be under
the client's timeout); ``hang_long`` (answers after ``hang_long_s``, meant to be over it);
``malformed`` (not JSON); and the non-finite answers ``nan``, ``inf``, ``neg_inf`` (the JSON
constants ``NaN``, ``Infinity``, ``-Infinity`` that vLLM's JSON can carry and Python's json reads),
``overflow`` (``1e999``, which parses to inf) and ``nan_string`` (the string ``"NaN"``). For the
judge, a non-finite answer puts the value in the verdict's ``id`` inside the message content.
``server.log.answered`` counts answers by kind (``GET /stats`` reports it). In a process of its own:

    python -m recipe.rlmr.dev.servers.faulty rm|judge [--port N] [--mix 5xx=0.05,nan=0.02] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import threading

from aiohttp import web

from recipe.rlmr.dev.servers.base import LoopbackServer

NON_FINITE = {"nan": "NaN", "inf": "Infinity", "neg_inf": "-Infinity", "overflow": "1e999", "nan_string": '"NaN"'}
FAULTS = ("5xx", "hang_short", "hang_long", "malformed", *NON_FINITE)


class _FaultyServer(LoopbackServer):
    def __init__(
        self,
        mix: dict[str, float] | None = None,
        script: list[str] | None = None,
        seed: int = 0,
        hang_short_s: float = 0.05,
        hang_long_s: float = 30.0,
        keep_bodies: bool = False,
    ):
        super().__init__(keep_bodies=keep_bodies)
        unknown = (set(mix or {}) | set(script or ())) - set(FAULTS) - {"ok"}
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
        self.mix = dict(mix or {})
        self.script = list(script or [])
        self.hang_short_s, self.hang_long_s = hang_short_s, hang_long_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/stats", self._stats)]

    async def _stats(self, _: web.Request) -> web.Response:
        return web.json_response({"requests": self.log.requests, "answered": dict(self.log.answered)})

    def _next_fault(self) -> str:
        with self._lock:
            if self.script:
                return self.script.pop(0)
            draw, total = self._rng.random(), 0.0
            for name, probability in self.mix.items():
                total += probability
                if draw < total:
                    return name
            return "ok"

    async def _serve(self, request: web.Request, good_answer, non_finite_answer) -> web.Response:
        body = await request.json()
        self.arrived(request, body)
        with self.track():
            fault = self._next_fault()
            if fault in ("hang_short", "hang_long"):
                wait_s = self.hang_short_s if fault == "hang_short" else self.hang_long_s
                try:
                    await asyncio.wait_for(self._closing.wait(), timeout=wait_s)
                except asyncio.TimeoutError:
                    pass
            self.log.answered[fault] += 1
            if fault == "5xx":
                return web.Response(status=503, text="scripted 503")
            if fault == "malformed":
                return web.Response(text="{not json", content_type="application/json")
            if fault in NON_FINITE:
                return web.Response(text=non_finite_answer(body, NON_FINITE[fault]), content_type="application/json")
            return web.Response(text=json.dumps(good_answer(body)), content_type="application/json")


class FaultyRM(_FaultyServer):
    """A writing RM over vLLM /classify, /pooling and SGLang /v1/embeddings (see the module docstring)."""

    def routes(self) -> list[web.RouteDef]:
        return super().routes() + [
            web.post(path, lambda request, shape=shape: self._serve(request, *self._answers(shape)))
            for path, shape in (("/classify", "probs"), ("/pooling", "data"), ("/v1/embeddings", "embedding"))
        ]

    @staticmethod
    def _answers(shape: str):
        def good(body: dict) -> dict:
            return {"data": [{"index": i, shape: [len(text) / 100.0]} for i, text in enumerate(body["input"])]}

        def non_finite(body: dict, literal: str) -> str:
            # the first row carries the non-finite value, the others a good score: one bad row fails the call
            answer = good(body)
            answer["data"][0][shape] = ["__VALUE__"]
            return json.dumps(answer).replace('"__VALUE__"', literal)

        return good, non_finite


class FaultyJudge(_FaultyServer):
    """An OpenAI chat-completions judge saying every constraint is satisfied (see the module docstring)."""

    def routes(self) -> list[web.RouteDef]:
        chat = web.post("/v1/chat/completions", lambda request: self._serve(request, self._good, self._non_finite))
        return super().routes() + [chat]

    @staticmethod
    def _ids(body: dict) -> list[int]:
        user = body["messages"][-1]["content"]
        return [int(i) for i in re.findall(r"^(\d+)\. ", user.split("## Response")[0], flags=re.MULTILINE)]

    @staticmethod
    def _completion(content: str) -> dict:
        return {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }

    def _good(self, body: dict) -> dict:
        verdicts = [{"id": i, "satisfied": True, "reason": "scripted"} for i in self._ids(body)]
        return self._completion(json.dumps({"verdicts": verdicts}))

    def _non_finite(self, body: dict, literal: str) -> str:
        verdicts = [{"id": i, "satisfied": True, "reason": "scripted"} for i in self._ids(body)]
        content = json.dumps({"verdicts": verdicts}).replace('"id": 1,', f'"id": {literal},', 1)
        return json.dumps(self._completion(content))


def parse_mix(text: str) -> dict[str, float]:
    """``5xx=0.05,nan=0.02`` -> {"5xx": 0.05, "nan": 0.02}."""
    mix = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        mix[name.strip()] = float(value)
    return mix


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A faulty RM or judge in the foreground (see the module docstring).")
    parser.add_argument("kind", choices=["rm", "judge"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mix", default="", help="fault=probability,... (faults: " + ", ".join(FAULTS) + ")")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-short-s", type=float, default=0.05)
    parser.add_argument("--hang-long-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    cls = FaultyRM if args.kind == "rm" else FaultyJudge
    server = cls(parse_mix(args.mix), seed=args.seed, hang_short_s=args.hang_short_s, hang_long_s=args.hang_long_s)
    server.serve_forever(args.port)


if __name__ == "__main__":
    main()
