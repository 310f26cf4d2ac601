"""Key ring, sealed records, KEK rotation and crypto-shredding on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from secretum.crypto.errors import IntegrityError, KeyNotFoundError, KeyShreddedError
from secretum.crypto.kms.fake import FakeKMS
from secretum.keys.keyring import KeyRing
from secretum.keys.rotation import RetireRefused, retire, rotate
from secretum.keys.tables import data_keys
from secretum.records.store import RecordStore
from secretum.records.tables import sealed_records


@pytest.fixture
def keyring(vault_engine: Engine) -> Iterator[KeyRing]:
    yield KeyRing(vault_engine, FakeKMS())


@pytest.fixture
def store(keyring: KeyRing) -> RecordStore:
    return RecordStore(keyring)


def _put(engine: Engine, store: RecordStore, patient: str, rid: str, payload: bytes) -> int:
    with engine.begin() as conn:
        return store.put(
            conn, patient_id=patient, record_type="Observation", record_id=rid, payload=payload
        )


def _get(engine: Engine, store: RecordStore, rid: str, version: int | None = None) -> bytes:
    with engine.connect() as conn:
        return store.get(conn, rid, version).payload


def test_data_keys_are_per_patient_and_stable(keyring: KeyRing) -> None:
    a = keyring.data_key("pat-a", create=True)
    b = keyring.data_key("pat-b", create=True)
    assert a.key_id != b.key_id
    keyring.forget_cached_keys()
    assert keyring.data_key("pat-a").key_id == a.key_id
    with pytest.raises(KeyNotFoundError):
        keyring.data_key("pat-unknown")


def test_records_round_trip_with_history(engine: Engine, store: RecordStore) -> None:
    assert _put(engine, store, "pat-1", "obs-1", b"v1: glycemie 1.1 g/L") == 1
    assert _put(engine, store, "pat-1", "obs-1", b"v2: glycemie 0.9 g/L") == 2
    assert _get(engine, store, "obs-1") == b"v2: glycemie 0.9 g/L"
    assert _get(engine, store, "obs-1", 1) == b"v1: glycemie 1.1 g/L"
    with engine.connect() as conn:
        assert [r.version for r in store.history(conn, "obs-1")] == [1, 2]
    with pytest.raises(ValueError), engine.begin() as conn:
        store.put(
            conn, patient_id="pat-2", record_type="Observation", record_id="obs-1", payload=b"x"
        )


def test_database_holds_no_clear_payload(engine: Engine, store: RecordStore) -> None:
    _put(engine, store, "pat-1", "obs-1", b"seropositif VIH")
    with engine.connect() as conn:
        sealed = conn.execute(select(sealed_records.c.sealed)).scalar_one()
    assert b"seropositif" not in sealed


def test_tampered_byte_in_database_is_refused(engine: Engine, store: RecordStore) -> None:
    _put(engine, store, "pat-1", "obs-1", b"allergie penicilline")
    with engine.begin() as conn:
        sealed = bytearray(conn.execute(select(sealed_records.c.sealed)).scalar_one())
        sealed[-5] ^= 0x01
        conn.execute(update(sealed_records).values(sealed=bytes(sealed)))
    with pytest.raises(IntegrityError):
        _get(engine, store, "obs-1")


def test_ciphertext_moved_to_another_record_is_refused(engine: Engine, store: RecordStore) -> None:
    _put(engine, store, "pat-1", "obs-1", b"first")
    _put(engine, store, "pat-1", "obs-2", b"second")
    with engine.begin() as conn:
        first = conn.execute(
            select(sealed_records.c.sealed).where(sealed_records.c.record_id == "obs-1")
        ).scalar_one()
        conn.execute(
            update(sealed_records).where(sealed_records.c.record_id == "obs-2").values(sealed=first)
        )
    with pytest.raises(IntegrityError):
        _get(engine, store, "obs-2")


def test_rotation_rewraps_everything_and_retires(
    engine: Engine, store: RecordStore, keyring: KeyRing
) -> None:
    for i in range(30):
        _put(engine, store, f"pat-{i}", f"obs-{i}", f"note {i}".encode())
    keyring.secret("audit-signing-key", generate=lambda: b"s" * 32)
    seen: list[tuple[int, int]] = []
    report = rotate(keyring, batch_size=7, progress=lambda d, t: seen.append((d, t)))
    assert (report.to_version, report.rewrapped, report.resumed) == (2, 31, False)
    assert seen[-1] == (31, 31)
    assert keyring.count_below(2) == 0
    retire(keyring, 2)
    keyring.forget_cached_keys()
    assert [_get(engine, store, f"obs-{i}") for i in range(30)] == [
        f"note {i}".encode() for i in range(30)
    ]
    assert keyring.secret("audit-signing-key") == b"s" * 32


def test_interrupted_rotation_resumes_and_blocks_retirement(
    engine: Engine, store: RecordStore, keyring: KeyRing
) -> None:
    for i in range(25):
        _put(engine, store, f"pat-{i}", f"obs-{i}", b"x")
    first = rotate(keyring, batch_size=10, max_batches=1)  # "crashes" after one batch
    assert first.rewrapped == 10 and keyring.count_below(2) == 15
    with pytest.raises(RetireRefused):
        retire(keyring, 2)
    second = rotate(keyring, batch_size=10)
    assert second.resumed and second.to_version == 2 and second.rewrapped == 15
    assert keyring.kms.versions() == [1, 2]
    retire(keyring, 2)
    keyring.forget_cached_keys()
    assert _get(engine, store, "obs-24") == b"x"


def test_rotation_while_reads_and_writes_go_on(
    engine: Engine, store: RecordStore, keyring: KeyRing
) -> None:
    for i in range(60):
        _put(engine, store, f"pat-{i}", f"obs-{i}", f"note {i}".encode())
    errors: list[BaseException] = []
    stop = threading.Event()
    counts = {"reads": 0, "writes": 0}

    def reader() -> None:
        rng = random.Random(1)
        while not stop.is_set():
            i = rng.randrange(60)
            try:
                keyring.forget_cached_keys()  # force unwraps during the rotation
                assert _get(engine, store, f"obs-{i}") == f"note {i}".encode()
                counts["reads"] += 1
            except BaseException as exc:
                errors.append(exc)

    def writer() -> None:
        n = 0
        while not stop.is_set():
            try:
                _put(engine, store, f"new-{n}", f"new-obs-{n}", b"written during rotation")
                counts["writes"] += 1
                n += 1
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    try:
        report = rotate(keyring, batch_size=5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert counts["reads"] > 0 and counts["writes"] > 0
    assert report.to_version == 2 and keyring.count_below(2) == 0
    retire(keyring, 2)
    keyring.forget_cached_keys()
    assert _get(engine, store, "new-obs-0") == b"written during rotation"


def test_shredding_makes_records_unreadable(
    engine: Engine, store: RecordStore, keyring: KeyRing
) -> None:
    _put(engine, store, "pat-1", "obs-1", b"to be forgotten")
    _put(engine, store, "pat-2", "obs-2", b"kept")
    shredded = keyring.shred("pat-1")
    assert shredded.owner_id == "pat-1"
    with pytest.raises(KeyShreddedError):
        _get(engine, store, "obs-1")
    with pytest.raises(KeyShreddedError):  # never silently replaced by a new key
        keyring.data_key("pat-1", create=True)
    assert _get(engine, store, "obs-2") == b"kept"
    assert keyring.is_shredded("pat-1") and not keyring.is_shredded("pat-2")
    with engine.connect(), keyring.vault.connect() as vault:
        assert (
            vault.execute(select(data_keys).where(data_keys.c.owner_id == "pat-1")).first() is None
        )
