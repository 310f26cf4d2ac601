"""Brute-force rule: progressive delay from the 5th failure, lock at the 10th, forgetting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from secretum.identity.ratelimit import (
    ACCOUNT_POLICY,
    EMPTY,
    LimitState,
    MemoryRateLimiter,
    after_failure,
    verdict,
)

T0 = datetime(2030, 3, 1, 10, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def _fail(times: int, start: datetime = T0, step: timedelta = S * 0) -> LimitState:
    state = EMPTY
    for i in range(times):
        state = after_failure(state, ACCOUNT_POLICY, start + step * i)
    return state


def test_four_failures_cost_nothing() -> None:
    assert verdict(_fail(4), ACCOUNT_POLICY, T0).retry_at is None


def test_delay_doubles_from_the_fifth_failure() -> None:
    for failures, delay in ((5, 1), (6, 2), (7, 4), (8, 8), (9, 16)):
        v = verdict(_fail(failures), ACCOUNT_POLICY, T0)
        assert v.retry_at == T0 + S * delay and not v.locked
        assert verdict(_fail(failures), ACCOUNT_POLICY, T0 + S * delay).retry_at is None


def test_tenth_failure_locks_for_fifteen_minutes() -> None:
    state = _fail(10)
    v = verdict(state, ACCOUNT_POLICY, T0 + timedelta(minutes=14))
    assert v.locked and v.retry_at == T0 + timedelta(minutes=15)
    after = verdict(state, ACCOUNT_POLICY, T0 + timedelta(minutes=15))
    assert after.retry_at is None and not after.locked
    # a fresh count after the lock
    assert after_failure(state, ACCOUNT_POLICY, T0 + timedelta(minutes=16)).failures == 1


def test_failures_are_forgotten_after_an_hour() -> None:
    state = _fail(9)
    later = T0 + timedelta(hours=1, seconds=1)
    assert verdict(state, ACCOUNT_POLICY, later).retry_at is None
    assert after_failure(state, ACCOUNT_POLICY, later).failures == 1


def test_memory_limiter_reports_the_lock_once_and_resets() -> None:
    limiter = MemoryRateLimiter()
    keys = ["acct:abc", "addr:192.0.2.1"]
    locked_by = []
    for i in range(10):
        locked_by.append(limiter.fail(keys, T0 + S * 100 * i).locked_keys)
    assert locked_by[:9] == [()] * 9 and locked_by[9] == ("acct:abc",)  # address: 40
    check = limiter.check(keys, T0 + S * 901)
    assert check.locked
    limiter.reset("acct:abc")
    assert limiter.check(keys, T0 + S * 901).retry_at is None


def test_address_key_has_higher_thresholds() -> None:
    limiter = MemoryRateLimiter()
    for i in range(19):
        limiter.fail(["addr:192.0.2.1"], T0 + S * i)
    assert limiter.check(["addr:192.0.2.1"], T0 + S * 19).retry_at is None
    limiter.fail(["addr:192.0.2.1"], T0 + S * 19)
    assert limiter.check(["addr:192.0.2.1"], T0 + S * 19).retry_at is not None
