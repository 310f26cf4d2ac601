"""DocumentReference files: uploaded and downloaded through the streaming encryption.

A document is a DocumentReference (sealed like every resource) plus one encrypted file in the
:class:`~secretum.records.files.FileStore` (``file_id`` = the DocumentReference id). Uploads are
checked as they stream (:class:`CheckedUpload`): size limit, allowed media type, and first bytes
that match it (PDF, PNG, JPEG, DICOM PS3.10, UTF-8 text); a refused upload stops mid-stream,
rolls back, and leaves no blob. The server owns the attachment's contentType, url, size and hash.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from sqlalchemy.engine import Connection

from secretum.access.context import RequestContext
from secretum.access.door import Attempt
from secretum.access.model import Action, Resource, Sensitivity
from secretum.audit.model import EventAction
from secretum.crypto.streaming import DecryptingReader
from secretum.records.fhir import (
    WRITABLE_TYPES,
    FhirRecord,
    FileTooLarge,
    InvalidResource,
    ResourceNotFound,
    UnprocessableResource,
    UnsupportedContentType,
    parse_json,
    resource_type_of,
    validate,
)
from secretum.records.files import StagedFile
from secretum.records.service import SERVER_ATTACHMENT, RecordService, file_url, sensitivity_for

FILE_TYPE = "DocumentReference"


#: Media types a document may have, with the extension its export file gets.
CONTENT_TYPES = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpg",
    "application/dicom": "dcm",
    "text/plain": "txt",
}
_MAGIC = {
    "application/pdf": (0, b"%PDF-"),
    "image/png": (0, b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": (0, b"\xff\xd8\xff"),
    "application/dicom": (128, b"DICM"),  # PS3.10 §7.1: 128-byte preamble, then "DICM"
}
_HEAD = 132


@dataclass(frozen=True)
class FileLimits:
    """What an uploaded document may be: its size and media types (settings of the service)."""

    max_bytes: int = 50 * 1024 * 1024
    content_types: frozenset[str] = frozenset(CONTENT_TYPES)

    def content_type(self, declared: str) -> str:
        """The declared media type, normalised (``; charset=...`` dropped), if allowed."""
        media = declared.split(";", 1)[0].strip().lower() if isinstance(declared, str) else ""
        if media not in self.content_types or media not in CONTENT_TYPES:
            allowed = ", ".join(sorted(self.content_types))
            raise UnsupportedContentType(f"content type not allowed (allowed: {allowed})")
        return media


class CheckedUpload(io.RawIOBase):
    """The client's stream as it is read: counted (FileTooLarge past ``max_bytes``), hashed
    (SHA-1, for ``Attachment.hash``), and its first bytes checked against the declared type
    (UnsupportedContentType): a refused upload stops mid-stream and FileStore drops the blob."""

    def __init__(self, src: BinaryIO, content_type: str, max_bytes: int) -> None:
        super().__init__()
        self._src = src
        self._type = content_type
        self._max = max_bytes
        self._sha1 = hashlib.sha1(usedforsecurity=False)
        self._head = bytearray()
        self._checked = False
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._src.read(len(view))
        n = len(data) if data else 0
        if n:
            view[:n] = data
            self.size += n
            if self.size > self._max:
                raise FileTooLarge(f"a file is at most {self._max} bytes")
            self._sha1.update(view[:n])
            if len(self._head) < _HEAD:
                self._head += view[: min(n, _HEAD - len(self._head))]
        if not self._checked and (n == 0 or len(self._head) >= _HEAD):
            self._check_type()
        return n

    def _check_type(self) -> None:
        self._checked = True
        head = bytes(self._head)
        if not head:
            raise InvalidResource("the file is empty", code="required")
        if self._type == "text/plain":
            ok = b"\x00" not in head and _utf8_prefix(head)
        else:
            offset, magic = _MAGIC[self._type]
            ok = head[offset : offset + len(magic)] == magic
        if not ok:
            raise UnsupportedContentType("the file content does not match its content type")

    def attachment_hash(self) -> str:
        """Base64 SHA-1 of what was read (FHIR R4 ``Attachment.hash``)."""
        return base64.b64encode(self._sha1.digest()).decode("ascii")


def _io(upload: CheckedUpload) -> BinaryIO:
    return cast(BinaryIO, upload)


def _utf8_prefix(head: bytes) -> bool:
    """``head`` is UTF-8, allowing a character cut at its end."""
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True


@dataclass
class DocumentContent:
    """A decrypting, seekable reader of a DocumentReference's file; close it (or use ``with``)."""

    resource_id: str
    file_version: int
    content_type: str
    size: int
    reader: DecryptingReader = field(repr=False)

    @property
    def extension(self) -> str:
        return CONTENT_TYPES.get(self.content_type, "bin")

    def __enter__(self) -> DocumentContent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.close()


class DocumentService:
    """Use cases of DocumentReference files, beside :class:`RecordService` (whose guard, audit
    and repository they use: same rules, one question, one audit entry)."""

    def __init__(self, records: RecordService, limits: FileLimits | None = None) -> None:
        self.records = records
        self.limits = limits or FileLimits()

    def create_document(
        self,
        ctx: RequestContext,
        resource: bytes | str | Mapping[str, Any],
        content: BinaryIO,
        content_type: str,
        *,
        patient_id: str | None = None,
        sensitivity: Sensitivity | None = None,
    ) -> FhirRecord:
        """Create a DocumentReference and its file, streamed in and encrypted as it comes.

        ``content_type`` must be allowed (:class:`FileLimits`) and match the file's first bytes;
        past ``limits.max_bytes`` the upload stops (FileTooLarge). Either way nothing is kept.
        The server fills the attachment's contentType, url, size and hash (SHA-1).

        The file is encrypted into its blob *before* the transaction that records it, so that
        the transaction (and the audit's write lock it holds) never waits for the upload: a
        pre-flight on a reading connection (not audited, nothing written) checks that the body
        holds and that the actor may create it; only then is the stream read. The transaction
        asks the guard again (the audited decision); an upload error is raised there, after
        it, so it is audited as before. If the transaction fails, the blob is deleted.
        """
        records = self.records
        attempt = records.attempt(ctx, "create", EventAction.CREATE)
        staged: StagedFile | None = None
        upload: CheckedUpload | None = None
        upload_error: Exception | None = None
        plan = self._preflight(ctx, resource, content_type, patient_id, sensitivity)
        if plan is not None:
            rid, pid, media = plan
            upload = CheckedUpload(content, media, self.limits.max_bytes)
            try:
                staged = records.files.stage(
                    patient_id=pid, file_type=FILE_TYPE, file_id=rid, version=1, src=_io(upload)
                )
            except Exception as exc:  # raised in the transaction, after the guard: audited
                upload_error = exc
        used = False

        def work(conn: Connection) -> FhirRecord:
            nonlocal upload, used
            wanted = staged.file_id if staged is not None else None
            media, rid, body, pid, sens = self._prepare(
                conn, attempt, resource, content_type, patient_id, sensitivity, wanted
            )
            resource_ = Resource("DocumentReference", pid, rid, sens)
            records.door.authorize(conn, attempt, Action.CREATE, resource_)
            if pid is None:  # pragma: no cover - validate() requires the subject
                raise UnprocessableResource("a DocumentReference needs a subject")
            if upload_error is not None:
                raise upload_error
            if staged is not None and staged.patient_id == pid:
                stored = records.files.record(conn, staged, now=ctx.now)
                used = True
            else:  # not staged (the pre-flight was refused, the transaction is not): upload now
                upload = CheckedUpload(content, media, self.limits.max_bytes)
                stored = records.files.put(
                    conn,
                    patient_id=pid,
                    file_type=FILE_TYPE,
                    file_id=rid,
                    src=_io(upload),
                    now=ctx.now,
                )
            assert upload is not None
            body["content"][0]["attachment"].update(
                url=file_url(rid, stored.version), size=stored.size, hash=upload.attachment_hash()
            )
            return records.write(conn, body, None, pid, sens, ctx.now, stored.version)

        try:
            result = records.door.run(attempt, work)
        except BaseException:
            if staged is not None:  # rolled back (or the commit failed): the row is not there
                records.files.discard(staged)
            raise
        if staged is not None and not used:
            records.files.discard(staged)
        return result

    def _prepare(
        self,
        conn: Connection,
        attempt: Attempt,
        resource: bytes | str | Mapping[str, Any],
        content_type: str,
        patient_id: str | None,
        sensitivity: Sensitivity | None,
        wanted_id: str | None,
    ) -> tuple[str, str, dict[str, Any], str | None, Sensitivity]:
        """Media type, id, checked body (server-owned attachment fields dropped), patient and
        sensitivity of a new DocumentReference."""
        media = self.limits.content_type(content_type)
        body = parse_json(resource)
        if resource_type_of(body, WRITABLE_TYPES) != "DocumentReference":
            raise InvalidResource("resourceType must be DocumentReference")
        rid = self.records.fresh_id(conn, wanted_id)
        attempt.target("DocumentReference", rid)
        body["id"] = rid
        entries = body.get("content") or [{}]
        if not isinstance(entries, list) or len(entries) != 1:
            raise UnprocessableResource("a DocumentReference holds exactly one file")
        entry = dict(entries[0]) if isinstance(entries[0], Mapping) else {}
        attachment = entry.get("attachment")
        attachment = dict(attachment) if isinstance(attachment, Mapping) else {}
        for name in (*SERVER_ATTACHMENT, "data"):
            attachment.pop(name, None)
        body["content"] = [{**entry, "attachment": {**attachment, "contentType": media}}]
        body = validate(body, "DocumentReference")
        pid = self.records.patient_of(conn, body, patient_id)
        return media, rid, body, pid, sensitivity_for(body, sensitivity, None)

    def _preflight(
        self,
        ctx: RequestContext,
        resource: bytes | str | Mapping[str, Any],
        content_type: str,
        patient_id: str | None,
        sensitivity: Sensitivity | None,
    ) -> tuple[str, str, str] | None:
        """``(id, patient, media type)`` if the body holds and the actor may create it now;
        ``None`` otherwise (the transaction then meets the same answer, and audits it)."""
        door = self.records.door
        probe = self.records.attempt(ctx, "create", EventAction.CREATE)
        try:
            with door.reads.connect() as conn, conn.begin():
                media, rid, _, pid, sens = self._prepare(
                    conn, probe, resource, content_type, patient_id, sensitivity, None
                )
                if pid is None:
                    return None
                resource_ = Resource("DocumentReference", pid, rid, sens)
                allowed = door.permits(conn, probe, Action.CREATE, resource_)
        except Exception:  # the transaction raises it again, audited
            return None
        return (rid, pid, media) if allowed else None

    def open_document(
        self,
        ctx: RequestContext,
        resource_id: str,
    ) -> DocumentContent:
        """The file of a DocumentReference, decrypted as it is read (audited as a read)."""
        attempt = self.records.attempt(ctx, "read", EventAction.READ)

        def work(conn: Connection) -> DocumentContent:
            row = self.records.existing(conn, attempt, "DocumentReference", resource_id)
            resource_ = Resource("DocumentReference", row.patient_id, resource_id, row.sensitivity)
            self.records.door.authorize(conn, attempt, Action.READ, resource_)
            if row.file_version is None:
                raise ResourceNotFound("this DocumentReference has no stored file")
            record = self.records.repo.load(conn, row)
            attachment = record.resource["content"][0]["attachment"]
            content_type = attachment["contentType"]
            # attachment.size is sealed with the resource: the blob must hold exactly that.
            reader = self.records.files.open(
                conn, resource_id, row.file_version, expected_size=attachment["size"]
            )
            return DocumentContent(resource_id, row.file_version, content_type, reader.size, reader)

        return self.records.door.read(attempt, work)
