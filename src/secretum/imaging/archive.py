"""The imaging archive's use cases: ingest, query, retrieve, reconcile, erase.

Every use case goes through the records' door (:class:`~secretum.access.door.Door`): one
question to the policy, one audit entry (DICOM audit event ids: 110104 Instances Transferred for
a store, 110112 Query for a search, 110103 Instances Accessed for a retrieval or a link), in
the transaction of its work, naming the patient (so it shows in "who opened my record").
The policy sees a study as ``Resource("ImagingStudy", patient, study key, sensitivity)``: the
teleradiology consent, the care relationship (a referral to the radiologist), the restriction
label and break-the-glass apply exactly as to records. A study that matches no patient names
none, so every clinical request on it is refused (health data without a patient).

**One audit entry per study or series request, not per frame.** :meth:`ImagingArchive.open_study`
and :meth:`~ImagingArchive.open_series` are the audited retrievals: they return a
:class:`StudyReader` from which instances and frames are read without further questions (a
viewer reads hundreds of frames of one series). The web layer keeps one reader for the
requests of one viewing. The reader holds the file key of one patient only.

**Ingest** streams: instances are taken one at a time from an iterable (a STOW-RS multipart
body, C-STORE sub-operations), validated (:func:`~secretum.imaging.part10.parse_instance`,
bounded), encrypted into their blob at once, and only their index rows (a few KiB each) are
kept until the study's batch is written in one transaction (at most ``batch_size`` instances
per transaction). Memory stays flat whatever the size of the request. Blobs are written before
the index transaction, so a crash in between leaves orphan blobs (never an index row without
its blob). TODO(blob duty): the blob store's orphan sweep (another branch adds it) must also
collect blobs no ``imaging_instances`` row names.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, BinaryIO, NamedTuple

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from secretum.access.context import RequestContext
from secretum.access.door import Attempt, Door
from secretum.access.errors import TAMPERED, AccessDenied
from secretum.access.guard import Guard
from secretum.access.model import Action, Resource, Sensitivity
from secretum.audit.log import AuditLog
from secretum.audit.model import EventAction, EventType, Outcome
from secretum.crypto.blind_index import BlindIndex
from secretum.imaging.archive_model import (
    NOT_AUTHORIZED,
    SEALED_LAYOUT,
    SEALED_META,
    SEALED_SERIES,
    SEALED_STUDY,
    SERIES_KEYWORDS,
    STUDY_KEYWORDS,
    STUDY_KIND,
    InstanceMatch,
    InstanceResult,
    InstanceStatus,
    PendingStudy,
    SeriesMatch,
    StudyMatch,
    StudyNotFound,
    StudyQuery,
)
from secretum.imaging.archive_store import (
    ArchiveStore,
    InstanceRow,
    StudyRow,
    blob_context,
    holding_owner,
    layout_value,
)
from secretum.imaging.layout import number_of_frames, pixel_layout
from secretum.imaging.part10 import (
    FAILURE_STATUSES,
    InvalidInstance,
    ParsedInstance,
    Reason,
    parse_instance,
)
from secretum.keys.keyring import KeyRing
from secretum.records.fhir import ResourceNotFound, check_id
from secretum.records.tables import fhir_resources
from secretum.storage.blobs import BlobStore
from secretum.storage.integrity import RowTampered

#: Largest instance accepted (a whole Part-10 file is validated in memory: keep it bounded).
DEFAULT_MAX_INSTANCE = 512 * 1024 * 1024
#: Instances written per index transaction.
DEFAULT_BATCH = 256
#: Threads writing blobs (encrypt, write, fsync) while the next instances are validated.
DEFAULT_WRITE_THREADS = 4
#: Instances of one study whose blob may still be being written (bounds the memory held).
WRITES_IN_FLIGHT = 2
#: Values longer than this in the sealed metadata become a BulkDataURI (never inlined).
BULK_THRESHOLD = 1024
_PIXEL_TAGS = ("7FE00010", "7FE00008", "7FE00009")

#: ``bulk_uri(study_uid, series_uid, sop_uid, tag)``: the web layer's URL of a bulk value.
BulkUri = Callable[[str, str, str, str], str]


#: How old a blob without an instance row must be before the cleanup removes it (an ingest
#: still running has not committed its rows yet).
ORPHAN_GRACE = timedelta(hours=1)


def _pick(ds: Dataset, keywords: Iterable[str]) -> dict[str, Any]:
    sub = Dataset()
    for keyword in keywords:
        if keyword in ds:
            sub[keyword] = ds[keyword]
    return sub.to_json_dict()


def _text(attrs: dict[str, Any], tag: str) -> str | None:
    values = attrs.get(tag, {}).get("Value")
    if not values:
        return None
    value = values[0]
    return value if isinstance(value, str) else None


_STUDY_DATE, _ACCESSION, _STUDY_UID = "00080020", "00080050", "0020000D"
_SERIES_UID, _MODALITIES = "0020000E", "00080061"
_NUM_SERIES, _NUM_INSTANCES = "00201206", "00201208"


def _metadata(ds: Dataset) -> dict[str, Any]:
    """DICOM JSON of the whole instance, bulk values as placeholder URIs (``bulk:<tag>``),
    pixel data always as a BulkDataURI (even when small)."""

    def handler(elem: Any) -> str:
        return f"bulk:{int(elem.tag):08X}"

    meta = ds.to_json_dict(BULK_THRESHOLD, handler)
    for tag in _PIXEL_TAGS:
        if tag in meta:
            meta[tag] = {"vr": meta[tag]["vr"], "BulkDataURI": f"bulk:{tag}"}
    return meta


def _with_uris(meta: dict[str, Any], row: InstanceRow, bulk_uri: BulkUri | None) -> dict[str, Any]:
    if bulk_uri is None:
        return meta

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            uri = obj.get("BulkDataURI")
            if isinstance(uri, str) and uri.startswith("bulk:"):
                obj["BulkDataURI"] = bulk_uri(row.study_uid, row.series_uid, row.sop_uid, uri[5:])
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    walk(meta)
    return meta


@dataclass
class _Route:
    """Where the instances of one study go: its key, owner and the question to ask."""

    study_key: str
    uid_index: bytes
    patient_id: str | None
    reason: str | None  # why it waits for reconciliation (None when matched)
    existing: StudyRow | None
    allowed: bool

    @property
    def owner(self) -> str:
        if self.existing is not None:
            return self.existing.owner
        return self.patient_id or holding_owner(self.study_key)


class _Written(NamedTuple):
    """What a writer thread made of an instance: the columns of its index row that wait for
    it (blob name and key id, the content digest's blind index, the sealed layout and
    metadata)."""

    blob_name: str
    key_id: bytes
    digest_index: bytes
    layout: bytes
    meta: bytes


@dataclass
class _Pending:
    """Staged instances of one study: blobs written, index rows waiting for the batch."""

    route: _Route
    study_attributes: dict[str, Any]
    series: dict[str, tuple[bytes, str | None, bytes]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    results: list[InstanceResult] = field(default_factory=list)
    #: staged SOP instances: their write, whose result holds the content digest index
    sop_writes: dict[bytes, Future[_Written]] = field(default_factory=dict)
    #: blob writes still running: (row, its result, the write)
    writes: list[tuple[dict[str, Any], InstanceResult, Future[_Written]]] = field(
        default_factory=list
    )


class StudyReader:
    """What an audited retrieval opened: the instances of one study or series, ready to read.

    No further policy question or audit entry is made per instance or frame (see the module
    docstring). Each read authenticates what it returns; a tampered byte raises
    ``IntegrityError``.
    """

    def __init__(self, store: ArchiveStore, owner: str, rows: list[InstanceRow]) -> None:
        self._store = store
        self._owner = owner
        self._rows = {row.sop_uid: row for row in rows}

    @property
    def instances(self) -> list[InstanceMatch]:
        return [
            InstanceMatch(
                r.study_uid,
                r.series_uid,
                r.sop_uid,
                r.sop_class_uid,
                r.transfer_syntax_uid,
                r.instance_number,
                r.number_of_frames,
                r.size,
            )
            for r in self._rows.values()
        ]

    def _row(self, sop_uid: str) -> InstanceRow:
        row = self._rows.get(sop_uid)
        if row is None:
            raise StudyNotFound("no such instance in what was opened")
        return row

    def read_instance(self, sop_uid: str, dst: BinaryIO) -> int:
        """Stream the whole Part-10 instance, decrypted, into ``dst``; return its size. On an
        ``IntegrityError`` what was written is incomplete: discard it."""
        return self._store.copy_instance(self._owner, self._row(sop_uid), dst)

    def instance_bytes(self, sop_uid: str) -> bytes:
        out = io.BytesIO()
        self.read_instance(sop_uid, out)
        return out.getvalue()

    def open_instance(self, sop_uid: str) -> io.RawIOBase:
        """A seekable reader of the instance (HTTP ranges); the caller closes it."""
        return self._store.open_instance(self._owner, self._row(sop_uid))

    def read_frame(self, sop_uid: str, number: int) -> bytes:
        """Frame ``number`` (1-based, as in WADO-RS) of an instance: its pixel bytes as stored
        (native: raw pixels; encapsulated: the compressed frame). One ``decrypt_range``."""
        row = self._row(sop_uid)
        if not 1 <= number <= row.number_of_frames:
            raise StudyNotFound("no such frame")
        layout = row.layout
        if layout is None:
            return self._frame_fallback(row, number)
        offset, length = layout.frame_span(number - 1)
        with self._store.open_instance(self._owner, row) as reader:
            reader.seek(offset)
            span = reader.read(length)
        return layout.frame_from_span(number - 1, span)

    def _frame_fallback(self, row: InstanceRow, number: int) -> bytes:
        """No layout (deflated, bit-packed...): decrypt the instance, let pydicom find it."""
        from pydicom.encaps import generate_frames

        ds = pydicom.dcmread(io.BytesIO(self.instance_bytes(row.sop_uid)))
        data = ds.PixelData
        if ds.file_meta.TransferSyntaxUID.is_encapsulated:
            for index, frame in enumerate(
                generate_frames(data, number_of_frames=row.number_of_frames)
            ):
                if index == number - 1:
                    return bytes(frame)
            raise StudyNotFound("no such frame")
        size = len(data) // max(row.number_of_frames, 1)
        return bytes(data[(number - 1) * size : number * size])


class ImagingArchive:
    """The archive's use cases (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        keyring: KeyRing,
        blobs: BlobStore,
        blind_index: BlindIndex,
        audit: AuditLog,
        guard: Guard,
        *,
        max_instance_bytes: int = DEFAULT_MAX_INSTANCE,
        batch_size: int = DEFAULT_BATCH,
        write_threads: int = DEFAULT_WRITE_THREADS,
    ) -> None:
        self.engine = engine
        self.keyring = keyring
        self.store = ArchiveStore(keyring, blobs, blind_index)
        self.door = Door(engine, audit, guard)
        self.max_instance_bytes = max_instance_bytes
        self.batch_size = batch_size
        # Blob writes (encryption, write, fsync: the GIL released for most of it) overlap the
        # validation of the next instances; at most WRITES_IN_FLIGHT instances wait per study.
        self._writers = ThreadPoolExecutor(write_threads, thread_name_prefix="imaging-write")

    # -- patient identifiers ---------------------------------------------------------------------

    def register_patient_identifier(
        self,
        ctx: RequestContext,
        patient_id: str,
        issuer: str,
        dicom_patient_id: str,
    ) -> None:
        """Record that images with this (IssuerOfPatientID, PatientID) are ``patient_id``'s
        (an update of the patient's record: the policy decides, the audit names the patient).
        Only the blind-index value is stored."""
        attempt = Attempt(ctx, EventType.PATIENT_RECORD, "update", EventAction.UPDATE)

        def work(conn: Connection) -> None:
            pid = check_id(patient_id, "patient")
            if not issuer.strip() or not dicom_patient_id.strip():
                raise ResourceNotFound("an issuer and a patient id are required")
            self.door.authorize(conn, attempt, Action.UPDATE, Resource("Patient", pid, pid))
            self.store.register_identifier(conn, pid, issuer, dicom_patient_id, ctx.now)

        self.door.run(attempt, work)

    # -- ingest ---------------------------------------------------------------------------------

    def ingest(
        self,
        ctx: RequestContext,
        instances: Iterable[bytes],
        *,
        sensitivity: Sensitivity = Sensitivity.NORMAL,
        study_uid: str | None = None,
    ) -> list[InstanceResult]:
        """Store Part-10 instances (one at a time from ``instances``); one result each, in
        order (``study_uid``: an instance of another study fails, META_MISMATCH). A study of a
        patient the sender may write to (care team, teleradiology consent) is stored under the
        patient's key; any other study (no match, several matches, or a sender outside the
        care team: refusing would tell them the patient is known here) waits for
        reconciliation under a holding key. One audit entry per study and batch."""
        results: dict[int, InstanceResult] = {}
        pending: dict[str, _Pending] = {}
        routes: dict[bytes, _Route] = {}
        staged = 0
        count = 0
        for index, data in enumerate(instances):
            count = index + 1
            if self._stage(ctx, index, data, routes, pending, results, sensitivity, study_uid):
                staged += 1
            if staged >= self.batch_size:
                self._flush(ctx, pending, results, sensitivity)
                pending, staged = {}, 0
                routes.clear()  # the studies just written exist now: route them afresh
        self._flush(ctx, pending, results, sensitivity)
        return [results[i] for i in range(count)]

    def _stage(
        self,
        ctx: RequestContext,
        index: int,
        data: bytes,
        routes: dict[bytes, _Route],
        pending: dict[str, _Pending],
        results: dict[int, InstanceResult],
        sensitivity: Sensitivity,
        study_uid: str | None = None,
    ) -> bool:
        """Validate and encrypt one instance; True if it was staged for the index batch."""
        try:
            parsed = parse_instance(data, max_bytes=self.max_instance_bytes)
        except InvalidInstance as exc:
            results[index] = _failed(index, exc.reason)
            return False
        del data
        if study_uid is not None and parsed.study_instance_uid != study_uid:
            results[index] = _failed(index, Reason.META_MISMATCH, parsed)
            return False
        sop_index = self.store.sop_index(parsed.sop_instance_uid)
        try:
            with self.door.reads.connect() as conn, conn.begin():
                known = self._known(conn, sop_index, pending)
                if known is not None:
                    digest = self.store.digest_index(parsed.digest)
                    same = self.store.same_digest(known, digest)
                    results[index] = _resend(index, parsed, same)
                    return False
                route = self._route(conn, ctx, parsed, routes, sensitivity)
        except RowTampered:
            # a forged study or patient-identifier row: store nothing, raise the alarm
            self._alert(ctx)
            results[index] = _failed(index, Reason.PROCESSING_FAILURE, parsed)
            return False
        if not route.allowed:
            results[index] = _failed(index, None, parsed)
            return False
        batch = pending.get(route.study_key)
        if batch is None:
            attrs = _pick(parsed.dataset, STUDY_KEYWORDS)
            batch = pending[route.study_key] = _Pending(route, attrs)
        try:
            row, write = self._encrypt(parsed, route, batch, sop_index, ctx.now)
        except Exception:
            results[index] = _failed(index, Reason.PROCESSING_FAILURE, parsed)
            return False
        result = _stored(index, InstanceStatus.STORED, parsed)
        batch.rows.append(row)
        batch.sop_writes[sop_index] = write
        batch.results.append(result)
        batch.writes.append((row, result, write))
        for _, _, earlier in batch.writes[:-WRITES_IN_FLIGHT]:
            earlier.exception()  # wait: memory stays bounded (the data of a few instances)
        return True

    def _alert(self, ctx: RequestContext) -> None:
        """A Security Alert (110113, major failure) for tampered rows met while routing."""
        attempt = Attempt(ctx, EventType.SECURITY_ALERT, "create", EventAction.EXECUTE)
        self.door.audit.append_committed(attempt.event(Outcome.MAJOR_FAILURE, TAMPERED.reason))

    def _known(
        self, conn: Connection, sop_index: bytes, pending: dict[str, _Pending]
    ) -> bytes | None:
        """The digest index of an instance with this SOP UID, stored or staged, else None."""
        for batch in pending.values():
            if sop_index in batch.sop_writes:
                try:
                    return batch.sop_writes[sop_index].result().digest_index
                except Exception:
                    return None  # that write failed (so will its instance): not stored
        found = self.store.find_instance(conn, sop_index)
        return None if found is None else bytes(found["digest_index"])

    def _route(
        self,
        conn: Connection,
        ctx: RequestContext,
        parsed: ParsedInstance,
        routes: dict[bytes, _Route],
        sensitivity: Sensitivity,
    ) -> _Route:
        uid_index = self.store.study_index(parsed.study_instance_uid)
        route = routes.get(uid_index)
        if route is not None:
            return route
        key = self.store.key_of(uid_index)
        probe = Attempt(ctx, EventType.DICOM_INSTANCES_TRANSFERRED, "create", EventAction.CREATE)
        existing = self.store.find_study(conn, parsed.study_instance_uid)
        if existing is not None:
            patient, reason = existing.patient_id, existing.unmatched_reason
        else:
            patient, reason = self.store.match_patient(
                conn, parsed.issuer_of_patient_id, parsed.patient_id
            )
            if patient is not None:
                resource = Resource(STUDY_KIND, patient, key, sensitivity)
                if not self.door.permits(conn, probe, Action.CREATE, resource):
                    patient, reason = None, "sender"
            else:
                reason = reason or "no-match"
        if patient is not None:
            label = existing.sensitivity if existing else sensitivity
            resource = Resource(STUDY_KIND, patient, key, label)
            allowed = self.door.permits(conn, probe, Action.CREATE, resource)
        else:
            resource = Resource(STUDY_KIND, None, key)
            allowed = self.door.permits(conn, probe, Action.STORE_IMAGING, resource)
        route = _Route(key, uid_index, patient, None if patient else reason, existing, allowed)
        routes[uid_index] = route
        return route

    def _encrypt(
        self,
        parsed: ParsedInstance,
        route: _Route,
        batch: _Pending,
        sop_index: bytes,
        now: datetime,
    ) -> tuple[dict[str, Any], Future[_Written]]:
        """Start writing the instance's blob (in a writer thread, which also seals its
        layout and metadata and hashes its content: the digest's encoding was proven by the
        parse); return its index row (the columns of :class:`_Written` once that is done)."""
        ds, owner = parsed.dataset, route.owner
        version = route.existing.version if route.existing else 1
        series_index = self.store.series_index(parsed.series_instance_uid)
        series_key = self.store.key_of(series_index)
        if series_key not in batch.series:
            modality = str(ds.get("Modality", "") or "")[:16] or None
            attrs = _pick(ds, SERIES_KEYWORDS)
            sealed = self.store.seal_value(owner, SEALED_SERIES, series_key, version, attrs)
            batch.series[series_key] = (series_index, modality, sealed)
        instance_key = self.store.key_of(sop_index)
        self.keyring.data_key(owner, create=True)  # created here, not by writers at once
        number = ds.get("InstanceNumber")
        try:
            instance_number = int(number) if number not in (None, "") else None
        except (TypeError, ValueError):
            instance_number = None
        row = {
            "instance_key": instance_key,
            "sop_uid_index": sop_index,
            "series_key": series_key,
            "study_key": route.study_key,
            "sop_class_uid": parsed.sop_class_uid,
            "transfer_syntax_uid": parsed.transfer_syntax_uid,
            "instance_number": instance_number,
            "number_of_frames": number_of_frames(ds),
            "plaintext_size": len(parsed.data),
            "version": version,
            "created_at": now,
        }
        write = self._writers.submit(self._write_blob, parsed, owner, instance_key, version)
        return row, write

    def _write_blob(
        self, parsed: ParsedInstance, owner: str, instance_key: str, version: int
    ) -> _Written:
        """In a writer thread: the sealed layout and metadata, the content digest, the blob
        (encrypted, written, synced)."""
        ds = parsed.dataset
        study, series, sop = (
            parsed.study_instance_uid,
            parsed.series_instance_uid,
            parsed.sop_instance_uid,
        )
        pixels = pixel_layout(parsed.data, parsed.transfer_syntax_uid, ds)
        layout = layout_value(study, series, sop, len(parsed.data), pixels)
        sealed_layout = self.store.seal_value(owner, SEALED_LAYOUT, instance_key, version, layout)
        meta = self.store.seal_value(owner, SEALED_META, instance_key, version, _metadata(ds))
        digest = self.store.digest_index(parsed.digest)
        context = blob_context(study, series, sop, owner, version)
        name, key_id = self.store.write_blob(owner, context, io.BytesIO(parsed.data))
        return _Written(name, key_id, digest, sealed_layout, meta)

    def _flush(
        self,
        ctx: RequestContext,
        pending: dict[str, _Pending],
        results: dict[int, InstanceResult],
        sensitivity: Sensitivity,
    ) -> None:
        """Write each study's staged rows in one transaction (one audit entry per study),
        once their blobs are written (an instance whose blob failed fails alone)."""
        for batch in pending.values():
            self._settle(batch, results)
            if not batch.rows:
                continue
            attempt = Attempt(
                ctx, EventType.DICOM_INSTANCES_TRANSFERRED, "create", EventAction.CREATE
            )

            def work(conn: Connection, b: _Pending = batch, a: Attempt = attempt) -> None:
                self._write(conn, a, b, sensitivity, ctx.now)

            try:
                self.door.run(attempt, work)
            except Exception as exc:
                self.store.delete_blobs(row["blob_name"] for row in batch.rows)
                reason = None if isinstance(exc, AccessDenied) else Reason.PROCESSING_FAILURE
                if isinstance(exc, DBIntegrityError):  # a concurrent store of the same UIDs
                    reason = Reason.CONFLICT
                for result in batch.results:
                    results[result.index] = _failed_result(result, reason)
            else:
                for result in batch.results:
                    results[result.index] = result

    @staticmethod
    def _settle(batch: _Pending, results: dict[int, InstanceResult]) -> None:
        """Wait for the batch's blob writes; fill their rows, drop the failed ones."""
        failed: set[int] = set()
        for row, result, write in batch.writes:
            try:
                row.update(write.result()._asdict())
            except Exception:
                failed.add(result.index)
                results[result.index] = _failed_result(result, Reason.PROCESSING_FAILURE)
        batch.writes.clear()
        if failed:
            kept = [(r, res) for r, res in zip(batch.rows, batch.results, strict=True)]
            kept = [(r, res) for r, res in kept if res.index not in failed]
            batch.rows = [r for r, _ in kept]
            batch.results = [res for _, res in kept]

    def _write(
        self,
        conn: Connection,
        attempt: Attempt,
        batch: _Pending,
        sensitivity: Sensitivity,
        now: datetime,
    ) -> None:
        route = batch.route
        study = self.store.find_study_by_key(conn, route.study_key)
        if (study is None) != (route.existing is None) or (
            study is not None and route.existing is not None and study.owner != route.existing.owner
        ):
            # Another request created or linked the study since it was routed: the staged blobs
            # are under a key that is not (or no longer) the study's. The batch fails (blobs
            # removed, processing failure 0110): the sender's retry is routed afresh.
            raise RuntimeError("the study changed meanwhile")
        if route.patient_id is not None:
            label = study.sensitivity if study is not None else sensitivity
            resource = Resource(STUDY_KIND, route.patient_id, route.study_key, label)
            self.door.authorize(conn, attempt, Action.CREATE, resource)
        else:
            resource = Resource(STUDY_KIND, None, route.study_key)
            self.door.authorize(conn, attempt, Action.STORE_IMAGING, resource)
        if study is None:
            owner = route.owner
            self.store.insert_study(
                conn,
                study_key=route.study_key,
                uid_index=route.uid_index,
                patient_id=route.patient_id,
                holding=None if route.patient_id else owner,
                sensitivity=sensitivity,
                sealed=self.store.seal_value(
                    owner, SEALED_STUDY, route.study_key, 1, batch.study_attributes
                ),
                unmatched_reason=route.reason,
                now=now,
            )
        elif sensitivity is Sensitivity.RESTRICTED and study.sensitivity is Sensitivity.NORMAL:
            self.store.raise_sensitivity(conn, study, now)
        version = study.version if study is not None else 1
        known = self.store.existing_series(conn, batch.series)
        new = [
            {
                "series_key": key,
                "series_uid_index": index,
                "study_key": route.study_key,
                "modality": modality,
                "version": version,
                "sealed": sealed,
                "created_at": now,
            }
            for key, (index, modality, sealed) in batch.series.items()
            if key not in known
        ]
        self.store.insert_series(conn, new)
        self.store.insert_instances(conn, batch.rows)

    # -- query (QIDO) ---------------------------------------------------------------------------

    def _visible(self, conn: Connection, attempt: Attempt, patient_id: str) -> set[Sensitivity]:
        visible = {Sensitivity.NORMAL}
        restricted = Resource(STUDY_KIND, patient_id, sensitivity=Sensitivity.RESTRICTED)
        if Sensitivity.RESTRICTED in self.store.sensitivities(
            conn, patient_id
        ) and self.door.permits(conn, attempt, Action.SEARCH, restricted):
            visible.add(Sensitivity.RESTRICTED)
        return visible

    def search_studies(
        self,
        ctx: RequestContext,
        *,
        patient_id: str | None = None,
        query: StudyQuery | None = None,
        dicom_patient: tuple[str | None, str] | None = None,
    ) -> list[StudyMatch]:
        """The studies of one patient that the actor may see, filtered by ``query``. Without
        a patient, ``dicom_patient`` (IssuerOfPatientID, PatientID: a C-FIND's keys) or else
        ``query.study_uid`` names the patient; a patient or study that does not exist and one
        that is not the actor's end alike (AccessDenied)."""
        q = query or StudyQuery()
        attempt = Attempt(ctx, EventType.QUERY, "search", EventAction.EXECUTE)

        def work(conn: Connection) -> list[StudyMatch]:
            pid = patient_id
            if pid is None and dicom_patient is not None:
                pid, _ = self.store.match_patient(conn, *dicom_patient)
            elif pid is None and q.study_uid:
                found = self.store.find_study(conn, q.study_uid)
                pid = found.patient_id if found is not None else None
            if pid is not None:
                pid = check_id(pid, "patient")
            self.door.authorize(conn, attempt, Action.SEARCH, Resource(STUDY_KIND, pid))
            if pid is None:  # the policy refuses health data without a patient: unreachable
                raise StudyNotFound("no such study")
            attempt.target("Patient", pid, pid)
            rows = self.store.studies_of(conn, pid, self._visible(conn, attempt, pid))
            if q.study_uid:
                wanted = self.store.key_of(self.store.study_index(q.study_uid))
                rows = [r for r in rows if r.study_key == wanted]
            out = []
            for row in rows:
                match = self._study_match(conn, row, q)
                if match is not None:
                    out.append(match)
            return out

        return self.door.read(attempt, work)

    def _study_match(self, conn: Connection, row: StudyRow, q: StudyQuery) -> StudyMatch | None:
        attrs = self.store.open_value(
            row.owner, SEALED_STUDY, row.study_key, row.version, row.sealed
        )
        date = _text(attrs, _STUDY_DATE) or ""
        if q.date_from and (not date or date < q.date_from):
            return None
        if q.date_to and (not date or date > q.date_to):
            return None
        if q.accession_number is not None and _text(attrs, _ACCESSION) != q.accession_number:
            return None
        series = self.store.series_of(conn, row)
        modalities = tuple(sorted({s["modality"] for s in series if s["modality"]}))
        if q.modality is not None and q.modality not in modalities:
            return None
        n_instances = sum(int(s["n"]) for s in series)
        attrs = {
            **attrs,
            _MODALITIES: {"vr": "CS", "Value": list(modalities)},
            _NUM_SERIES: {"vr": "IS", "Value": [len(series)]},
            _NUM_INSTANCES: {"vr": "IS", "Value": [n_instances]},
        }
        uid = _text(attrs, _STUDY_UID) or ""
        return StudyMatch(uid, row.patient_id, attrs, modalities, len(series), n_instances)

    def _study_for(
        self, conn: Connection, attempt: Attempt, action: Action, study_uid: str
    ) -> StudyRow:
        """The study named by ``study_uid``, the actor allowed to do ``action`` on it."""
        study = self.store.find_study(conn, study_uid)
        if study is None:
            raise StudyNotFound("no such study")
        resource = Resource(STUDY_KIND, study.patient_id, study.study_key, study.sensitivity)
        self.door.authorize(conn, attempt, action, resource)
        return study

    def search_series(
        self,
        ctx: RequestContext,
        study_uid: str,
        *,
        modality: str | None = None,
    ) -> list[SeriesMatch]:
        attempt = Attempt(ctx, EventType.QUERY, "search", EventAction.EXECUTE)

        def work(conn: Connection) -> list[SeriesMatch]:
            study = self._study_for(conn, attempt, Action.SEARCH, study_uid)
            out = []
            for s in self.store.series_of(conn, study):
                if modality is not None and s["modality"] != modality:
                    continue
                attrs = s["attributes"]
                out.append(
                    SeriesMatch(
                        study_uid,
                        _text(attrs, _SERIES_UID) or "",
                        s["modality"],
                        attrs,
                        int(s["n"]),
                    )
                )
            return out

        return self.door.read(attempt, work)

    def search_instances(
        self,
        ctx: RequestContext,
        study_uid: str,
        series_uid: str | None = None,
    ) -> list[InstanceMatch]:
        attempt = Attempt(ctx, EventType.QUERY, "search", EventAction.EXECUTE)

        def work(conn: Connection) -> list[InstanceMatch]:
            study = self._study_for(conn, attempt, Action.SEARCH, study_uid)
            rows = self._rows(conn, study, series_uid)
            return StudyReader(self.store, study.owner, rows).instances

        return self.door.read(attempt, work)

    def _rows(
        self,
        conn: Connection,
        study: StudyRow,
        series_uid: str | None,
        sop_uid: str | None = None,
    ) -> list[InstanceRow]:
        series_key = sop_index = None
        if series_uid is not None:
            series_key = self.store.key_of(self.store.series_index(series_uid))
        if sop_uid is not None:
            sop_index = self.store.sop_index(sop_uid)
        found = self.store.instance_rows(conn, study, series_key=series_key, sop_index=sop_index)
        rows = [r for r, _ in found]
        if (series_uid is not None or sop_uid is not None) and not rows:
            raise StudyNotFound("no such series or instance in this study")
        return rows

    # -- retrieve (WADO) ------------------------------------------------------------------------

    def open_study(
        self,
        ctx: RequestContext,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> StudyReader:
        """Open a study (or one of its series, or one instance) for reading: one policy
        question, one audit entry (110103 Instances Accessed, naming the patient), however
        many instances and frames are then read from the returned :class:`StudyReader`."""
        attempt = Attempt(ctx, EventType.DICOM_INSTANCES_ACCESSED, "read", EventAction.READ)

        def work(conn: Connection) -> StudyReader:
            study = self._study_for(conn, attempt, Action.READ, study_uid)
            rows = self._rows(conn, study, series_uid, sop_uid)
            return StudyReader(self.store, study.owner, rows)

        return self.door.read(attempt, work)

    def open_series(
        self,
        ctx: RequestContext,
        study_uid: str,
        series_uid: str,
    ) -> StudyReader:
        return self.open_study(ctx, study_uid, series_uid)

    def read_frame(
        self,
        ctx: RequestContext,
        study_uid: str,
        series_uid: str,
        sop_uid: str,
        number: int,
    ) -> bytes:
        """One frame, as a request of its own (one audit entry): a viewer reading many frames
        uses :meth:`open_series` once instead."""
        reader = self.open_study(ctx, study_uid, series_uid)
        return reader.read_frame(sop_uid, number)

    def series_metadata(
        self,
        ctx: RequestContext,
        study_uid: str,
        series_uid: str | None = None,
        *,
        bulk_uri: BulkUri | None = None,
    ) -> list[dict[str, Any]]:
        """The DICOM JSON model of every instance of a series (or study), bulk data (pixel
        data included) as BulkDataURI (``bulk_uri`` makes them the web layer's URLs). Read
        from the sealed metadata: no blob is opened. One audit entry."""
        attempt = Attempt(ctx, EventType.DICOM_INSTANCES_ACCESSED, "read", EventAction.READ)

        def work(conn: Connection) -> list[dict[str, Any]]:
            study = self._study_for(conn, attempt, Action.READ, study_uid)
            series_key = None
            if series_uid is not None:
                series_key = self.store.key_of(self.store.series_index(series_uid))
            rows = self.store.instance_rows(conn, study, series_key=series_key, with_meta=True)
            if series_uid is not None and not rows:
                raise StudyNotFound("no such series in this study")
            return [_with_uris(meta or {}, row, bulk_uri) for row, meta in rows]

        return self.door.read(attempt, work)

    # -- imaging nodes ----------------------------------------------------------------------------

    def refuse_outside_scope(self, ctx: RequestContext, action: Action) -> None:
        """Put ``action`` on the imaging of no particular study to the policy, for a caller
        whose request is outside what it may do (an imaging node without the scope): the
        refusal is decided and audited like any other (AccessDenied), before the request is
        read. Raises nothing only if the policy allows it after all."""
        kinds = {
            Action.STORE_IMAGING: (
                EventType.DICOM_INSTANCES_TRANSFERRED,
                "create",
                EventAction.CREATE,
            ),
            Action.SEARCH: (EventType.QUERY, "search", EventAction.EXECUTE),
        }
        event, verb, event_action = kinds.get(
            action, (EventType.DICOM_INSTANCES_ACCESSED, "read", EventAction.READ)
        )
        attempt = Attempt(ctx, event, verb, event_action)

        def work(conn: Connection) -> None:
            self.door.authorize(conn, attempt, action, Resource(STUDY_KIND))

        self.door.read(attempt, work)

    # -- reconciliation -------------------------------------------------------------------------

    def reconciliation_list(self, ctx: RequestContext) -> list[PendingStudy]:
        """Studies that matched no patient, with the attributes needed to find whose they are
        (identity-vigilance staff only: the policy's ``allow.imaging-reconciliation``)."""
        attempt = Attempt(ctx, EventType.QUERY, "search", EventAction.EXECUTE)

        def work(conn: Connection) -> list[PendingStudy]:
            self.door.authorize(conn, attempt, Action.RECONCILE_IMAGING, Resource(STUDY_KIND))
            out = []
            for study in self.store.unmatched(conn):
                attrs = self.store.open_value(
                    study.owner, SEALED_STUDY, study.study_key, study.version, study.sealed
                )
                series = self.store.series_of(conn, study)
                out.append(
                    PendingStudy(
                        study.study_key,
                        study.unmatched_reason or "no-match",
                        attrs,
                        sum(int(s["n"]) for s in series),
                        study.created_at,
                    )
                )
            return out

        return self.door.read(attempt, work)

    def link_study(
        self,
        ctx: RequestContext,
        study_key: str,
        patient_id: str,
    ) -> None:
        """Link an unmatched study to ``patient_id`` by hand: every blob re-encrypted and every
        attribute re-sealed under the patient's key, then the holding key shredded. Audited
        (110103, U) naming the patient: it shows in their access log."""
        attempt = Attempt(ctx, EventType.DICOM_INSTANCES_ACCESSED, "update", EventAction.UPDATE)
        blobs: dict[str, list[str]] = {}

        def work(conn: Connection) -> str:
            study = self.store.find_study_by_key(conn, study_key)
            resource = Resource(STUDY_KIND, None, study_key)
            self.door.authorize(conn, attempt, Action.RECONCILE_IMAGING, resource)
            if study is None or study.patient_id is not None or study.holding_owner is None:
                raise StudyNotFound("no such study waiting for reconciliation")
            pid = check_id(patient_id, "patient")
            t = fhir_resources.c
            known = conn.execute(
                select(t.resource_id).where(t.resource_id == pid, t.resource_type == "Patient")
            ).first()
            if known is None:
                raise ResourceNotFound("no such patient")
            attempt.target(STUDY_KIND, study_key, pid)
            blobs["old"], blobs["new"] = self.store.relink(conn, study, pid, ctx.now)
            return study.holding_owner

        try:
            holding = self.door.run(attempt, work)
        except BaseException:
            self.store.delete_blobs(blobs.get("new", ()))  # the re-encrypted copies
            raise
        self.store.delete_blobs(blobs["old"])
        self.keyring.shred(holding)  # the holding key: nothing is sealed under it any more

    # -- housekeeping ---------------------------------------------------------------------------

    def remove_orphans(self, now: datetime, grace: timedelta = ORPHAN_GRACE) -> int:
        """Delete the blobs older than ``grace`` that no instance references (an ingest cut
        short between its blob writes and its commit); how many. A younger blob may belong to
        an ingest still running: it is kept. Idempotent, safe beside other instances."""
        with self.door.reads.connect() as conn, conn.begin():
            names = self.store.orphans(conn, now - grace)
        self.store.delete_blobs(names)
        return len(names)

    # -- erasure --------------------------------------------------------------------------------

    def erase_patient(self, patient_id: str) -> int:
        """Remove the imaging of ``patient_id``: index rows, then blobs (after the commit).
        Run by the erasure job after the patient's key was shredded (which alone already made
        every blob unreadable); returns the number of blobs removed."""
        with self.engine.begin() as conn:
            names = self.store.erase_patient(conn, patient_id)
        self.store.delete_blobs(names)
        return len(names)


def _failed(
    index: int, reason: Reason | None, parsed: ParsedInstance | None = None
) -> InstanceResult:
    sop = parsed.sop_instance_uid if parsed else None
    cls = parsed.sop_class_uid if parsed else None
    if reason is None:
        return InstanceResult(
            index, InstanceStatus.FAILED, sop, cls, "not_authorized", NOT_AUTHORIZED, NOT_AUTHORIZED
        )
    status = FAILURE_STATUSES[reason]
    kind = InstanceStatus.CONFLICT if reason is Reason.CONFLICT else InstanceStatus.FAILED
    return InstanceResult(
        index, kind, sop, cls, reason.value, status.dicomweb_failure_reason, status.dimse_status
    )


def _failed_result(result: InstanceResult, reason: Reason | None) -> InstanceResult:
    if reason is None:
        return InstanceResult(
            result.index,
            InstanceStatus.FAILED,
            result.sop_instance_uid,
            result.sop_class_uid,
            "not_authorized",
            NOT_AUTHORIZED,
            NOT_AUTHORIZED,
        )
    status = FAILURE_STATUSES[reason]
    kind = InstanceStatus.CONFLICT if reason is Reason.CONFLICT else InstanceStatus.FAILED
    return InstanceResult(
        result.index,
        kind,
        result.sop_instance_uid,
        result.sop_class_uid,
        reason.value,
        status.dicomweb_failure_reason,
        status.dimse_status,
    )


def _resend(index: int, parsed: ParsedInstance, same: bool) -> InstanceResult:
    if same:
        return _stored(index, InstanceStatus.DUPLICATE, parsed)
    return _failed(index, Reason.CONFLICT, parsed)


def _stored(index: int, status: InstanceStatus, parsed: ParsedInstance) -> InstanceResult:
    return InstanceResult(
        index,
        status,
        parsed.sop_instance_uid,
        parsed.sop_class_uid,
        study_uid=parsed.study_instance_uid,
        series_uid=parsed.series_instance_uid,
    )
