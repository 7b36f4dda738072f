"""Scripted reward-side servers: the experiment's stand-in writing RM and the judge's test double.

- ``LengthBiasedRM`` (user-facing; ``FakeRM`` is its old name): vLLM ``POST /classify`` scoring a
  text by its length in hundreds of characters. A deliberately length-biased writing RM: the RM of
  ``make experiment`` (``recipe.rlmr.experiment``) and of ``python -m recipe.rlmr.dev.launch --rm length``.
- ``CategoryScaledRM`` (user-facing): ``LengthBiasedRM`` times a per-category scale (0.2x, 1x, 5x)
  read from a ``(Category: name)`` marker in the prompt: the weight sweep's RM.
- ``FakeJudge`` (test double): OpenAI chat completions deciding by rule, since a 72B judge cannot run
  here: a constraint is satisfied when the response contains the phrase quoted in it ('like this');
  unquoted constraints are satisfied.

Faults are scripted per server (``inject``): the next N answers can be HTTP 5xx/429/400, malformed
JSON, truncated JSON, hang, be wrong (the opposite verdict, a negated score), or come in another
protocol's shape. Both can hold a fixed service time and a concurrency cap (``slots``), which is what
the throughput benchmarks need; ``GET /stats`` reports what they saw. In a process of its own:

    python -m recipe.rlmr.dev.servers.reward judge|rm [--port N] [--service-ms 150] [--slots 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
from dataclasses import dataclass, fields

from aiohttp import web

from recipe.rlmr.dev.servers.base import READY_LINE, LoopbackServer, ServerLog

__all__ = [
    "CATEGORY_SCALES",
    "READY_LINE",
    "CategoryScaledRM",
    "Faults",
    "FakeJudge",
    "FakeRM",
    "LengthBiasedRM",
    "ServerLog",
    "judge_rule",
    "prompt_category",
]


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


class _ScriptedRewardServer(LoopbackServer):
    def __init__(self, service_time_s: float = 0.0, slots: int = 1024, keep_bodies: bool = False):
        super().__init__(keep_bodies=keep_bodies)
        self.service_time_s, self.slots = service_time_s, slots
        self.faults = Faults()
        self._lock = threading.Lock()

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

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/stats", self._stats)]

    async def _start(self, port: int = 0) -> None:
        self._semaphore = asyncio.Semaphore(self.slots)
        await super()._start(port)

    async def _serve(self, request: web.Request, answer) -> web.Response:
        """Common path: count, cap concurrency, apply the next fault, wait the service time."""
        body = await request.json()
        self.arrived(request, body)
        async with self._semaphore:
            with self.track():
                fault = self._take_fault()
                if fault == "hang":
                    await self.hang()
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

    def wrong_shape_answer(self, body: dict) -> dict:
        raise NotImplementedError

    async def _stats(self, _: web.Request) -> web.Response:
        log = self.log
        return web.json_response(
            {"requests": log.requests, "max_in_flight": log.max_in_flight, "answered": dict(log.answered)}
        )


def judge_rule(constraint: str, response: str) -> bool:
    quoted = re.findall(r"'([^']+)'", constraint)
    return all(q.lower() in response.lower() for q in quoted)


class FakeJudge(_ScriptedRewardServer):
    """Test double: ``POST /v1/chat/completions`` answering the verdict JSON by ``judge_rule``.

    ``wrap_content``, if set, rewrites each answer's message content (a fence, prose around it)."""

    wrap_content = None  # Callable[[str], str] | None

    def routes(self):
        return super().routes() + [web.post("/v1/chat/completions", self._chat)]

    @staticmethod
    def answer(body: dict, wrong: bool = False) -> dict:
        user = body["messages"][-1]["content"]
        constraints = re.findall(r"^(\d+)\. (.*)$", user.split("## Response")[0], flags=re.MULTILINE)
        fenced = re.search(r"^<response-(\w+)>\n(.*)\n</response-\1>$", user, flags=re.DOTALL | re.MULTILINE)
        response = fenced.group(2)  # the text inside the judge prompt's per-request fence (rewards/judge.py)
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


class LengthBiasedRM(_ScriptedRewardServer):
    """User-facing stand-in writing RM: vLLM-style ``POST /classify``; the score is the text length in
    hundreds of characters (see the module docstring).

    With ``reverse_rows`` the rows come back last first (each still carrying its ``index``)."""

    reverse_rows = False

    def routes(self):
        return super().routes() + [web.post("/classify", self._classify)]

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


FakeRM = LengthBiasedRM  # its name before it became the experiment's RM

# CategoryScaledRM's writing scenarios: the marker a prompt carries, and the scale of its scores
CATEGORY_SCALES = {"note": 0.2, "story": 1.0, "saga": 5.0}
CATEGORY_MARKER = re.compile(r"\(Category: (\w+)\)")


def prompt_category(text: str) -> str | None:
    """The category a text's prompt names (``(Category: story)``), or None."""
    match = CATEGORY_MARKER.search(text)
    return match.group(1) if match else None


class CategoryScaledRM(LengthBiasedRM):
    """User-facing stand-in writing RM of the weight sweep (``python -m recipe.rlmr.experiment --preset
    weight_sweep``): ``LengthBiasedRM``'s score (characters / 100) times the scale of the prompt's
    category, read from the ``(Category: name)`` marker in the text it scores (``CATEGORY_SCALES``:
    note 0.2x, story 1x, saga 5x; no or an unknown marker: 1x). A stand-in for a real writing RM
    whose spread differs from one writing scenario to another, which is what a fixed weight cannot
    fit. Same protocol (vLLM ``POST /classify``) and faults as ``LengthBiasedRM``."""

    @staticmethod
    def answer(body: dict, wrong: bool = False) -> dict:
        answer = LengthBiasedRM.answer(body, wrong=wrong)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        for row, text in zip(answer["data"], texts, strict=True):
            row["probs"] = [row["probs"][0] * CATEGORY_SCALES.get(prompt_category(text), 1.0)]
        return answer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a scripted reward-side server in the foreground.")
    parser.add_argument("kind", choices=["judge", "rm"])
    parser.add_argument("--port", type=int, default=0, help="0: a free port chosen by the OS (announced on stdout)")
    parser.add_argument("--service-ms", type=float, default=0.0)
    parser.add_argument("--slots", type=int, default=1024)
    args = parser.parse_args(argv)
    server = (FakeJudge if args.kind == "judge" else LengthBiasedRM)(args.service_ms / 1000, args.slots)
    server.serve_forever(args.port)


if __name__ == "__main__":
    main()
