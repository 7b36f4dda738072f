"""The one OpenAI-compatible chat-completions client: the judge (``rewards.judge``), prompt expansion
(``data_prep expand``) and evaluation (policy, critic, pairwise judge) all call their servers through it.
Part of the ground floor (docs/architecture.md).

One URL convention: the server's root, ``http://host:port``; a trailing ``/v1`` (what OpenAI SDKs are
given) is accepted and means the same server. Requests go to ``{root}/v1/chat/completions``.

One set of HTTP settings (``rewards.config.BackendConfig``; on the command line ``add_http_args``:
``--concurrency --timeout --max-retries --backoff --api-key-env``) over ``rewards.http.PooledClient``:
a pooled session, at most ``max_concurrency`` requests in flight, a timeout per attempt, and bounded
retries with jittered exponential backoff on connection errors, timeouts, 429, 5xx and answers that
are not the JSON of a chat completion with text content. ``parse`` lets a caller refuse an answer's
content (a judge verdict that does not parse, a critic score out of range): that attempt is retried
too. After the last retry ``ChatError`` (``rewards.http.HTTPCallError``) is raised; a 4xx raises it at
once (not ``RetryableError``): the request itself is wrong.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, TypeVar

from rewards.config import BackendConfig
from rewards.http import HTTPCallError, PooledClient, RetryableError

T = TypeVar("T")
ChatError = HTTPCallError
CHAT_PATH = "/v1/chat/completions"


class UnusableAnswer(RetryableError):
    """The server answered, but not something the caller can use."""


def server_root(url: str) -> str:
    """``http://host:port`` from ``http://host:port`` or ``http://host:port/v1`` (trailing slashes ignored)."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def api_key_from_env(name: str | None, what: str = "--api-key-env") -> str | None:
    """The key in environment variable ``name`` (None when ``name`` is None); ValueError naming ``what`` if unset."""
    if not name:
        return None
    key = os.environ.get(name)
    if not key:
        raise ValueError(f"{what}={name}, but that environment variable is not set")
    return key


class _Renamed(argparse.Action):
    def __init__(self, option_strings, dest, new: str, **kwargs):
        kwargs.setdefault("help", f"old spelling of {new}: fails, naming it")
        super().__init__(option_strings, dest, nargs="?", metavar="N", **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is now {self.new}")


def renamed_flag(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Make the old spelling ``old`` of a flag fail with a message naming ``new`` (listed in --help as such)."""
    parser.add_argument(old, action=_Renamed, new=new, dest=f"_renamed_{old.lstrip('-').replace('-', '_')}")


def add_http_args(
    parser: argparse.ArgumentParser,
    role: str,
    concurrency: int = 32,
    timeout: float = 600.0,
    max_retries: int = 3,
    backoff: float = 1.0,
) -> None:
    """The chat client's flags, the same in every command: --concurrency --timeout --max-retries --backoff
    --api-key-env (``--retries``, expansion's old spelling, fails naming ``--max-retries``)."""
    parser.add_argument(
        "--concurrency", type=int, default=concurrency, help=f"requests in flight at once (default {concurrency})"
    )
    parser.add_argument(
        "--timeout", type=float, default=timeout, help=f"seconds per request attempt (default {timeout:g})"
    )
    parser.add_argument(
        "--max-retries",
        type=int,
        default=max_retries,
        help=f"retries after the first attempt, on errors worth one (default {max_retries})",
    )
    renamed_flag(parser, "--retries", "--max-retries")
    parser.add_argument(
        "--backoff",
        type=float,
        default=backoff,
        help=f"first retry wait in seconds, doubled each retry (default {backoff:g})",
    )
    parser.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help=f"environment variable holding the {role} server's API key (sent as a Bearer token)",
    )


def check_http_args(args: argparse.Namespace) -> None:
    if args.concurrency < 1 or args.timeout <= 0 or args.max_retries < 0 or args.backoff < 0:
        raise ValueError("--concurrency must be >= 1, --timeout > 0, --max-retries and --backoff >= 0")


class ChatClient:
    """Chat completions from the server at ``settings.url`` (its root, ``/v1`` accepted) for ``settings.model``."""

    def __init__(self, settings: BackendConfig, api_key: str | None = None):
        if not settings.url:
            raise ValueError("a chat client needs the server's url")
        self.settings = settings
        self.model = settings.model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.url = server_root(settings.url)
        self.http = PooledClient(self.url, settings, headers=headers)

    @classmethod
    def from_args(
        cls, url: str, model: str, args: argparse.Namespace, fallback_key_env: str | None = None
    ) -> ChatClient:
        """A client from ``add_http_args``' flags; ``fallback_key_env`` is read when --api-key-env is not given."""
        check_http_args(args)
        settings = BackendConfig(
            url=url,
            model=model,
            timeout_s=args.timeout,
            max_concurrency=args.concurrency,
            max_retries=args.max_retries,
            backoff_s=args.backoff,
            backoff_max_s=max(args.backoff, 30.0),
        )
        key = api_key_from_env(args.api_key_env) if args.api_key_env else os.environ.get(fallback_key_env or "") or None
        return cls(settings, key)

    async def complete(
        self,
        messages: list[dict[str, str]],
        parse: Callable[[str], T] = lambda text: text,
        *,
        on_attempt: Callable[[], None] | None = None,
        on_answer: Callable[[], None] | None = None,
        **sampling: Any,
    ) -> tuple[T, dict[str, Any]]:
        """``(parse(content), choice)`` of one chat completion, retried as the module says.

        ``on_attempt`` is called before every HTTP attempt, ``on_answer`` after every one the server
        answered with JSON (retries included), for callers that count them."""
        payload = {"model": self.model, "messages": messages, **sampling}

        async def attempt() -> tuple[T, dict[str, Any]]:
            if on_attempt is not None:
                on_attempt()
            body = await self.http.post_json_once(CHAT_PATH, payload)
            if on_answer is not None:
                on_answer()
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
