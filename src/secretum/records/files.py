"""Encrypted files (documents, images, recordings) of a patient.

A file is encrypted as it streams in with the patient's *file key* (derived from the data key)
in Tink's AES-GCM-HKDF streaming format, its :class:`~secretum.crypto.context.FileContext` as
associated data, and stored as an opaque blob; the main database keeps ids, type, version and
size. Reading decrypts as it streams out, or just the segments of a byte range, and always
first proves that the blob holds exactly the recorded size (see :meth:`FileStore.open`).
Shredding the
patient's data key makes every file of theirs unreadable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from sqlalchemy import Connection, event, func, insert, select

from secretum.crypto.context import FileContext
from secretum.crypto.errors import IntegrityError
from secretum.crypto.streaming import DecryptingReader, encrypt_stream, plaintext_size
from secretum.keys.keyring import KeyRing, utc_now
from secretum.records.tables import encrypted_files
from secretum.storage.blobs import BlobStore


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    version: int
    patient_id: str
    file_type: str
    size: int


class FileNotFound(LookupError):
    pass


class FileStore:
    def __init__(
        self, keyring: KeyRing, blobs: BlobStore, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.keyring = keyring
        self.blobs = blobs
        self._clock = clock

    def put(
        self,
        conn: Connection,
        *,
        patient_id: str,
        file_type: str,
        file_id: str,
        src: BinaryIO,
        progress: Callable[[int], None] | None = None,
        now: datetime | None = None,
    ) -> StoredFile:
        """Encrypt ``src`` into a new blob and record it as the next version of ``file_id``.

        ``now`` is the version's creation time (default: the store's clock).

        If anything fails (the stream, the disk, the database), or the caller's transaction
        rolls back, the blob is removed and no row is left: nothing half-stored.
        """
        last = conn.execute(
            select(func.max(encrypted_files.c.version)).where(encrypted_files.c.file_id == file_id)
        ).scalar()
        version = (last or 0) + 1
        key = self.keyring.data_key(patient_id, create=True)
        context = FileContext(file_type, file_id, patient_id, version)
        name = self.blobs.new_name()
        with self.blobs.writer(name) as out:
            written = encrypt_stream(key.file_key, src, out, context.encode(), progress=progress)
        try:
            size = plaintext_size(written)
            conn.execute(
                insert(encrypted_files).values(
                    file_id=file_id,
                    version=version,
                    patient_id=patient_id,
                    file_type=file_type,
                    key_id=key.key_id,
                    blob_name=name,
                    plaintext_size=size,
                    created_at=now or self._clock(),
                )
            )
        except BaseException:
            self.blobs.delete(name)
            raise
        self._delete_on_rollback(conn, name)
        return StoredFile(file_id, version, patient_id, file_type, size)

    def _delete_on_rollback(self, conn: Connection, name: str) -> None:
        """If the caller's transaction rolls back, the blob goes with it; once it commits, the
        blob is kept whatever the connection does next."""

        def on_rollback(_conn: Connection) -> None:
            event.remove(conn, "commit", on_commit)
            self.blobs.delete(name)

        def on_commit(_conn: Connection) -> None:
            event.remove(conn, "rollback", on_rollback)

        event.listen(conn, "rollback", on_rollback, once=True)
        event.listen(conn, "commit", on_commit, once=True)

    def open(
        self,
        conn: Connection,
        file_id: str,
        version: int | None = None,
        *,
        expected_size: int | None = None,
    ) -> DecryptingReader:
        """A seekable reader of the plaintext; each segment is authenticated before use.

        Before it is returned, the reader authenticates the blob's last segment, which proves
        the plaintext size, and that size must equal the one recorded for this version and,
        if given, ``expected_size`` (the size a caller keeps in sealed metadata, such as a
        DocumentReference's ``attachment.size``): a truncated, extended or swapped blob raises
        ``IntegrityError`` here, even for a read of zero bytes.

        The caller closes it (it closes the blob too).
        """
        query = select(encrypted_files).where(encrypted_files.c.file_id == file_id)
        if version is None:
            query = query.order_by(encrypted_files.c.version.desc()).limit(1)
        else:
            query = query.where(encrypted_files.c.version == version)
        row = conn.execute(query).mappings().first()
        if row is None:
            raise FileNotFound(file_id)
        if expected_size is not None and expected_size != row["plaintext_size"]:
            raise IntegrityError(
                f"file {file_id} v{row['version']}: its recorded size differs from its metadata"
            )
        key = self.keyring.data_key_for(row["patient_id"], row["key_id"])
        context = FileContext(row["file_type"], row["file_id"], row["patient_id"], row["version"])
        blob = self.blobs.open(row["blob_name"])
        try:
            return _OwningReader(key.file_key, blob, context.encode(), row["plaintext_size"])
        except BaseException:
            blob.close()
            raise


class _OwningReader(DecryptingReader):
    """A DecryptingReader that closes its blob when closed."""

    def __init__(self, key: bytes, blob: BinaryIO, associated_data: bytes, size: int) -> None:
        self._blob = blob
        super().__init__(key, blob, associated_data, expected_size=size)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._blob.close()
