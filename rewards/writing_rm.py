"""Async client for a served discriminative writing reward model.

Backends (``backend``):

- ``vllm_classify``: vLLM ``POST /classify``, score = ``data[i].probs[-1]`` (raw logit with
  ``use_activation: false``), the way verl scores its managed reward model;
- ``vllm_pooling``: vLLM ``POST /pooling``, score = last value of ``data[i].data``;
- ``sglang``: SGLang ``POST /v1/embeddings``, score = last value of ``data[i].embedding``.

Settings are ``reward.rlmr.writing_rm`` (``rewards.config.WritingRMConfig``). The base URL is an
external server's (``url``) or, when verl serves the reward model (``reward.reward_model.enable=True``),
verl's reward router (``reward_router_address``, "ip:port"): the manager fills it in.
The (prompt, response) pair is formatted as verl does: the prompt's chat messages plus an
assistant turn, through the reward model's own chat template, leading BOS removed. Inputs longer
than ``max_input_tokens`` keep their last tokens (the response end) and are counted as truncated.

Concurrent ``score`` calls are gathered into micro-batches (list inputs) of up to
``micro_batch_size``, waiting at most ``micro_batch_wait_ms`` for company.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Literal

from rewards.config import WritingRMConfig
from rewards.http import HTTPCallError, PooledClient, RetryableError
from rewards.rm_format import format_rm_input

Backend = Literal["vllm_classify", "vllm_pooling", "sglang"]
_PATHS = {"vllm_classify": "/classify", "vllm_pooling": "/pooling", "sglang": "/v1/embeddings"}


def _extract_scores(backend: Backend, body: Any, expected: int) -> list[float]:
    """Scores in input order from a backend answer; RetryableError if it is malformed."""
    try:
        rows = sorted(body["data"], key=lambda row: row.get("index", 0))
        if backend == "vllm_classify":
            scores = [float(row["probs"][-1]) for row in rows]
        elif backend == "vllm_pooling":
            scores = [float(_last(row["data"])) for row in rows]
        else:
            scores = [float(row["embedding"][-1]) for row in rows]
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise RetryableError(f"malformed {backend} answer: {str(body)[:200]}") from err
    if len(scores) != expected:
        raise RetryableError(f"{backend} answered {len(scores)} scores for {expected} inputs")
    bad = [score for score in scores if not math.isfinite(score)]
    if bad:  # e.g. the string "NaN", which float() reads; a NaN or inf score is a failure, never a number
        raise RetryableError(f"{backend} answered a non-finite score ({bad[0]}) for {len(bad)} of {expected} inputs")
    return scores


def _last(value: Any) -> float:
    while isinstance(value, list):
        value = value[-1]
    return value


class WritingRMClient:
    """Scores (chat prompt, response) pairs; ``score`` raises HTTPCallError when it cannot."""

    def __init__(self, settings: WritingRMConfig, tokenizer):
        """``settings`` must name ``url`` and ``model``; a null ``backend`` means vllm_classify."""
        if not settings.url or not settings.model:
            raise ValueError(
                "the writing RM client needs a url and a model name, "
                f"got url={settings.url!r}, model={settings.model!r}"
            )
        self.settings = settings
        self.backend: Backend = settings.backend or "vllm_classify"
        self.tokenizer = tokenizer
        self.http = PooledClient(settings.url, settings)
        self.truncated = 0  # inputs cut to max_input_tokens so far
        self._pending: list[tuple[str, asyncio.Future]] = []
        self._flush_scheduled = False

    def format(self, messages: list[dict[str, str]], response: str) -> str:
        """The reward model's input text (``rewards.rm_format``, the contract RM training shares)."""
        text, cut = format_rm_input(self.tokenizer, messages, response, self.settings.max_input_tokens)
        self.truncated += cut
        return text

    async def score(self, messages: list[dict[str, str]], response: str) -> float:
        return await self.score_text(self.format(messages, response))

    async def score_text(self, text: str) -> float:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((text, future))
        if len(self._pending) >= self.settings.micro_batch_size:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(self.settings.micro_batch_wait_ms / 1000.0, self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._pending:
            batch = self._pending[: self.settings.micro_batch_size]
            del self._pending[: self.settings.micro_batch_size]
            asyncio.ensure_future(self._send(batch))

    async def _send(self, batch: list[tuple[str, asyncio.Future]]) -> None:
        texts = [text for text, _ in batch]
        payload: dict[str, Any] = {"model": self.settings.model, "input": texts}
        if self.backend == "vllm_classify":
            payload["use_activation"] = False

        async def attempt() -> list[float]:
            body = await self.http.post_json_once(_PATHS[self.backend], payload)
            return _extract_scores(self.backend, body, len(texts))

        try:
            scores = await self.http.with_retries(attempt)
        except Exception as err:  # every waiter learns why; nobody hangs
            error = err if isinstance(err, HTTPCallError) else HTTPCallError(f"{type(err).__name__}: {err}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), value in zip(batch, scores, strict=True):
            if not future.done():
                future.set_result(value)

    async def close(self) -> None:
        await self.http.close()
