"""Redis adapters of the identity ports, for deployments with several instances.

:class:`RedisRateLimiter` and :class:`RedisSessionStore` keep exactly the semantics of the
database adapters (the same pure rules decide; ``now`` is a parameter), with optimistic
transactions (``WATCH``/``MULTI``) so that instances never lose each other's updates. Keys expire
(``PEXPIRE``) when their state stops mattering; the expiry is computed from ``now``, so it is
only housekeeping, never what decides a timeout. Every key starts with ``prefix``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import redis

from secretum.access.model import Role
from secretum.identity.model import NewSession, Session, utc
from secretum.identity.ratelimit import (
    DEFAULT_POLICIES,
    EMPTY,
    LimitState,
    RateLimitPolicy,
    Verdict,
    _PolicyMixin,
    combine,
    verdict,
)
from secretum.identity.sessions import Rng, SessionGrant, Timeouts, _Base, session_ref

_RETRIES = 20


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _when(value: Any) -> datetime | None:
    text = _text(value) if value is not None else ""
    return datetime.fromisoformat(text) if text else None


def _iso(value: datetime | None) -> str:
    return "" if value is None else utc(value).isoformat()


def _ms(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds() * 1000))


class RedisRateLimiter(_PolicyMixin):
    """Brute-force counters in Redis, shared by every instance using the same ``prefix``."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "secretum:",
        policies: Mapping[str, RateLimitPolicy] = DEFAULT_POLICIES,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.policies = policies

    def _key(self, key: str) -> str:
        return f"{self.prefix}rl:{key}"

    @staticmethod
    def _state(raw: Mapping[Any, Any]) -> LimitState:
        if not raw:
            return EMPTY
        fields = {_text(k): v for k, v in raw.items()}
        return LimitState(
            int(_text(fields.get("failures", b"0"))),
            _when(fields.get("last_failure_at")),
            _when(fields.get("locked_until")),
        )

    def check(self, keys: Sequence[str], now: datetime) -> Verdict:
        now = utc(now)
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(self._key(key))
        raws = pipe.execute()
        return combine(
            verdict(self._state(raw), self.policy(k), now)
            for k, raw in zip(keys, raws, strict=True)
        )

    def fail(self, keys: Sequence[str], now: datetime) -> Verdict:
        now = utc(now)
        return combine(self._fail_one(key, now) for key in keys)

    def _fail_one(self, key: str, now: datetime) -> Verdict:
        name = self._key(key)
        for _ in range(_RETRIES):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(name)  # type: ignore[no-untyped-call]
                    old = self._state(pipe.hgetall(name))
                    new, v = self._after(key, old, now)
                    pipe.multi()
                    pipe.hset(
                        name,
                        mapping={
                            "failures": str(new.failures),
                            "last_failure_at": _iso(new.last_failure_at),
                            "locked_until": _iso(new.locked_until),
                        },
                    )
                    pipe.pexpire(name, _ms(self.policy(key).retention))
                    pipe.execute()
                    return v
                except redis.WatchError:  # another instance counted first: recount
                    continue
        raise RuntimeError(f"rate limiter key kept changing under {_RETRIES} attempts")

    def reset(self, key: str) -> None:
        self.client.delete(self._key(key))


_TOUCH = """
if redis.call('exists', KEYS[1]) == 1 then
  redis.call('hset', KEYS[1], 'last_seen_at', ARGV[1])
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class RedisSessionStore(_Base):
    """Sessions in Redis: hash ``<prefix>s:<ref>`` per session, set ``<prefix>u:<user>`` of a
    user's refs. Only the SHA-256 of a session id is ever sent to Redis."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "secretum:",
        timeouts: Timeouts | None = None,
        *,
        rng: Rng = os.urandom,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.timeouts = timeouts or Timeouts()
        self._rng = rng
        self._touch = client.register_script(_TOUCH)

    def _skey(self, ref: str) -> str:
        return f"{self.prefix}s:{ref}"

    def _ukey(self, user_id: str) -> str:
        return f"{self.prefix}u:{user_id}"

    def _ttl(self, session: Session, now: datetime) -> int:
        return _ms(self.timeouts.expires_at(session) - now)

    @staticmethod
    def _fields(session: Session) -> dict[str, str]:
        return {
            "user_id": session.user_id,
            "role": str(session.role),
            "specialty": session.specialty or "",
            "created_at": _iso(session.created_at),
            "auth_at": _iso(session.auth_at),
            "last_seen_at": _iso(session.last_seen_at),
            "strong_auth_at": _iso(session.strong_auth_at),
            "csrf_token": session.csrf_token,
            "device_ref": session.device_ref or "",
            "enrolment_only": "1" if session.enrolment_only else "0",
        }

    @staticmethod
    def _session(ref: str, raw: Mapping[Any, Any]) -> Session | None:
        if not raw:
            return None
        f = {_text(k): _text(v) for k, v in raw.items()}
        try:
            return Session(
                ref=ref,
                user_id=f["user_id"],
                role=Role(f["role"]),
                created_at=_when(f["created_at"]),  # type: ignore[arg-type]
                auth_at=_when(f["auth_at"]),  # type: ignore[arg-type]
                last_seen_at=_when(f["last_seen_at"]),  # type: ignore[arg-type]
                strong_auth_at=_when(f["strong_auth_at"]),
                csrf_token=f["csrf_token"],
                device_ref=f["device_ref"] or None,
                specialty=f["specialty"] or None,
                enrolment_only=f["enrolment_only"] == "1",
            )
        except (KeyError, ValueError):  # a partial hash is no session
            return None

    def _store(self, pipe: Any, session: Session, now: datetime) -> None:
        pipe.hset(self._skey(session.ref), mapping=self._fields(session))
        pipe.pexpire(self._skey(session.ref), self._ttl(session, now))
        pipe.sadd(self._ukey(session.user_id), session.ref)
        pipe.pexpire(self._ukey(session.user_id), _ms(self.timeouts.absolute))

    def create(self, grant: SessionGrant, now: datetime) -> NewSession:
        now = utc(now)
        session_id, session = self._new(grant, now)
        pipe = self.client.pipeline(transaction=True)
        self._store(pipe, session, now)
        pipe.execute()
        return NewSession(session_id, session)

    def _get(self, ref: str) -> Session | None:
        return self._session(ref, self.client.hgetall(self._skey(ref)))

    def resolve(self, session_id: str, now: datetime) -> Session | None:
        now = utc(now)
        ref = session_ref(session_id)
        session = self._get(ref)
        if session is None:
            return None
        if not self.timeouts.alive(session, now):
            self._drop(session)
            return None
        if now - session.last_seen_at >= self.timeouts.touch_interval:
            session = replace(session, last_seen_at=now)
            if not self._touch(keys=[self._skey(ref)], args=[_iso(now), self._ttl(session, now)]):
                return None  # revoked meanwhile
        return session

    def rotate(
        self,
        session_id: str,
        now: datetime,
        *,
        strong_auth_at: datetime | None = None,
        enrolment_only: bool | None = None,
    ) -> NewSession | None:
        now = utc(now)
        ref = session_ref(session_id)
        name = self._skey(ref)
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(name)  # type: ignore[no-untyped-call]
                old = self._session(ref, pipe.hgetall(name))
                if old is None or not self.timeouts.alive(old, now):
                    return None
                new_id, new = self._rotated(old, now, strong_auth_at, enrolment_only)
                pipe.multi()
                pipe.delete(name)
                pipe.srem(self._ukey(old.user_id), ref)
                self._store(pipe, new, now)
                pipe.execute()
            except redis.WatchError:  # rotated or revoked concurrently: the old id is spent
                return None
        return NewSession(new_id, new)

    def _drop(self, session: Session) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._skey(session.ref))
        pipe.srem(self._ukey(session.user_id), session.ref)
        return bool(pipe.execute()[0])

    def revoke(self, session_id: str) -> bool:
        session = self._get(session_ref(session_id))
        return session is not None and self._drop(session)

    def revoke_ref(self, user_id: str, ref: str) -> bool:
        session = self._get(ref)
        if session is None or session.user_id != user_id:
            return False
        return self._drop(session)

    def revoke_user(self, user_id: str, *, keep_ref: str | None = None) -> int:
        refs = [_text(r) for r in self.client.smembers(self._ukey(user_id))]
        doomed = [r for r in refs if r != keep_ref]
        if not doomed:
            return 0
        pipe = self.client.pipeline(transaction=True)
        for ref in doomed:
            pipe.delete(self._skey(ref))
        pipe.srem(self._ukey(user_id), *doomed)
        return sum(int(n) for n in pipe.execute()[:-1])

    def list_user(self, user_id: str, now: datetime) -> list[Session]:
        now = utc(now)
        refs = sorted(_text(r) for r in self.client.smembers(self._ukey(user_id)))
        found = []
        for ref in refs:
            session = self._get(ref)
            if session is None:
                self.client.srem(self._ukey(user_id), ref)
            elif self.timeouts.alive(session, now):
                found.append(session)
        return sorted(found, key=lambda s: s.created_at, reverse=True)
