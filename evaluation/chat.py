"""One OpenAI-compatible chat-completions client for the policy, the critic and the judge.

Built on ``rewards.http.PooledClient``: a pooled session, at most ``concurrency`` requests in
flight, a timeout per attempt, and bounded retries with jittered exponential backoff on connection
errors, timeouts, 429, 5xx and answers that are not the JSON of a chat completion. ``parse`` lets a
caller refuse an answer's content (e.g. a critic score out of range): that attempt is retried too.
After the last retry ``ChatError`` is raised; callers list or count the failure, never score it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

from rewards.config import BackendConfig
from rewards.http import PooledClient, RetryableError, RewardCallError

T = TypeVar("T")
ChatError = RewardCallError


class UnusableAnswer(RetryableError):
    """The server answered, but not something the caller can use."""


def add_http_args(parser: argparse.ArgumentParser, role: str, concurrency: int = 32, timeout: float = 600.0) -> None:
    parser.add_argument(
        "--concurrency", type=int, default=concurrency, help=f"requests in flight at once (default {concurrency})"
    )
    parser.add_argument(
        "--timeout", type=float, default=timeout, help=f"seconds per request attempt (default {timeout:g})"
    )
    parser.add_argument(
        "--max-retries", type=int, default=3, help="retries after the first attempt, on errors worth one (default 3)"
    )
    parser.add_argument("--backoff", type=float, default=1.0, help="first retry wait in seconds, doubled each retry")
    parser.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help=f"environment variable holding the {role} server's API key (sent as a Bearer token)",
    )


class ChatClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        concurrency: int = 32,
        timeout_s: float = 600.0,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        api_key_env: str | None = None,
    ):
        settings = BackendConfig(
            url=base_url,
            model=model,
            timeout_s=timeout_s,
            max_concurrency=concurrency,
            max_retries=max_retries,
            backoff_s=backoff_s,
            backoff_max_s=max(backoff_s, 30.0),
        )
        headers = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(f"--api-key-env {api_key_env}: that environment variable is not set")
            headers = {"Authorization": f"Bearer {key}"}
        self.model = model
        self.http = PooledClient(_strip_v1(base_url), settings, headers=headers)

    @classmethod
    def from_args(cls, url: str, model: str, args: argparse.Namespace) -> ChatClient:
        if args.concurrency < 1 or args.timeout <= 0 or args.max_retries < 0 or args.backoff < 0:
            raise ValueError("--concurrency must be >= 1, --timeout > 0, --max-retries and --backoff >= 0")
        return cls(url, model, args.concurrency, args.timeout, args.max_retries, args.backoff, args.api_key_env)

    async def complete(
        self,
        messages: list[dict[str, str]],
        parse: Callable[[str], T] = lambda text: text,
        **sampling: Any,
    ) -> tuple[T, dict[str, Any]]:
        """``(parse(content), choice)`` of one chat completion, retried as the module says."""
        payload = {"model": self.model, "messages": messages, **sampling}

        async def attempt() -> tuple[T, dict[str, Any]]:
            body = await self.http.post_json_once("/v1/chat/completions", payload)
            try:
                choice = body["choices"][0]
                content = choice["message"]["content"]
            except (KeyError, IndexError, TypeError) as err:
                raise UnusableAnswer(f"not a chat completion: {str(body)[:200]}") from err
            if not isinstance(content, str):
                raise UnusableAnswer(f"chat completion without text content: {str(body)[:200]}")
            try:
                return parse(content), choice
            except ValueError as err:
                raise UnusableAnswer(str(err)) from err

        return await self.http.with_retries(attempt)

    async def close(self) -> None:
        await self.http.close()


def _strip_v1(url: str) -> str:
    """Accept both ``http://host:port`` and ``http://host:port/v1`` (what OpenAI clients are given)."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)


def load_json_answer(text: str, who: str) -> Any:
    """The JSON a judge or critic was asked for: the whole answer, or the one ```json fenced object in it.

    ``who`` names the model in the ValueError raised when it is not JSON.
    """
    body = text.strip()
    fenced = _FENCE.findall(body)
    if len(fenced) == 1:
        body = fenced[0]
    try:
        return json.loads(body)
    except json.JSONDecodeError as err:
        raise ValueError(f"{who} answer is not JSON: {text[:200]!r}") from err
