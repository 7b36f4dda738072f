"""rewards.http.PooledClient against the scripted loopback server: what is retried, what is not,
and how long it waits in between."""

import asyncio

import pytest

import rewards.http
from recipe.rlmr.dev.servers.reward import FakeRM
from rewards.config import BackendConfig
from rewards.http import PooledClient, RetryableError, RewardCallError


def post_with_retries(url, **settings):
    """One /classify POST through PooledClient.with_retries; returns the body or the exception."""
    http = PooledClient(url, BackendConfig(**{"timeout_s": 5.0, "backoff_s": 0.001, **settings}))

    async def run():
        try:
            return await http.with_retries(lambda: http.post_json_once("/classify", {"input": ["abc"]}))
        except RewardCallError as err:
            return err
        finally:
            await http.close()

    return asyncio.run(run())


def test_http_429_is_retried():
    with FakeRM() as server:
        server.inject(status_429=2)
        body = post_with_retries(server.url, max_retries=3)
    assert body["data"][0]["probs"] == [pytest.approx(0.03)]
    assert server.log.answered["429"] == 2 and server.log.requests == 3


def test_http_429_past_the_retries_is_a_retryable_failure():
    with FakeRM() as server:
        server.inject(status_429=10)
        error = post_with_retries(server.url, max_retries=1)
    assert isinstance(error, RetryableError) and "HTTP 429" in str(error)
    assert server.log.requests == 2


def test_other_4xx_is_not_retried():
    with FakeRM() as server:
        server.inject(status_400=1)
        error = post_with_retries(server.url, max_retries=3)
    assert type(error) is RewardCallError and "HTTP 400" in str(error)
    assert server.log.requests == 1  # the request itself is wrong: asking again cannot help


def backoffs(monkeypatch, draw, retries, **settings):
    """backoff_s(1..retries) with random.uniform(a, b) replaced by ``draw(a, b)``."""
    monkeypatch.setattr(rewards.http.random, "uniform", draw)
    http = PooledClient("http://127.0.0.1:1", BackendConfig(**settings))
    return [http.backoff_s(retry) for retry in range(1, retries + 1)]


def test_backoff_is_exponential_and_capped_before_jitter(monkeypatch):
    expected_base = [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]  # 0.5 * 2**(retry-1), capped at backoff_max_s=3
    low = backoffs(monkeypatch, lambda a, b: a, 6, backoff_s=0.5, backoff_max_s=3.0)
    high = backoffs(monkeypatch, lambda a, b: b, 6, backoff_s=0.5, backoff_max_s=3.0)
    assert low == pytest.approx(expected_base)  # no jitter drawn: exactly the capped base
    assert high == pytest.approx([2 * base for base in expected_base])  # most jitter: twice the base


def test_backoff_jitter_stays_within_base_and_twice_base():
    import random

    random.seed(1234)
    http = PooledClient("http://127.0.0.1:1", BackendConfig(backoff_s=0.25, backoff_max_s=1.5))
    for retry, base in [(1, 0.25), (2, 0.5), (3, 1.0), (4, 1.5), (9, 1.5)]:
        draws = [http.backoff_s(retry) for _ in range(2000)]
        assert all(base <= d <= 2 * base for d in draws), (retry, min(draws), max(draws))
        # spread over the whole range, not stuck at one end
        assert min(draws) < base * 1.05 and max(draws) > base * 1.95, (retry, min(draws), max(draws))


def test_with_retries_waits_the_backoff_between_attempts(monkeypatch):
    """The waits actually slept are backoff_s(1), backoff_s(2), ... (none after the last attempt)."""
    slept = []

    async def fake_sleep(seconds):
        slept.append(seconds)

    monkeypatch.setattr(rewards.http.random, "uniform", lambda a, b: a)
    monkeypatch.setattr(rewards.http.asyncio, "sleep", fake_sleep)
    http = PooledClient("http://127.0.0.1:1", BackendConfig(max_retries=3, backoff_s=1.0, backoff_max_s=3.0))
    attempts = []

    async def always_fails():
        attempts.append(1)
        raise RetryableError("scripted")

    with pytest.raises(RetryableError, match="^scripted$"):
        asyncio.run(http.with_retries(always_fails))
    assert len(attempts) == 4 and slept == [1.0, 2.0, 3.0]
