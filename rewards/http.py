"""What the writing-RM client and the judge client share: one pooled session, bounded
concurrency, a timeout per attempt, and bounded retries with jittered exponential backoff.

Retried: connection errors, timeouts, HTTP 429 and 5xx. Not retried: other 4xx (the request
itself is wrong). After the last attempt a ``RewardCallError`` is raised; callers turn it into
``reward_valid = 0``, never into a score.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter


class RewardCallError(RuntimeError):
    """A reward backend call failed for good (after retries) or answered something unusable."""


class RetryableError(RewardCallError):
    """A failure worth another attempt (5xx, 429, connection, timeout, unparsable answer)."""


@dataclass(frozen=True)
class HttpSettings:
    timeout_s: float = 60.0
    max_concurrency: int = 32
    max_retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 10.0


class PooledClient:
    """An aiohttp session and semaphore created lazily on the event loop that first uses them."""

    def __init__(self, base_url: str, settings: HttpSettings, headers: dict[str, str] | None = None):
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

    def retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            wait=wait_exponential_jitter(initial=self.settings.backoff_s, max=self.settings.backoff_max_s),
            retry=retry_if_exception(lambda err: isinstance(err, RetryableError)),
            reraise=True,
        )

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
                        raise RewardCallError(f"{url}: HTTP {response.status}: {text[:200]}")
            except asyncio.TimeoutError as err:
                raise RetryableError(f"{url}: no answer within {self.settings.timeout_s}s") from err
            except aiohttp.ClientError as err:
                raise RetryableError(f"{url}: {type(err).__name__}: {err}") from err
        try:
            return json.loads(text)
        except ValueError as err:
            raise RetryableError(f"{url}: answer is not JSON: {text[:200]!r}") from err
