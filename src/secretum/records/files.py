"""Encrypted files (documents, images, recordings) of a patient.

A file is encrypted as it streams in with the patient's *file key* (derived from the data key)
in Tink's AES-GCM-HKDF streaming format, its :class:`~secretum.crypto.context.FileContext` as
associated data, and stored as an opaque blob; the main database keeps ids, type, version and
size. Reading decrypts as it streams out, or just the segments of a byte range, and always
first proves that the blob holds exactly the recorded size (see :meth:`FileStore.open`).
Shredding the
patient's data key makes every file of theirs unreadable.

An upload is written in two steps, so that no database transaction (nor the audit's write lock
it holds) waits for file I/O: :meth:`FileStore.stage` encrypts the stream into a new blob
*before* the transaction, :meth:`FileStore.record` adds its row inside it; if the transaction
fails the blob is deleted (:meth:`FileStore.staging`), and a blob a crash left without a row is
removed by :meth:`FileStore.remove_orphans` (a periodic duty) once older than a grace period.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
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


@dataclass(frozen=True)
class StagedFile:
    """A blob written and not yet recorded (:meth:`FileStore.stage`)."""

    file_id: str
    version: int
    patient_id: str
    file_type: str
    key_id: bytes
    blob_name: str
    size: int


class FileNotFound(LookupError):
    pass


class FileVersionTaken(RuntimeError):
    """Another upload recorded this version of the file first: the staged blob is not used."""


#: How old a blob with no row must be before the cleanup removes it: far longer than the
#: transaction that follows its upload ever lasts.
ORPHAN_GRACE = timedelta(hours=1)


class FileStore:
    def __init__(
        self, keyring: KeyRing, blobs: BlobStore, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.keyring = keyring
        self.blobs = blobs
        self._clock = clock

    def stage(
        self,
        *,
        patient_id: str,
        file_type: str,
        file_id: str,
        version: int,
        src: BinaryIO,
        progress: Callable[[int], None] | None = None,
    ) -> StagedFile:
        """Encrypt ``src`` into a new blob, outside any transaction of the main database.

        ``version`` is the version the caller will record (1 for a new file). If the stream
        fails, no blob is left. The caller then records it in its transaction (:meth:`record`)
        or discards it (:meth:`discard`); :meth:`staging` discards it on any failure.
        """
        key = self.keyring.data_key(patient_id, create=True)
        context = FileContext(file_type, file_id, patient_id, version)
        name = self.blobs.new_name()
        with self.blobs.writer(name) as out:
            written = encrypt_stream(key.file_key, src, out, context.encode(), progress=progress)
        size = plaintext_size(written)
        return StagedFile(file_id, version, patient_id, file_type, key.key_id, name, size)

    @contextlib.contextmanager
    def staging(
        self, *, patient_id: str, file_type: str, file_id: str, version: int, src: BinaryIO
    ) -> Iterator[StagedFile]:
        """:meth:`stage`, and :meth:`discard` if the block (the transaction) raises."""
        staged = self.stage(
            patient_id=patient_id, file_type=file_type, file_id=file_id, version=version, src=src
        )
        try:
            yield staged
        except BaseException:
            self.discard(staged)
            raise

    def discard(self, staged: StagedFile) -> None:
        self.blobs.delete(staged.blob_name)

    def record(
        self, conn: Connection, staged: StagedFile, *, now: datetime | None = None
    ) -> StoredFile:
        """Record ``staged`` as the next version of its file, in the caller's transaction.

        :class:`FileVersionTaken` if that version exists (a concurrent upload won).
        ``now`` is the version's creation time (default: the store's clock).
        """
        last = conn.execute(
            select(func.max(encrypted_files.c.version)).where(
                encrypted_files.c.file_id == staged.file_id
            )
        ).scalar()
        if (last or 0) + 1 != staged.version:
            raise FileVersionTaken(f"file {staged.file_id}: version {staged.version} is taken")
        conn.execute(
            insert(encrypted_files).values(
                file_id=staged.file_id,
                version=staged.version,
                patient_id=staged.patient_id,
                file_type=staged.file_type,
                key_id=staged.key_id,
                blob_name=staged.blob_name,
                plaintext_size=staged.size,
                created_at=now or self._clock(),
            )
        )
        return StoredFile(
            staged.file_id, staged.version, staged.patient_id, staged.file_type, staged.size
        )

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
        """Encrypt ``src`` into a new blob and record it as the next version of ``file_id``,
        all inside the caller's transaction (which then waits for the upload: a request
        path stages first instead, see :meth:`stage`).

        If anything fails (the stream, the disk, the database), or the caller's transaction
        rolls back, the blob is removed and no row is left: nothing half-stored.
        """
        last = conn.execute(
            select(func.max(encrypted_files.c.version)).where(encrypted_files.c.file_id == file_id)
        ).scalar()
        staged = self.stage(
            patient_id=patient_id,
            file_type=file_type,
            file_id=file_id,
            version=(last or 0) + 1,
            src=src,
            progress=progress,
        )
        try:
            stored = self.record(conn, staged, now=now)
        except BaseException:
            self.discard(staged)
            raise
        self._delete_on_rollback(conn, staged.blob_name)
        return stored

    def remove_orphans(
        self, conn: Connection, now: datetime, grace: timedelta = ORPHAN_GRACE
    ) -> int:
        """Delete the blobs older than ``grace`` that no row references; how many.

        A blob younger than ``grace`` may belong to an upload whose transaction has not
        committed yet: it is kept. Idempotent; several instances may run it side by side.
        """
        removed = 0
        names = list(self.blobs.names_before(now - grace))
        for start in range(0, len(names), 500):
            batch = names[start : start + 500]
            referenced = set(
                conn.execute(
                    select(encrypted_files.c.blob_name).where(
                        encrypted_files.c.blob_name.in_(batch)
                    )
                ).scalars()
            )
            for name in batch:
                if name not in referenced:
                    self.blobs.delete(name)
                    removed += 1
        return removed

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
