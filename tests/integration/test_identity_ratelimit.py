"""Rate limiters shared between processes: the database one (SQLite, PostgreSQL) and the
Redis one, each used through two limiter instances as two servers would."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy.engine import Engine

from secretum.identity.ratelimit import DbRateLimiter, RateLimiter
from secretum.identity.redis_adapters import RedisRateLimiter

T0 = datetime(2030, 3, 1, 10, 0, tzinfo=UTC)
S = timedelta(seconds=1)
KEYS = ["acct:" + "ab" * 32, "addr:198.51.100.7"]


@pytest.fixture
def redis_prefix() -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("SECRETUM_REQUIRE_PEERS") == "1":  # .ci/run started it
            pytest.fail("Redis is not running at 127.0.0.1:6379")
        pytest.skip("Redis is not running at 127.0.0.1:6379 (CI starts it)")
    prefix = f"secretum-test:{secrets.token_hex(8)}:"
    yield client, prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


def _shared_lockout(first: RateLimiter, second: RateLimiter) -> None:
    """Failures recorded by either instance add up; both see the delay and the lock."""
    for i in range(4):
        (first if i % 2 else second).fail(KEYS, T0 + S * 100 * i)
    assert first.check(KEYS, T0 + S * 400).retry_at is None
    v = second.fail(KEYS, T0 + S * 400)  # 5th failure: 1 s delay
    assert v.retry_at == T0 + S * 401 and not v.locked
    assert first.check(KEYS, T0 + S * 400).retry_at == T0 + S * 401
    locked: tuple[str, ...] = ()
    for i in range(5, 10):
        locked = (first if i % 2 else second).fail(KEYS, T0 + S * 100 * i).locked_keys
    assert locked == (KEYS[0],)  # the 10th failure locked the account key, once
    when = T0 + S * 950
    for limiter in (first, second):
        verdict = limiter.check(KEYS, when)
        assert verdict.locked and verdict.retry_at == T0 + S * 900 + timedelta(minutes=15)
    assert first.check(KEYS, T0 + S * 900 + timedelta(minutes=15)).retry_at is None
    second.fail(KEYS, T0 + S * 2000)
    first.reset(KEYS[0])
    assert second.check(KEYS[:1], T0 + S * 2000).retry_at is None


def test_db_limiter_is_shared_by_two_instances(engine: Engine) -> None:
    _shared_lockout(DbRateLimiter(engine), DbRateLimiter(engine))


def test_db_limiter_purges_old_states(engine: Engine) -> None:
    limiter = DbRateLimiter(engine)
    limiter.fail(KEYS, T0)
    assert limiter.purge(T0 + timedelta(minutes=5)) == 0
    assert limiter.purge(T0 + timedelta(hours=2)) == 2


def test_redis_limiter_is_shared_by_two_instances(redis_prefix: tuple[redis.Redis, str]) -> None:
    client, prefix = redis_prefix
    other = redis.Redis(host="127.0.0.1", port=6379)
    try:
        _shared_lockout(RedisRateLimiter(client, prefix), RedisRateLimiter(other, prefix))
    finally:
        other.close()


def test_redis_keys_expire_and_stay_under_the_prefix(redis_prefix: tuple[redis.Redis, str]) -> None:
    client, prefix = redis_prefix
    RedisRateLimiter(client, prefix).fail(KEYS, datetime.now(UTC))
    keys = list(client.scan_iter(match=prefix + "*"))
    assert len(keys) == 2
    assert all(0 < client.pttl(k) <= 2 * 3600 * 1000 for k in keys)


def test_redis_concurrent_failures_are_all_counted(redis_prefix: tuple[redis.Redis, str]) -> None:
    import threading

    client, prefix = redis_prefix
    limiters = [
        RedisRateLimiter(redis.Redis(host="127.0.0.1", port=6379), prefix) for _ in range(4)
    ]

    def hammer(limiter: RedisRateLimiter) -> None:
        for _ in range(2):
            limiter.fail(KEYS[1:], T0)

    threads = [threading.Thread(target=hammer, args=(lim,)) for lim in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    raw = client.hgetall(prefix + "rl:" + KEYS[1])
    assert int(raw[b"failures"]) == 8
