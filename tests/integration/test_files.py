"""Encrypted files end to end: database row + blob on disk + patient key."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from secretum.crypto.errors import IntegrityError, KeyShreddedError
from secretum.crypto.kms.fake import FakeKMS
from secretum.keys.keyring import KeyRing
from secretum.records.files import FileStore
from secretum.records.tables import encrypted_files
from secretum.storage.blobs import FileSystemBlobStore


@pytest.fixture
def files(vault_engine: Engine, tmp_path: Path) -> FileStore:
    return FileStore(KeyRing(vault_engine, FakeKMS()), FileSystemBlobStore(tmp_path / "blobs"))


def _blobs(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]


def test_put_open_range_and_nothing_clear_on_disk(
    engine: Engine, files: FileStore, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17) + b"compte rendu IRM: lesion"
    with engine.begin() as conn:
        stored = files.put(
            conn, patient_id="pat-1", file_type="document", file_id="doc-1", src=io.BytesIO(data)
        )
    assert stored.size == len(data) and stored.version == 1
    (blob,) = _blobs(tmp_path)
    assert b"compte rendu" not in blob.read_bytes()
    with engine.connect() as conn, files.open(conn, "doc-1") as reader:
        assert reader.read() == data
        reader.seek(len(data) - 24)
        assert reader.read() == b"compte rendu IRM: lesion"


def test_tampered_blob_is_refused(engine: Engine, files: FileStore, tmp_path: Path) -> None:
    with engine.begin() as conn:
        files.put(
            conn,
            patient_id="pat-1",
            file_type="document",
            file_id="doc-1",
            src=io.BytesIO(b"ordonnance"),
        )
    (blob,) = _blobs(tmp_path)
    raw = bytearray(blob.read_bytes())
    raw[-3] ^= 1
    blob.write_bytes(bytes(raw))
    # The tampered (last) segment is authenticated at open, before any read.
    with engine.connect() as conn, pytest.raises(IntegrityError):
        files.open(conn, "doc-1")


def test_failed_upload_leaves_nothing(engine: Engine, files: FileStore, tmp_path: Path) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: object) -> int:
            raise OSError("connection reset by the client")

    with pytest.raises(OSError), engine.begin() as conn:
        files.put(conn, patient_id="pat-1", file_type="document", file_id="doc-1", src=Broken())  # type: ignore[arg-type]
    assert _blobs(tmp_path) == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(encrypted_files)).scalar() == 0


def test_files_unreadable_after_shredding(engine: Engine, files: FileStore) -> None:
    with engine.begin() as conn:
        files.put(
            conn, patient_id="pat-1", file_type="image", file_id="img-1", src=io.BytesIO(b"DICM...")
        )
    files.keyring.shred("pat-1")
    with engine.connect() as conn, pytest.raises(KeyShreddedError):
        files.open(conn, "img-1")


def test_rolled_back_transaction_removes_the_blob(
    engine: Engine, files: FileStore, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn:
        files.put(
            conn,
            patient_id="pat-1",
            file_type="document",
            file_id="doc-1",
            src=io.BytesIO(b"lettre de liaison"),
        )
        assert len(_blobs(tmp_path)) == 1
        raise RuntimeError("the audit append failed")
    assert _blobs(tmp_path) == []
    with engine.begin() as conn:  # a later committed upload keeps its blob
        files.put(
            conn,
            patient_id="pat-1",
            file_type="document",
            file_id="doc-1",
            src=io.BytesIO(b"lettre de liaison"),
        )
    assert len(_blobs(tmp_path)) == 1


def test_later_rollback_on_same_connection_keeps_committed_blob(
    engine: Engine, files: FileStore, tmp_path: Path
) -> None:
    with engine.connect() as conn:
        with conn.begin():
            files.put(
                conn,
                patient_id="pat-1",
                file_type="document",
                file_id="doc-1",
                src=io.BytesIO(b"kept"),
            )
        with pytest.raises(RuntimeError), conn.begin():
            raise RuntimeError("an unrelated later transaction fails")
    assert len(_blobs(tmp_path)) == 1
