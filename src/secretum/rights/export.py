"""Export of a patient's whole record (GDPR art. 15 and 20), like FHIR ``Patient/$everything``.

:func:`export_record` asks the guard (EXPORT; step-up is the policy's call and comes back as
:class:`~secretum.records.fhir.StepUpRequired` with ``decision.requires``), writes one audit
entry (DCM 110106 Export), and returns a :class:`RecordExport`: the FHIR Bundle (``searchset``,
validated) of every resource of the patient, restricted ones included, and the AuditEvents of
their record; plus the list of their files. :meth:`RecordExport.iter_zip` streams a zip of
``bundle.json`` and ``files/<DocumentReference id>.<ext>``, decrypting each file as it goes:
memory holds one chunk at a time, never a whole file or the whole zip.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from secretum.access.context import RequestContext
from secretum.access.door import Attempt, Scope, sensitivity_max
from secretum.access.model import Action, Resource
from secretum.audit.model import EventAction, EventType
from secretum.records.documents import CONTENT_TYPES
from secretum.records.fhir import bundle, check_id
from secretum.records.search import audit_records, consent_records
from secretum.records.service import RecordService

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ExportFile:
    resource_id: str
    file_version: int
    extension: str
    size: int

    @property
    def name(self) -> str:
        return f"files/{self.resource_id}.{self.extension}"


@dataclass
class RecordExport:
    """A patient's record, ready to send; its contents are patient data (never in a repr)."""

    patient_id: str
    created: datetime
    bundle: dict[str, Any] = field(repr=False)
    files: list[ExportFile]
    _records: RecordService = field(repr=False)

    def bundle_json(self) -> bytes:
        return json.dumps(self.bundle, ensure_ascii=False, indent=1).encode()

    def iter_zip(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The zip, chunk by chunk (for a streaming response)."""
        sink = _Sink()
        stamp = self.created.timetuple()[:6]
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            info = zipfile.ZipInfo("bundle.json", date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, self.bundle_json())
            yield sink.drain()
            for item in self.files:
                info = zipfile.ZipInfo(item.name, date_time=stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.file_size = item.size  # lets zipfile choose ZIP64 for very large files
                options = {"sqlite_begin": "DEFERRED"}
                with self._records.engine.connect().execution_options(**options) as conn:
                    src = self._records.files.open(
                        conn, item.resource_id, item.file_version, expected_size=item.size
                    )
                with src, archive.open(info, "w") as dst:
                    while chunk := src.read(chunk_size):
                        dst.write(chunk)
                        yield sink.drain()
                yield sink.drain()
        yield sink.drain()


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream whose bytes are taken out as they come."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        return len(chunk)

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _export_attachments(resources: list[dict[str, Any]], files: list[ExportFile]) -> None:
    """Point each exported DocumentReference at its file inside the zip."""
    by_id = {f.resource_id: f for f in files}
    for resource in resources:
        item = (
            by_id.get(resource["id"]) if resource["resourceType"] == "DocumentReference" else None
        )
        if item is not None:
            resource["content"][0]["attachment"]["url"] = item.name


def export_record(
    records: RecordService,
    ctx: RequestContext,
    patient_id: str,
    *,
    base_url: str | None = None,
) -> RecordExport:
    """The whole record of ``patient_id`` (see the module docstring)."""
    attempt = Attempt(ctx, EventType.EXPORT, "operation", EventAction.READ)

    def work(conn: Connection) -> RecordExport:
        pid = check_id(patient_id, "patient")
        sensitivities = records.repo.sensitivities(conn, pid)
        resource = Resource("Patient", pid, pid, sensitivity_max(sensitivities))
        records.door.authorize(conn, attempt, Action.EXPORT, resource)
        attempt.target("Patient", pid, pid)
        # the decision was about the most sensitive label present: every label is in scope
        rows = records.repo.scoped(conn, Scope(frozenset({pid}), frozenset(sensitivities)))
        resources = [r.resource for r in records.repo.load_all(conn, rows)]
        files = []
        for row, res in zip(rows, resources, strict=True):
            if row.file_version is not None:
                attachment = res["content"][0]["attachment"]
                ext = CONTENT_TYPES.get(attachment.get("contentType", ""), "bin")
                files.append(ExportFile(row.resource_id, row.file_version, ext, attachment["size"]))
        _export_attachments(resources, files)
        resources += [r.resource for r in consent_records(conn, patient_id=pid)]
        resources += [r.resource for r in audit_records(conn, patient_id=pid)]
        result = bundle(resources, "searchset", base_url=base_url, now=ctx.now)
        return RecordExport(pid, ctx.now, result, files, records)

    return records.door.read(attempt, work)
