"""Server-side sessions: opaque random ids, idle and absolute timeouts, rotation.

A session id is 256 random bits, base64url (``secrets.token_urlsafe(32)``-shaped); stores keep
only its SHA-256 (:func:`session_ref`), so a leaked store yields no usable session. Each
session carries its own random CSRF token. A new id is issued at every sign-in (a new session)
and at every privilege change (:meth:`SessionStore.rotate`: step-up, end of MFA enrolment);
rotation keeps ``created_at``, so the absolute timeout still counts from the sign-in.

``resolve`` enforces both timeouts (default idle 15 min, absolute 12 h) and refreshes
``last_seen_at``, writing it at most every ``touch_interval`` (default 30 s) so that reading
pages does not cost a database write each time; the idle timeout is therefore exact to
within ``touch_interval``.

Adapters: :class:`MemorySessionStore` (fake, one process), :class:`DbSessionStore`
(table ``identity_sessions``) and :class:`~secretum.identity.redis_adapters.RedisSessionStore`
(several instances). They run their own short transactions: call them outside yours.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import RowMapping, bindparam, delete, insert, select, update
from sqlalchemy.engine import Engine

from secretum.access.model import Role
from secretum.identity.model import NewSession, Session, utc
from secretum.identity.tables import sessions
from secretum.storage.db import reader

IDLE_TIMEOUT = timedelta(minutes=15)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
TOUCH_INTERVAL = timedelta(seconds=30)
SESSION_ID_BYTES = 32

Rng = Callable[[int], bytes]


def session_ref(session_id: str) -> str:
    """SHA-256 (hex) of a session id: what stores keep instead of the id."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def _token(rng: Rng, size: int = SESSION_ID_BYTES) -> str:
    return base64.urlsafe_b64encode(rng(size)).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SessionGrant:
    """What a sign-in grants; the store adds ids, times and the CSRF token."""

    user_id: str
    role: Role
    specialty: str | None = None
    strong_auth_at: datetime | None = None
    device_ref: str | None = None
    enrolment_only: bool = False


@dataclass(frozen=True)
class Timeouts:
    idle: timedelta = IDLE_TIMEOUT
    absolute: timedelta = ABSOLUTE_TIMEOUT
    touch_interval: timedelta = TOUCH_INTERVAL

    def alive(self, session: Session, now: datetime) -> bool:
        return now - session.last_seen_at < self.idle and now - session.created_at < self.absolute

    def expires_at(self, session: Session) -> datetime:
        return min(session.last_seen_at + self.idle, session.created_at + self.absolute)


class SessionStore(Protocol):
    """Where sessions live. ``now`` is always a parameter (tests never sleep)."""

    timeouts: Timeouts

    def create(self, grant: SessionGrant, now: datetime) -> NewSession: ...

    def resolve(self, session_id: str, now: datetime) -> Session | None:
        """The live session of this id (touched), or None (unknown, revoked, timed out)."""
        ...

    def rotate(
        self,
        session_id: str,
        now: datetime,
        *,
        strong_auth_at: datetime | None = None,
        enrolment_only: bool | None = None,
    ) -> NewSession | None:
        """Replace the id of a live session (the old id stops working); None values keep."""
        ...

    def revoke(self, session_id: str) -> bool: ...

    def revoke_ref(self, user_id: str, ref: str) -> bool:
        """Revoke one session of ``user_id`` by its ref (from :meth:`list_user`)."""
        ...

    def revoke_user(self, user_id: str, *, keep_ref: str | None = None) -> int:
        """Revoke every session of ``user_id`` (but ``keep_ref``); how many."""
        ...

    def list_user(self, user_id: str, now: datetime) -> list[Session]:
        """The live sessions of ``user_id``, newest first."""
        ...


class _Base:
    """What every adapter shares: building sessions and applying rotation changes."""

    timeouts: Timeouts
    _rng: Rng

    def _new(self, grant: SessionGrant, now: datetime) -> tuple[str, Session]:
        now = utc(now)
        session_id = _token(self._rng)
        session = Session(
            ref=session_ref(session_id),
            user_id=grant.user_id,
            role=grant.role,
            created_at=now,
            auth_at=now,
            last_seen_at=now,
            strong_auth_at=grant.strong_auth_at,
            csrf_token=_token(self._rng),
            device_ref=grant.device_ref,
            specialty=grant.specialty,
            enrolment_only=grant.enrolment_only,
        )
        return session_id, session

    def _rotated(
        self,
        old: Session,
        now: datetime,
        strong_auth_at: datetime | None,
        enrolment_only: bool | None,
    ) -> tuple[str, Session]:
        session_id = _token(self._rng)
        changes: dict[str, Any] = {
            "ref": session_ref(session_id),
            "last_seen_at": utc(now),
            "csrf_token": _token(self._rng),
        }
        if strong_auth_at is not None:
            changes["strong_auth_at"] = utc(strong_auth_at)
        if enrolment_only is not None:
            changes["enrolment_only"] = enrolment_only
        return session_id, replace(old, **changes)


class MemorySessionStore(_Base):
    """Sessions in a dict (one process; the fake for unit tests)."""

    def __init__(self, timeouts: Timeouts | None = None, *, rng: Rng = os.urandom) -> None:
        self.timeouts = timeouts or Timeouts()
        self._rng = rng
        self._by_ref: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, grant: SessionGrant, now: datetime) -> NewSession:
        session_id, session = self._new(grant, now)
        with self._lock:
            self._by_ref[session.ref] = session
        return NewSession(session_id, session)

    def _live(self, ref: str, now: datetime) -> Session | None:
        session = self._by_ref.get(ref)
        if session is None:
            return None
        if not self.timeouts.alive(session, now):
            del self._by_ref[ref]
            return None
        return session

    def resolve(self, session_id: str, now: datetime) -> Session | None:
        now = utc(now)
        with self._lock:
            session = self._live(session_ref(session_id), now)
            if session is None:
                return None
            if now - session.last_seen_at >= self.timeouts.touch_interval:
                session = replace(session, last_seen_at=now)
                self._by_ref[session.ref] = session
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
        with self._lock:
            old = self._live(session_ref(session_id), now)
            if old is None:
                return None
            new_id, new = self._rotated(old, now, strong_auth_at, enrolment_only)
            del self._by_ref[old.ref]
            self._by_ref[new.ref] = new
        return NewSession(new_id, new)

    def revoke(self, session_id: str) -> bool:
        with self._lock:
            return self._by_ref.pop(session_ref(session_id), None) is not None

    def revoke_ref(self, user_id: str, ref: str) -> bool:
        with self._lock:
            session = self._by_ref.get(ref)
            if session is None or session.user_id != user_id:
                return False
            del self._by_ref[ref]
            return True

    def revoke_user(self, user_id: str, *, keep_ref: str | None = None) -> int:
        with self._lock:
            refs = [r for r, s in self._by_ref.items() if s.user_id == user_id and r != keep_ref]
            for ref in refs:
                del self._by_ref[ref]
            return len(refs)

    def list_user(self, user_id: str, now: datetime) -> list[Session]:
        now = utc(now)
        with self._lock:
            found = [
                s
                for r in list(self._by_ref)
                if (s := self._live(r, now)) is not None and s.user_id == user_id
            ]
        return sorted(found, key=lambda s: s.created_at, reverse=True)


def _row_values(session: Session) -> dict[str, Any]:
    return {
        "ref": session.ref,
        "user_id": session.user_id,
        "role": str(session.role),
        "specialty": session.specialty,
        "created_at": session.created_at,
        "auth_at": session.auth_at,
        "last_seen_at": session.last_seen_at,
        "strong_auth_at": session.strong_auth_at,
        "csrf_token": session.csrf_token,
        "device_ref": session.device_ref,
        "enrolment_only": session.enrolment_only,
    }


def _from_row(row: RowMapping) -> Session:
    return Session(
        ref=row["ref"],
        user_id=row["user_id"],
        role=Role(row["role"]),
        created_at=row["created_at"],
        auth_at=row["auth_at"],
        last_seen_at=row["last_seen_at"],
        strong_auth_at=row["strong_auth_at"],
        csrf_token=row["csrf_token"],
        device_ref=row["device_ref"],
        specialty=row["specialty"],
        enrolment_only=bool(row["enrolment_only"]),
    )


#: Built once: SQLAlchemy then reuses their compiled form (and their cache keys) on every request.
_BY_REF = select(sessions).where(sessions.c.ref == bindparam("ref"))
_TOUCH = (  # (bind names that are not column names: an UPDATE reserves those for SET)
    update(sessions)
    .where(sessions.c.ref == bindparam("touched_ref"))
    .values(last_seen_at=bindparam("seen_at", type_=sessions.c.last_seen_at.type))
)


class DbSessionStore(_Base):
    """Sessions in the main database; only the SHA-256 of each id is stored."""

    def __init__(
        self, engine: Engine, timeouts: Timeouts | None = None, *, rng: Rng = os.urandom
    ) -> None:
        self.engine = engine
        self.timeouts = timeouts or Timeouts()
        self._rng = rng
        # Lookups (one SELECT) need no transaction of their own (see storage.db.reader).
        self._lookups = reader(engine)

    def create(self, grant: SessionGrant, now: datetime) -> NewSession:
        session_id, session = self._new(grant, now)
        with self.engine.begin() as conn:
            conn.execute(insert(sessions).values(**_row_values(session)))
        return NewSession(session_id, session)

    def _read(self, ref: str) -> Session | None:
        with self._lookups.connect() as conn:
            row = conn.execute(_BY_REF, {"ref": ref}).mappings().first()
        return None if row is None else _from_row(row)

    def resolve(self, session_id: str, now: datetime) -> Session | None:
        now = utc(now)
        ref = session_ref(session_id)
        session = self._read(ref)
        if session is None:
            return None
        if not self.timeouts.alive(session, now):
            self._delete(ref)
            return None
        if now - session.last_seen_at >= self.timeouts.touch_interval:
            with self.engine.begin() as conn:
                done = conn.execute(_TOUCH, {"touched_ref": ref, "seen_at": now}).rowcount
            if not done:  # revoked meanwhile
                return None
            session = replace(session, last_seen_at=now)
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
        old = self._read(ref)
        if old is None or not self.timeouts.alive(old, now):
            return None
        new_id, new = self._rotated(old, now, strong_auth_at, enrolment_only)
        with self.engine.begin() as conn:
            # the old row goes first: of two concurrent rotations only one wins
            if conn.execute(delete(sessions).where(sessions.c.ref == ref)).rowcount != 1:
                return None
            conn.execute(insert(sessions).values(**_row_values(new)))
        return NewSession(new_id, new)

    def _delete(self, ref: str, user_id: str | None = None) -> bool:
        query = delete(sessions).where(sessions.c.ref == ref)
        if user_id is not None:
            query = query.where(sessions.c.user_id == user_id)
        with self.engine.begin() as conn:
            return bool(conn.execute(query).rowcount)

    def revoke(self, session_id: str) -> bool:
        return self._delete(session_ref(session_id))

    def revoke_ref(self, user_id: str, ref: str) -> bool:
        return self._delete(ref, user_id)

    def revoke_user(self, user_id: str, *, keep_ref: str | None = None) -> int:
        query = delete(sessions).where(sessions.c.user_id == user_id)
        if keep_ref is not None:
            query = query.where(sessions.c.ref != keep_ref)
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount

    def list_user(self, user_id: str, now: datetime) -> list[Session]:
        now = utc(now)
        with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            rows = conn.execute(
                select(sessions)
                .where(sessions.c.user_id == user_id)
                .order_by(sessions.c.created_at.desc())
            ).mappings()
            found = [_from_row(r) for r in rows]
        return [s for s in found if self.timeouts.alive(s, now)]

    def purge(self, now: datetime) -> int:
        """Delete timed-out sessions (run periodically)."""
        now = utc(now)
        with self.engine.begin() as conn:
            return conn.execute(
                delete(sessions).where(
                    (sessions.c.last_seen_at <= now - self.timeouts.idle)
                    | (sessions.c.created_at <= now - self.timeouts.absolute)
                )
            ).rowcount
