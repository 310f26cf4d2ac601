"""Attacks on encrypted files: cut, extend or swap a blob, then read it (issue 8, item 2).

The attacker can write the blob directory (a stolen backup put back, a disk they reach) but has
no key. Before the fix, a file's plaintext size came from the blob's length only: a 1-byte
document whose blob was cut to 56 bytes (the size of an empty ciphertext) opened as a 0-byte
document, no error, and a range read of zero bytes, or past the end, authenticated nothing.
Now every read first authenticates the last segment (whose nonce flag proves where the genuine
ciphertext ends), and the size must equal the one sealed in the file's metadata.
"""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from secretum.access.context import RequestContext
from secretum.access.guard import TableGuard, allow
from secretum.access.model import Actor, Purpose, Role
from secretum.audit.log import AuditLog
from secretum.crypto.blind_index import BlindIndex
from secretum.crypto.context import FileContext
from secretum.crypto.errors import IntegrityError
from secretum.crypto.kms.fake import FakeKMS
from secretum.crypto.streaming import (
    DecryptingReader,
    decrypt_range,
    decrypt_stream,
    decrypt_to_path,
    encrypt_stream,
)
from secretum.keys.keyring import KeyRing
from secretum.records.documents import DocumentService
from secretum.records.files import FileStore
from secretum.records.service import RecordService
from secretum.records.store import RecordStore
from secretum.records.tables import encrypted_files
from secretum.storage.blobs import FileSystemBlobStore

KEY = os.urandom(32)
AD = FileContext("document", "file-1", "patient-1", 1).encode()
SEG = 64  # small segments (8 plaintext bytes in the first, 48 in the others): many boundaries
NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
DOCTOR = Actor("doc-1", Role.PRACTITIONER)


def _encrypt(plaintext: bytes, seg: int = SEG) -> bytes:
    out = io.BytesIO()
    encrypt_stream(KEY, io.BytesIO(plaintext), out, AD, segment_size=seg)
    return out.getvalue()


def _every_read_refused(blob: bytes, size: int, offset: int, length: int, seg: int = SEG) -> None:
    """Every way of reading ``blob`` raises IntegrityError (FormatError is one) and returns
    nothing, with or without the sealed size."""
    for expected in (None, size):
        with pytest.raises(IntegrityError):
            decrypt_range(
                KEY, io.BytesIO(blob), AD, offset, length, segment_size=seg, expected_size=expected
            )
        with pytest.raises(IntegrityError):
            DecryptingReader(KEY, io.BytesIO(blob), AD, segment_size=seg, expected_size=expected)
        with pytest.raises(IntegrityError):
            decrypt_stream(
                KEY, io.BytesIO(blob), io.BytesIO(), AD, segment_size=seg, expected_size=expected
            )


# --- the streaming format ----------------------------------------------------------------------


def test_the_issue_1_byte_file_cut_to_56_bytes() -> None:
    """The exact attack of the issue, on the default 1 MiB segments."""
    blob = _encrypt(b"x", seg=1 << 20)
    assert len(blob) == 57
    cut = blob[:56]  # the length of an empty plaintext's ciphertext: a plausible size
    for offset, length in ((0, 0), (0, 1), (0, 10), (1, 5), (100, 0)):
        _every_read_refused(cut, 1, offset, length, seg=1 << 20)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    size=st.integers(0, 6 * SEG),
    offset=st.integers(0, 8 * SEG),
    length=st.integers(0, 8 * SEG),
)
def test_every_truncation_refuses_every_read(
    data: st.DataObject, size: int, offset: int, length: int
) -> None:
    blob = _encrypt(os.urandom(size))
    cut = data.draw(st.integers(0, len(blob) - 1), label="cut")
    _every_read_refused(blob[:cut], size, offset, length)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 6 * SEG),
    extra=st.binary(min_size=1, max_size=3 * SEG),
    offset=st.integers(0, 8 * SEG),
    length=st.integers(0, 8 * SEG),
)
def test_every_extension_refuses_every_read(
    size: int, extra: bytes, offset: int, length: int
) -> None:
    blob = _encrypt(os.urandom(size))
    _every_read_refused(blob + extra, size, offset, length)


@settings(max_examples=100, deadline=None)
@given(size=st.integers(0, 6 * SEG), offset=st.integers(0, 8 * SEG), length=st.integers(0, 8 * SEG))
def test_an_intact_file_reads_like_slicing(size: int, offset: int, length: int) -> None:
    plaintext = os.urandom(size)
    blob = _encrypt(plaintext)
    got = decrypt_range(KEY, io.BytesIO(blob), AD, offset, length, segment_size=SEG)
    assert got == plaintext[offset : offset + length]
    got = decrypt_range(
        KEY, io.BytesIO(blob), AD, offset, length, segment_size=SEG, expected_size=size
    )
    assert got == plaintext[offset : offset + length]


@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_a_size_other_than_the_sealed_one_is_refused(delta: int, tmp_path: Path) -> None:
    """An intact blob whose metadata says another size (e.g. the blob of another version)."""
    blob = _encrypt(os.urandom(3 * SEG))
    size = 3 * SEG + delta
    with pytest.raises(IntegrityError):
        decrypt_range(KEY, io.BytesIO(blob), AD, 0, 0, segment_size=SEG, expected_size=size)
    with pytest.raises(IntegrityError):
        DecryptingReader(KEY, io.BytesIO(blob), AD, segment_size=SEG, expected_size=size)
    sink = io.BytesIO()
    with pytest.raises(IntegrityError):
        decrypt_stream(KEY, io.BytesIO(blob), sink, AD, segment_size=SEG, expected_size=size)
    if delta < 0:  # more bytes than announced: the extra ones are never written
        assert len(sink.getvalue()) <= size
    target = tmp_path / "out.bin"
    with pytest.raises(IntegrityError):
        decrypt_to_path(KEY, io.BytesIO(blob), target, AD, segment_size=SEG, expected_size=size)
    assert not target.exists()


# --- stored files and documents ----------------------------------------------------------------


@pytest.fixture
def documents(engine: Engine, vault_engine: Engine, tmp_path: Path) -> DocumentService:
    keyring = KeyRing(vault_engine, FakeKMS())
    files = FileStore(keyring, FileSystemBlobStore(tmp_path / "blobs"))
    records = RecordService(
        engine,
        RecordStore(keyring),
        files,
        BlindIndex(os.urandom(32)),
        AuditLog(engine),
        TableGuard([allow()]),
    )
    records.create(
        RequestContext(Actor("pat-1", Role.PATIENT), Purpose.PATIENT_REQUEST, NOW),
        {"resourceType": "Patient", "id": "pat-1", "birthDate": "1984-12-01"},
        resource_id="pat-1",
    )
    return DocumentService(records)


def _document(documents: DocumentService, content: bytes) -> str:
    body = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/pat-1"},
        "content": [{"attachment": {"title": "note.txt"}}],
    }
    doc = documents.create_document(
        RequestContext(DOCTOR, Purpose.TELECONSULTATION, NOW),
        body,
        io.BytesIO(content),
        "text/plain",
    )
    return doc.resource_id


def _blob(tmp_path: Path) -> Path:
    (blob,) = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    return blob


def _open(documents: DocumentService, rid: str) -> bytes:
    with documents.open_document(
        RequestContext(DOCTOR, Purpose.TELECONSULTATION, NOW), rid
    ) as content:
        return content.reader.read()


def test_the_issue_attack_on_open_document(documents: DocumentService, tmp_path: Path) -> None:
    """A 1-byte document whose blob is cut to 56 bytes: it used to open as 0 bytes."""
    rid = _document(documents, b"x")
    assert _open(documents, rid) == b"x"
    blob = _blob(tmp_path)
    blob.write_bytes(blob.read_bytes()[:56])
    with pytest.raises(IntegrityError):
        _open(documents, rid)


@pytest.mark.parametrize("cut", [1, 16, 17, 40, 1000, 2 * 1024 * 1024 - 1])
def test_cut_or_extended_blobs_never_open(
    documents: DocumentService, tmp_path: Path, cut: int
) -> None:
    content = b"compte rendu: " + os.urandom(1024 * 1024).hex().encode()
    rid = _document(documents, content)
    blob = _blob(tmp_path)
    genuine = blob.read_bytes()
    for tampered in (genuine[:-cut], genuine + os.urandom(cut)):
        blob.write_bytes(tampered)
        with pytest.raises(IntegrityError):
            _open(documents, rid)
    blob.write_bytes(genuine)
    assert _open(documents, rid) == content


def test_the_recorded_size_must_match(
    documents: DocumentService, engine: Engine, tmp_path: Path
) -> None:
    """The blob is intact but the row's size was rewritten: the sealed size disagrees."""
    rid = _document(documents, b"ordonnance")
    with engine.begin() as conn:
        conn.execute(update(encrypted_files).values(plaintext_size=3))
    with pytest.raises(IntegrityError):
        _open(documents, rid)
    files = documents.records.files
    with engine.connect() as conn, pytest.raises(IntegrityError):
        files.open(conn, rid)


def test_file_store_open_authenticates_before_any_read(
    documents: DocumentService, engine: Engine, tmp_path: Path
) -> None:
    rid = _document(documents, b"y")
    blob = _blob(tmp_path)
    blob.write_bytes(blob.read_bytes()[:56])
    files = documents.records.files
    with engine.connect() as conn, pytest.raises(IntegrityError):
        files.open(conn, rid)
    with engine.connect() as conn, pytest.raises(IntegrityError):
        files.open(conn, rid, 1, expected_size=1)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_cuts_of_a_stored_file(
    documents: DocumentService, engine: Engine, data: st.DataObject
) -> None:
    """Random document sizes (one to three 1 MiB segments), cut points and ranges."""
    size = data.draw(st.integers(1, 3 * 1024 * 1024), label="size")
    rid = _document(documents, b"t" * size)
    with engine.connect() as conn:
        name = conn.execute(
            select(encrypted_files.c.blob_name).where(encrypted_files.c.file_id == rid)
        ).scalar_one()
    blobs = documents.records.files.blobs
    with blobs.open(name) as src:
        raw = src.read()
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    offset = data.draw(st.integers(0, size + 10), label="offset")
    length = data.draw(st.integers(0, 100), label="length")
    blobs.delete(name)
    with blobs.writer(name) as out:
        out.write(raw[:cut])
    with (  # a range read, as an HTTP Range request makes
        pytest.raises(IntegrityError),
        documents.open_document(
            RequestContext(DOCTOR, Purpose.TELECONSULTATION, NOW), rid
        ) as content,
    ):
        content.reader.seek(offset)
        content.reader.read(length)
