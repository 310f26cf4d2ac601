"""Brute-force limiting: progressive delay, then a temporary lock, per account and per address.

The rule is a pure function of a key's :class:`LimitState` (:func:`after_failure`,
:func:`verdict`); adapters only store states. Keys are ``"<kind>:<value>"``: ``acct:`` (the
blind index of the e-mail, so unknown e-mails are limited exactly like known ones) and
``addr:`` (the client address). Default rule per account: from the 5th failure in a row, each
next attempt waits 1 s, 2 s, 4 s ... (doubling, at most 5 min) after the last failure; the 10th
failure locks the key for 15 minutes (and starts a fresh count). Failures are forgotten after
an hour without any. Addresses (shared by NAT, proxies) get 4x the thresholds. ``acct:`` and
``addr:`` count only *untrusted* attempts: a browser holding a valid device cookie of the
account is counted under its own ``dev:`` key instead (:mod:`secretum.identity.devices`), and
step-ups of a signed-in user under ``stepup:<user id>``.

Adapters: :class:`MemoryRateLimiter` (one process; the fake), :class:`DbRateLimiter` (several
processes on one database) and :class:`~secretum.identity.redis_adapters.RedisRateLimiter`
(several instances). The service calls them outside its own transactions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import RowMapping, delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from secretum.identity.tables import rate_limits


@dataclass(frozen=True)
class RateLimitPolicy:
    delay_after: int = 5
    base_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=5)
    lock_after: int = 10
    lock_for: timedelta = timedelta(minutes=15)
    forget_after: timedelta = timedelta(hours=1)

    @property
    def retention(self) -> timedelta:
        """How long a state matters after its last change (for adapter TTLs)."""
        return self.forget_after + self.lock_for + self.max_delay


ACCOUNT_POLICY = RateLimitPolicy()
ADDRESS_POLICY = RateLimitPolicy(delay_after=20, lock_after=40)
DEFAULT_POLICIES: Mapping[str, RateLimitPolicy] = {
    "acct": ACCOUNT_POLICY,  # untrusted sign-ins of an account (no valid device cookie)
    "addr": ADDRESS_POLICY,  # untrusted sign-ins from an address
    "dev": ACCOUNT_POLICY,  # one trusted device of an account (see identity.devices)
    "stepup": ACCOUNT_POLICY,  # step-ups of a signed-in user
}


@dataclass(frozen=True)
class LimitState:
    failures: int = 0
    last_failure_at: datetime | None = None
    locked_until: datetime | None = None


EMPTY = LimitState()


@dataclass(frozen=True)
class Verdict:
    """``retry_at`` None: go ahead. ``locked``: the wait is a lock. ``locked_keys``: keys
    that this very failure locked (to audit and notify once)."""

    retry_at: datetime | None = None
    locked: bool = False
    locked_keys: tuple[str, ...] = ()


def _fresh(state: LimitState, policy: RateLimitPolicy, now: datetime) -> LimitState:
    if state.locked_until is not None and state.locked_until <= now:
        state = replace(state, locked_until=None)
    if state.last_failure_at is not None and now - state.last_failure_at > policy.forget_after:
        state = replace(state, failures=0, last_failure_at=None)
    return state


def verdict(state: LimitState, policy: RateLimitPolicy, now: datetime) -> Verdict:
    """May an attempt be made at ``now`` under this key?"""
    state = _fresh(state, policy, now)
    if state.locked_until is not None:
        return Verdict(state.locked_until, locked=True)
    if state.failures >= policy.delay_after and state.last_failure_at is not None:
        steps = state.failures - policy.delay_after
        delay = min(policy.base_delay * (2 ** min(steps, 32)), policy.max_delay)
        retry_at = state.last_failure_at + delay
        if retry_at > now:
            return Verdict(retry_at)
    return Verdict()


def after_failure(state: LimitState, policy: RateLimitPolicy, now: datetime) -> LimitState:
    """The state after one more failure at ``now`` (locks on the ``lock_after``-th)."""
    state = _fresh(state, policy, now)
    failures = state.failures + 1
    if failures >= policy.lock_after:
        return LimitState(0, now, now + policy.lock_for)
    return LimitState(failures, now, state.locked_until)


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """The most restrictive of several keys' verdicts."""
    retry_at: datetime | None = None
    locked = False
    locked_keys: list[str] = []
    for v in verdicts:
        locked_keys.extend(v.locked_keys)
        if v.retry_at is not None and (retry_at is None or v.retry_at > retry_at):
            retry_at = v.retry_at
        locked = locked or v.locked
    return Verdict(retry_at, locked, tuple(locked_keys))


class RateLimiter(Protocol):
    """Counts failures per key. Implementations are safe across threads (and, for the DB and
    Redis ones, across processes and instances)."""

    def check(self, keys: Sequence[str], now: datetime) -> Verdict: ...

    def fail(self, keys: Sequence[str], now: datetime) -> Verdict:
        """Record one failure under each key; the verdict after it."""
        ...

    def reset(self, key: str) -> None:
        """Forget a key's failures (after a success)."""
        ...


class _PolicyMixin:
    policies: Mapping[str, RateLimitPolicy]

    def policy(self, key: str) -> RateLimitPolicy:
        kind = key.split(":", 1)[0]
        return self.policies.get(kind, ACCOUNT_POLICY)

    def _after(self, key: str, old: LimitState, now: datetime) -> tuple[LimitState, Verdict]:
        policy = self.policy(key)
        new = after_failure(old, policy, now)
        v = verdict(new, policy, now)
        just_locked = new.locked_until is not None and _fresh(old, policy, now).locked_until is None
        return new, replace(v, locked_keys=(key,) if just_locked else ())


class MemoryRateLimiter(_PolicyMixin):
    """In-process limiter (a single instance with one worker, and the fake for tests)."""

    def __init__(self, policies: Mapping[str, RateLimitPolicy] = DEFAULT_POLICIES) -> None:
        self.policies = policies
        self._states: dict[str, LimitState] = {}
        self._lock = threading.Lock()

    def check(self, keys: Sequence[str], now: datetime) -> Verdict:
        with self._lock:
            return combine(verdict(self._states.get(k, EMPTY), self.policy(k), now) for k in keys)

    def fail(self, keys: Sequence[str], now: datetime) -> Verdict:
        out = []
        with self._lock:
            for key in keys:
                self._states[key], v = self._after(key, self._states.get(key, EMPTY), now)
                out.append(v)
        return combine(out)

    def reset(self, key: str) -> None:
        with self._lock:
            self._states.pop(key, None)


class DbRateLimiter(_PolicyMixin):
    """Limiter on the main database (table ``identity_rate_limits``), in short transactions
    of its own: shared by every process that uses the database."""

    def __init__(
        self,
        engine: Engine,
        policies: Mapping[str, RateLimitPolicy] = DEFAULT_POLICIES,
        *,
        retries: int = 3,
    ) -> None:
        self.engine = engine
        self.policies = policies
        self._retries = retries

    @staticmethod
    def _state(row: RowMapping | None) -> LimitState:
        if row is None:
            return EMPTY
        return LimitState(row["failures"], row["last_failure_at"], row["locked_until"])

    def check(self, keys: Sequence[str], now: datetime) -> Verdict:
        if not keys:
            return Verdict()
        with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            rows = {
                r["key"]: r
                for r in conn.execute(select(rate_limits).where(rate_limits.c.key.in_(keys)))
                .mappings()
                .all()
            }
        return combine(verdict(self._state(rows.get(k)), self.policy(k), now) for k in keys)

    def fail(self, keys: Sequence[str], now: datetime) -> Verdict:
        return combine(self._fail_retrying(key, now) for key in keys)

    def _fail_retrying(self, key: str, now: datetime) -> Verdict:
        for _ in range(self._retries):
            try:
                return self._fail_one(key, now)
            except IntegrityError:  # a concurrent first failure inserted the row: go again
                continue
        return self._fail_one(key, now)

    def _fail_one(self, key: str, now: datetime) -> Verdict:
        with self.engine.begin() as conn:
            query = select(rate_limits).where(rate_limits.c.key == key)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).mappings().first()
            new, v = self._after(key, self._state(row), now)
            values = {
                "failures": new.failures,
                "last_failure_at": new.last_failure_at,
                "locked_until": new.locked_until,
            }
            if row is None:
                conn.execute(insert(rate_limits).values(key=key, **values))
            else:
                conn.execute(update(rate_limits).where(rate_limits.c.key == key).values(**values))
        return v

    def reset(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(rate_limits).where(rate_limits.c.key == key))

    def purge(self, now: datetime) -> int:
        """Delete states that no longer matter (run periodically)."""
        horizon = now - max(p.retention for p in self.policies.values())
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(rate_limits).where(
                    rate_limits.c.last_failure_at < horizon,
                    (rate_limits.c.locked_until.is_(None)) | (rate_limits.c.locked_until < now),
                )
            )
        return result.rowcount
