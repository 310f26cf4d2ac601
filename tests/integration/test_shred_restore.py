"""Crypto-shredding survives restoring a copy of the main database taken before it.

What shredding destroys (the wrapped data key) lives in the key vault, not in the main
database, so a database backup never brings it back. Done with real backup tools: SQLite's
online backup API, and pg_dump / psql for PostgreSQL.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from secretum.crypto.errors import KeyShreddedError
from secretum.crypto.kms.fake import FakeKMS
from secretum.keys.keyring import KeyRing
from secretum.keys.tables import data_keys
from secretum.records.store import RecordStore
from secretum.storage.db import make_engine


def _backup(engine: Engine, tmp_path: Path) -> Path:
    if engine.dialect.name == "sqlite":
        target = tmp_path / "backup.db"
        src = sqlite3.connect(engine.url.database)
        dst = sqlite3.connect(target)
        src.backup(dst)
        src.close()
        dst.close()
        return target
    schema = engine.url.query["options"].split("=", 1)[1]  # type: ignore[union-attr]
    dump = tmp_path / "backup.sql"
    subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "-n", schema, "-f", str(dump), "test"],
        check=True,
    )
    return dump


def _restore(engine: Engine, backup: Path) -> Engine:
    url = engine.url
    engine.dispose()
    if url.get_backend_name() == "sqlite":
        db = Path(url.database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        shutil.copy(backup, db)
        return make_engine(url.render_as_string(hide_password=False))
    schema = url.query["options"].split("=", 1)[1]  # type: ignore[union-attr]
    with make_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test").begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    subprocess.run(
        [
            "psql",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-f",
            str(backup),
        ],
        check=True,
        capture_output=True,
    )
    return make_engine(url.render_as_string(hide_password=False))


def test_shredding_survives_restore_of_older_database(
    engine: Engine, vault_engine: Engine, tmp_path: Path
) -> None:
    kms = FakeKMS()
    store = RecordStore(KeyRing(vault_engine, kms))
    for rid, patient in (("obs-1", "pat-1"), ("obs-2", "pat-2")):
        with engine.begin() as conn:
            store.put(
                conn,
                patient_id=patient,
                record_type="Observation",
                record_id=rid,
                payload=b"secret medical",
            )
    backup = _backup(engine, tmp_path)

    with vault_engine.connect() as conn:
        wrapped = conn.execute(
            select(data_keys.c.wrapped).where(data_keys.c.owner_id == "pat-1")
        ).scalar_one()
    store.keyring.shred("pat-1")

    restored = _restore(engine, backup)
    try:
        # A fresh instance (no cache), the same KMS, the restored main database.
        fresh = RecordStore(KeyRing(vault_engine, kms))
        with restored.connect() as conn:
            assert fresh.get(conn, "obs-2").payload == b"secret medical"  # the restore worked
            with pytest.raises(KeyShreddedError):
                fresh.get(conn, "obs-1")
    finally:
        restored.dispose()

    if vault_engine.dialect.name == "sqlite":
        vault_db = Path(vault_engine.url.database or "")
        for path in (vault_db, Path(f"{vault_db}-wal")):
            if path.exists():
                assert wrapped not in path.read_bytes(), f"wrapped key still in {path.name}"
