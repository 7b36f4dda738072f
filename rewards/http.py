"""What every HTTP client here shares (the writing-RM client, and through ``rewards.chat`` the judge,
prompt expansion and evaluation): one pooled session, bounded concurrency, a timeout per attempt, and
bounded retries with jittered exponential backoff. Part of the ground floor (docs/architecture.md).

Retried: connection errors, timeouts, HTTP 429 and 5xx. Not retried: other 4xx (the request
itself is wrong). After the last attempt an ``HTTPCallError`` is raised; the reward manager turns it
into ``reward_valid = 0``, never into a score; expansion and evaluation count or list it.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from rewards.config import BackendConfig

T = TypeVar("T")


class HTTPCallError(RuntimeError):
    """A call to a served model failed for good (after retries) or answered something unusable."""


RewardCallError = HTTPCallError  # its name before expansion and evaluation used it too


class RetryableError(HTTPCallError):
    """A failure worth another attempt (5xx, 429, connection, timeout, unparsable answer)."""


class NonFiniteNumber(ValueError):
    """A JSON answer holds NaN, Infinity or -Infinity (Python's json reader would accept them)."""


def _refuse_constant(name: str) -> float:
    raise NonFiniteNumber(f"answer holds the non-finite number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise NonFiniteNumber(f"answer holds the non-finite number {text}")
    return value


def loads_finite(text: str) -> Any:
    """``json.loads`` refusing NaN, Infinity, -Infinity and numbers that overflow to infinity
    (ValueError): a non-finite number from a served model is a failure, never a score."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)


class PooledClient:
    """An aiohttp session and semaphore created lazily on the event loop that first uses them."""

    def __init__(self, base_url: str, settings: BackendConfig, headers: dict[str, str] | None = None):
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        self.headers = headers or {}
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def _ensure(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.settings.max_concurrency, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(connector=connector, headers=self.headers)
            self._semaphore = asyncio.Semaphore(self.settings.max_concurrency)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def backoff_s(self, retry: int) -> float:
        """Wait before retry number ``retry`` (1-based): exponential, capped, plus up to 100% jitter."""
        base = min(self.settings.backoff_max_s, self.settings.backoff_s * 2 ** (retry - 1))
        return base + random.uniform(0, base)

    async def with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds, raises a non-retryable error, or retries run out.

        A plain loop rather than tenacity's AsyncRetrying: at 1024 concurrent judge calls the
        latter's per-attempt bookkeeping cost ~0.5 ms of event-loop time per call, which was the
        largest client-side cost in benchmarks/reward_throughput.py.
        """
        for retry in range(self.settings.max_retries + 1):
            try:
                return await attempt()
            except RetryableError:
                if retry == self.settings.max_retries:
                    raise
            await asyncio.sleep(self.backoff_s(retry + 1))
        raise AssertionError("unreachable")

    async def post_json_once(self, path: str, payload: dict[str, Any]) -> Any:
        """One attempt: POST, bounded by the semaphore and the per-attempt timeout."""
        self._ensure()
        url = f"{self.base_url}{path}"
        async with self._semaphore:
            try:
                async with self._session.post(
                    url, json=payload, timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s)
                ) as response:
                    text = await response.text()
                    if response.status == 429 or response.status >= 500:
                        raise RetryableError(f"{url}: HTTP {response.status}: {text[:200]}")
                    if response.status >= 400:
                        raise HTTPCallError(f"{url}: HTTP {response.status}: {text[:200]}")
            except asyncio.TimeoutError as err:
                raise RetryableError(f"{url}: no answer within {self.settings.timeout_s}s") from err
            except aiohttp.ClientError as err:
                raise RetryableError(f"{url}: {type(err).__name__}: {err}") from err
        try:
            return loads_finite(text)
        except NonFiniteNumber as err:
            raise RetryableError(f"{url}: {err}: {text[:200]!r}") from err
        except ValueError as err:
            raise RetryableError(f"{url}: answer is not JSON: {text[:200]!r}") from err
