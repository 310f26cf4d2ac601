"""Session stores: one contract, three adapters (memory, database on SQLite and PostgreSQL,
Redis). Timeouts are driven by ``now``; nothing sleeps."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.engine import Engine

from secretum.access.model import Role
from secretum.identity.redis_adapters import RedisSessionStore
from secretum.identity.sessions import (
    DbSessionStore,
    MemorySessionStore,
    SessionGrant,
    SessionStore,
    session_ref,
)
from secretum.identity.tables import sessions as sessions_table

T0 = datetime(2030, 3, 1, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
GRANT = SessionGrant("u1", Role.PRACTITIONER, specialty="radiology", device_ref="d" * 64)


@pytest.fixture
def redis_prefix() -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running at 127.0.0.1:6379 (CI starts it)")
    prefix = f"secretum-test:{secrets.token_hex(8)}:"
    yield client, prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


class SessionStoreContract:
    """Every adapter must pass these."""

    def test_ids_are_random_256_bit_and_csrf_per_session(self, store: SessionStore) -> None:
        a = store.create(GRANT, T0)
        b = store.create(GRANT, T0)
        assert len(a.session_id) >= 43 and a.session_id != b.session_id
        assert a.session.csrf_token != b.session.csrf_token
        assert a.session.ref == hashlib.sha256(a.session_id.encode()).hexdigest()
        found = store.resolve(a.session_id, T0)
        assert found is not None
        assert (found.user_id, found.role, found.specialty) == (
            "u1",
            Role.PRACTITIONER,
            "radiology",
        )
        assert found.strong_auth_at is None and found.device_ref == "d" * 64
        assert store.resolve("not-a-session", T0) is None

    def test_idle_timeout(self, store: SessionStore) -> None:
        new = store.create(GRANT, T0)
        assert store.resolve(new.session_id, T0 + 14 * MIN) is not None  # touches
        assert store.resolve(new.session_id, T0 + 28 * MIN) is not None  # 14 min idle
        assert store.resolve(new.session_id, T0 + 43 * MIN) is None  # 15 min idle
        assert store.resolve(new.session_id, T0 + 29 * MIN) is None  # gone for good

    def test_touch_is_throttled_to_the_touch_interval(self, store: SessionStore) -> None:
        new = store.create(GRANT, T0)
        seen = store.resolve(new.session_id, T0 + timedelta(seconds=10))
        assert seen is not None and seen.last_seen_at == T0
        seen = store.resolve(new.session_id, T0 + timedelta(seconds=30))
        assert seen is not None and seen.last_seen_at == T0 + timedelta(seconds=30)

    def test_absolute_timeout(self, store: SessionStore) -> None:
        new = store.create(GRANT, T0)
        when = T0
        while when < T0 + timedelta(hours=11, minutes=50):
            when += 10 * MIN
            assert store.resolve(new.session_id, when) is not None
        assert store.resolve(new.session_id, T0 + timedelta(hours=11, minutes=59)) is not None
        assert store.resolve(new.session_id, T0 + timedelta(hours=12)) is None

    def test_rotate_gives_a_new_id_and_kills_the_old(self, store: SessionStore) -> None:
        old = store.create(GRANT, T0)
        rotated = store.rotate(old.session_id, T0 + MIN, strong_auth_at=T0 + MIN)
        assert rotated is not None
        assert rotated.session_id != old.session_id
        assert rotated.session.csrf_token != old.session.csrf_token
        assert store.resolve(old.session_id, T0 + MIN) is None
        assert store.rotate(old.session_id, T0 + MIN) is None  # spent
        now = store.resolve(rotated.session_id, T0 + MIN)
        assert now is not None and now.strong_auth_at == T0 + MIN
        assert now.created_at == T0  # the absolute timeout still counts from the sign-in
        assert store.resolve(rotated.session_id, T0 + timedelta(hours=12)) is None

    def test_rotate_ends_enrolment(self, store: SessionStore) -> None:
        old = store.create(SessionGrant("u1", Role.ADMIN, enrolment_only=True), T0)
        assert old.session.enrolment_only
        rotated = store.rotate(old.session_id, T0, strong_auth_at=T0, enrolment_only=False)
        assert rotated is not None and not rotated.session.enrolment_only
        assert store.rotate("unknown", T0) is None

    def test_revoke_one_all_and_list(self, store: SessionStore) -> None:
        a = store.create(GRANT, T0)
        b = store.create(GRANT, T0 + MIN)
        c = store.create(GRANT, T0 + 2 * MIN)
        other = store.create(SessionGrant("u2", Role.PATIENT), T0)
        refs = [s.ref for s in store.list_user("u1", T0 + 3 * MIN)]
        assert refs == [c.session.ref, b.session.ref, a.session.ref]
        assert store.revoke(a.session_id)
        assert not store.revoke(a.session_id)
        assert store.resolve(a.session_id, T0 + 3 * MIN) is None
        assert not store.revoke_ref("u2", b.session.ref)  # not u2's session
        assert store.revoke_ref("u1", b.session.ref)
        d = store.create(GRANT, T0 + 3 * MIN)
        assert store.revoke_user("u1", keep_ref=d.session.ref) == 1  # c
        assert [s.ref for s in store.list_user("u1", T0 + 3 * MIN)] == [d.session.ref]
        assert store.revoke_user("u1") == 1
        assert store.list_user("u1", T0 + 3 * MIN) == []
        assert store.resolve(other.session_id, T0 + 3 * MIN) is not None

    def test_list_skips_timed_out_sessions(self, store: SessionStore) -> None:
        store.create(GRANT, T0)
        fresh = store.create(GRANT, T0 + 20 * MIN)
        assert [s.ref for s in store.list_user("u1", T0 + 21 * MIN)] == [fresh.session.ref]


class TestMemorySessionStore(SessionStoreContract):
    @pytest.fixture
    def store(self) -> SessionStore:
        return MemorySessionStore()


class TestDbSessionStore(SessionStoreContract):
    @pytest.fixture
    def store(self, engine: Engine) -> SessionStore:
        return DbSessionStore(engine)

    def test_the_raw_id_is_never_stored(self, engine: Engine) -> None:
        store = DbSessionStore(engine)
        new = store.create(GRANT, T0)
        rotated = store.rotate(new.session_id, T0 + MIN, strong_auth_at=T0 + MIN)
        assert rotated is not None
        with engine.connect() as conn:
            rows = conn.execute(select(sessions_table)).all()
        dump = repr(rows)
        for secret in (new.session_id, rotated.session_id):
            assert secret not in dump
        assert [r.ref for r in rows] == [session_ref(rotated.session_id)]

    def test_purge_deletes_timed_out_rows(self, engine: Engine) -> None:
        store = DbSessionStore(engine)
        store.create(GRANT, T0)
        keep = store.create(GRANT, T0 + 30 * MIN)
        assert store.purge(T0 + 31 * MIN) == 1
        assert store.resolve(keep.session_id, T0 + 31 * MIN) is not None


class TestRedisSessionStore(SessionStoreContract):
    @pytest.fixture
    def store(self, redis_prefix: tuple[redis.Redis, str]) -> SessionStore:
        client, prefix = redis_prefix
        return RedisSessionStore(client, prefix)

    def test_the_raw_id_never_reaches_redis(self, redis_prefix: tuple[redis.Redis, str]) -> None:
        client, prefix = redis_prefix
        store = RedisSessionStore(client, prefix)
        new = store.create(GRANT, T0)
        dump = []
        for key in client.scan_iter(match=prefix + "*"):
            dump.append(key)
            dump.append(
                repr(client.hgetall(key) if client.type(key) == b"hash" else client.smembers(key))
            )
        assert dump and new.session_id not in repr(dump)

    def test_two_instances_share_sessions(self, redis_prefix: tuple[redis.Redis, str]) -> None:
        client, prefix = redis_prefix
        a = RedisSessionStore(client, prefix)
        b = RedisSessionStore(redis.Redis(host="127.0.0.1", port=6379), prefix)
        new = a.create(GRANT, T0)
        assert b.resolve(new.session_id, T0 + MIN) is not None
        assert b.revoke(new.session_id)
        assert a.resolve(new.session_id, T0 + MIN) is None
