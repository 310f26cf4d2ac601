"""FHIR record use cases: create, read (vread), update, history, search, identifier lookup
(files of DocumentReferences: :mod:`secretum.records.documents`). The web layer calls these; it
never touches a store.

Each use case takes the :class:`~secretum.access.context.RequestContext` (actor, purpose, now,
address), asks the :class:`~secretum.access.guard.Guard` once (the resource's patient, type,
id and sensitivity), and writes one audit entry (DCM 110110 Patient Record, subtype the FHIR
interaction) in the same transaction as its work. A refused request raises a
:class:`~secretum.access.errors.Refused` (a :class:`~secretum.records.fhir.FhirError` with its
OperationOutcome, or the policy's :class:`~secretum.access.errors.AccessDenied`), changes
nothing and is audited as a failure.

Sensitivity: a resource is restricted when its creator labels it (``meta.security`` v3
Confidentiality ``R``/``V``, or ``sensitivity=RESTRICTED``); the label is kept in clear in the
index and is sticky: an update never lowers it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from secretum.access.context import RequestContext
from secretum.access.door import Attempt, Door
from secretum.access.guard import Guard
from secretum.access.model import Action, Resource, Sensitivity
from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType
from secretum.crypto.blind_index import BlindIndex
from secretum.records.fhir import (
    READABLE_TYPES,
    SIGNATURE_EXTENSION,
    WRITABLE_TYPES,
    FhirRecord,
    InvalidResource,
    NotSupported,
    ResourceNotFound,
    UnprocessableResource,
    VersionConflict,
    check_id,
    label_restricted,
    parse_json,
    patient_of,
    resource_type_of,
    sensitivity_of,
    stamp,
    validate,
)
from secretum.records.files import FileStore
from secretum.records.search import (
    FhirRepository,
    IndexRow,
    audit_records,
    audit_seq,
    consent_records,
)
from secretum.records.store import RecordStore

LOOKUP_KINDS = frozenset({"ins", "email"})
SERVER_ATTACHMENT = ("contentType", "url", "size", "hash")


def new_id() -> str:
    """A fresh resource id: 128 random bits, hex."""
    return secrets.token_hex(16)


def file_url(resource_id: str, version: int) -> str:
    """``Attachment.url`` of a stored file (the web layer maps it to its download route)."""
    return f"urn:secretum:file:{resource_id}:{version}"


class RecordService:
    """The FHIR record use cases (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        records: RecordStore,
        files: FileStore,
        blind_index: BlindIndex,
        audit: AuditLog,
        guard: Guard,
        *,
        ids: Callable[[], str] = new_id,
    ) -> None:
        self.engine = engine
        self.files = files
        self.repo = FhirRepository(records, blind_index)
        self.door = Door(engine, audit, guard)
        self._new_id = ids

    # -- the building blocks of the records' use cases (also those of DocumentService) -------

    @staticmethod
    def attempt(ctx: RequestContext, subtype: str, action: EventAction) -> Attempt:
        """An attempt on the patient record (DCM 110110), subtype the FHIR interaction."""
        return Attempt(ctx, EventType.PATIENT_RECORD, subtype, action)

    # -- create / update --------------------------------------------------------------------

    def create(
        self,
        ctx: RequestContext,
        resource: bytes | str | Mapping[str, Any],
        *,
        resource_id: str | None = None,
        patient_id: str | None = None,
        sensitivity: Sensitivity | None = None,
    ) -> FhirRecord:
        """FHIR create. The server assigns the id (``resource_id`` to choose it, e.g. a Patient
        whose id is the patient's account id); ``patient_id``, when given, is the patient the
        request is about and the resource must be about them."""
        attempt = self.attempt(ctx, "create", EventAction.CREATE)

        def work(conn: Connection) -> FhirRecord:
            kind = resource_type_of(parse_json(resource), WRITABLE_TYPES)
            body = validate(resource)
            _no_inline_file(body)
            _no_client_attachment(body)
            _no_client_signature(body)
            rid = self.fresh_id(conn, resource_id or (patient_id if kind == "Patient" else None))
            attempt.target(kind, rid)
            body["id"] = rid
            pid = self.patient_of(conn, body, patient_id)
            sens = sensitivity_for(body, sensitivity, None)
            self.door.authorize(conn, attempt, Action.CREATE, Resource(kind, pid, rid, sens))
            return self.write(conn, body, None, pid, sens, ctx.now, attempt=attempt)

        return self.door.run(attempt, work)

    def update(
        self,
        ctx: RequestContext,
        resource_type: str,
        resource_id: str,
        resource: bytes | str | Mapping[str, Any],
        *,
        if_match: int | None = None,
        patient_id: str | None = None,
        sensitivity: Sensitivity | None = None,
    ) -> FhirRecord:
        """FHIR update of an existing resource: a new version (the old ones are kept).

        ``if_match``: the version the client last saw (VersionConflict if it is not current).
        The patient and the type of a resource never change; the file of a DocumentReference
        is kept (its attachment's contentType, url, size and hash are the server's).
        """
        attempt = self.attempt(ctx, "update", EventAction.UPDATE)

        def work(conn: Connection) -> FhirRecord:
            row = self.existing(conn, attempt, resource_type, resource_id, WRITABLE_TYPES)
            body = validate(resource, resource_type)
            _no_inline_file(body)
            _no_client_signature(body)
            if body.get("id") != resource_id:
                raise UnprocessableResource("the resource id must match the id of the request")
            pid = self.patient_of(conn, body, patient_id)
            if pid != row.patient_id:
                raise UnprocessableResource("a resource cannot move to another patient")
            sens = sensitivity_for(body, sensitivity, row.sensitivity)
            resource_ = Resource(resource_type, pid, resource_id, sens)
            self.door.authorize(conn, attempt, Action.UPDATE, resource_)
            if if_match is not None and if_match != row.version:
                raise VersionConflict("the resource was changed since that version")
            if row.file_version is not None:
                previous = self.repo.load(conn, row).resource
                _keep_attachment(body, previous)
            else:
                _no_client_attachment(body)
            version = row.file_version
            return self.write(conn, body, row, pid, sens, ctx.now, version, attempt=attempt)

        return self.door.run(attempt, work)

    def write(
        self,
        conn: Connection,
        body: dict[str, Any],
        previous: IndexRow | None,
        patient_id: str | None,
        sensitivity: Sensitivity,
        now: datetime,
        file_version: int | None = None,
        *,
        attempt: Attempt | None = None,
    ) -> FhirRecord:
        if sensitivity is Sensitivity.RESTRICTED:
            label_restricted(body)
        stamp(body, body["id"], (previous.version if previous else 0) + 1, now)
        if body["resourceType"] == "Patient" and patient_id is not None:
            collisions = self.repo.index_identifiers(conn, patient_id, body)
            if collisions and attempt is not None:
                self._identity_alert(conn, attempt, patient_id, collisions)
        return self.repo.save(
            conn,
            body,
            previous=previous,
            patient_id=patient_id,
            sensitivity=sensitivity,
            now=now,
            file_version=file_version,
        )

    def write_new(
        self,
        conn: Connection,
        body: Mapping[str, Any],
        *,
        patient_id: str,
        now: datetime,
        resource_id: str | None = None,
    ) -> FhirRecord:
        """A new resource about ``patient_id`` written inside another use case's transaction,
        which has already been decided and is audited by that use case's door (e.g. the
        agenda's consultation note): validated, its id fresh (``resource_id`` to choose it),
        sealed with the patient's key, normal sensitivity."""
        checked = validate(body)
        rid = self.fresh_id(conn, resource_id)
        checked["id"] = rid
        pid = self.patient_of(conn, checked, patient_id)
        return self.write(conn, checked, None, pid, Sensitivity.NORMAL, now)

    def _identity_alert(
        self, conn: Connection, attempt: Attempt, patient_id: str, holders: list[str]
    ) -> None:
        """An INS collision (see :meth:`FhirRepository.index_identifiers`): accepted without a
        word to the writer, and told to identity vigilance instead: one DCM 110113 Security
        Alert per other holder, in the write's transaction, naming the Patient just written as
        the resource and the other holder as the patient (so it also reaches their access log).
        """
        self.door.audit.append_many(
            conn,
            (
                AuditEvent(
                    recorded=attempt.now,
                    event_type=EventType.SECURITY_ALERT,
                    action=EventAction.EXECUTE,
                    actor_id=attempt.actor.user_id,
                    actor_role=str(attempt.actor.role),
                    resource_type="Patient",
                    resource_id=patient_id,
                    patient_id=holder,
                )
                for holder in holders
            ),
        )

    def fresh_id(self, conn: Connection, wanted: str | None) -> str:
        rid = check_id(wanted) if wanted else self._new_id()
        if self.repo.find(conn, rid) is not None:
            raise VersionConflict("a resource with this id exists", code="duplicate")
        return rid

    def patient_of(
        self, conn: Connection, body: Mapping[str, Any], expected: str | None
    ) -> str | None:
        """The patient ``body`` is about: an existing Patient, and ``expected`` if given."""
        pid = patient_of(body)
        kind = body["resourceType"]
        if pid is not None and kind != "Patient":
            row = self.repo.find(conn, pid)
            if row is None or row.resource_type != "Patient":
                raise UnprocessableResource(f"{kind} must be about an existing Patient")
        if expected is not None and pid != expected:
            raise UnprocessableResource(f"{kind} must be about the patient of the request")
        return pid

    def existing(
        self,
        conn: Connection,
        attempt: Attempt,
        resource_type: str,
        resource_id: str,
        types: frozenset[str] = READABLE_TYPES,
    ) -> IndexRow:
        _asked(attempt, resource_type, resource_id, types)
        row = self.repo.find(conn, resource_id)
        if row is None or row.resource_type != resource_type:
            raise ResourceNotFound(f"no {resource_type} with this id")
        return row

    # -- read / history / search ------------------------------------------------------------

    def read(
        self,
        ctx: RequestContext,
        resource_type: str,
        resource_id: str,
        *,
        version: int | None = None,
    ) -> FhirRecord:
        """FHIR read (or vread with ``version``). Blocking (database, key unwrap): on the
        event loop, call it in a worker thread."""
        subtype = "read" if version is None else "vread"
        attempt = self.attempt(ctx, subtype, EventAction.READ)

        def work(conn: Connection) -> FhirRecord:
            if resource_type == "AuditEvent":
                return self._read_audit_event(conn, attempt, resource_id)
            if resource_type == "Consent":
                return self._read_consent(conn, attempt, resource_id)
            _asked(attempt, resource_type, resource_id, READABLE_TYPES)
            # the index row and the sealed version in one query; opened only once allowed
            hit = self.repo.find_sealed(conn, resource_id, version)
            if hit is None or hit.row.resource_type != resource_type:
                raise ResourceNotFound(f"no {resource_type} with this id")
            row = hit.row
            resource_ = Resource(resource_type, row.patient_id, resource_id, row.sensitivity)
            self.door.authorize(conn, attempt, Action.READ, resource_)
            if version is not None and not 1 <= version <= row.version:
                raise ResourceNotFound(f"no such version of this {resource_type}")
            return self.repo.open_hit(hit)

        return self.door.read(attempt, work)

    def _read_consent(self, conn: Connection, attempt: Attempt, resource_id: str) -> FhirRecord:
        check_id(resource_id, "Consent")
        found = consent_records(conn, consent_id=resource_id)
        if not found:
            raise ResourceNotFound("no Consent with this id")
        self.door.authorize(conn, attempt, Action.READ, Resource("Consent", found[0].patient_id))
        attempt.target("Consent", resource_id)
        return found[0]

    def _read_audit_event(self, conn: Connection, attempt: Attempt, resource_id: str) -> FhirRecord:
        seq = audit_seq(resource_id)
        found = [] if seq is None else audit_records(conn, seq=seq)
        if not found:
            raise ResourceNotFound("no AuditEvent with this id")
        resource_ = Resource("AuditEvent", found[0].patient_id, resource_id)
        self.door.authorize(conn, attempt, Action.READ, resource_)
        return found[0]

    def history(
        self,
        ctx: RequestContext,
        resource_type: str,
        resource_id: str,
    ) -> list[FhirRecord]:
        """FHIR history of one resource: every version, newest first."""
        attempt = self.attempt(ctx, "history", EventAction.READ)

        def work(conn: Connection) -> list[FhirRecord]:
            row = self.existing(conn, attempt, resource_type, resource_id, WRITABLE_TYPES)
            resource_ = Resource(resource_type, row.patient_id, resource_id, row.sensitivity)
            self.door.authorize(conn, attempt, Action.READ, resource_)
            return self.repo.history(conn, row)

        return self.door.read(attempt, work)

    def search(
        self,
        ctx: RequestContext,
        patient_id: str,
        resource_type: str | None = None,
    ) -> list[FhirRecord]:
        """Resources of one patient (of one type, or all but AuditEvent) that the actor may see.

        The guard is asked for normal data (AccessDenied if refused); restricted resources are
        included only if the patient has some and the guard also allows restricted data.
        """
        attempt = self.attempt(ctx, "search", EventAction.EXECUTE)

        def work(conn: Connection) -> list[FhirRecord]:
            if resource_type is not None and resource_type not in READABLE_TYPES:
                raise NotSupported("this resource type cannot be searched")
            pid = check_id(patient_id, "patient")
            kind = resource_type or "Patient"
            present = Sensitivity.RESTRICTED in self.repo.sensitivities(conn, pid, resource_type)
            scope = self.door.scope(
                conn, attempt, Action.SEARCH, Resource(kind, pid), restricted_present=present
            )
            attempt.target("Patient", pid, pid)
            if resource_type == "AuditEvent":
                return audit_records(conn, patient_id=pid)
            if resource_type == "Consent":
                return consent_records(conn, patient_id=pid)
            rows = self.repo.scoped(conn, scope, resource_type)
            return list(self.repo.load_all(conn, rows))

        return self.door.read(attempt, work)

    def find_patients(
        self,
        ctx: RequestContext,
        kind: str,
        value: str,
    ) -> list[FhirRecord]:
        """Patients whose identifier of ``kind`` (``ins`` or ``email``) is ``value``, by blind
        index, that the actor may see. The guard is asked about the one patient found (its
        audit entry names them, allowed or not); when none or several are, each one is asked
        (a scoping question) and the answer is those allowed, authorized on the first of them,
        or on a patient-less Patient lookup when there are none. So "no such patient" and "not
        yours" end alike (AccessDenied, which the web layer sends as one fixed answer), and a
        second holder of an INS (a collision) changes nothing for a caller who may not see
        them."""
        attempt = self.attempt(ctx, "search", EventAction.EXECUTE)

        def work(conn: Connection) -> list[FhirRecord]:
            if kind not in LOOKUP_KINDS:
                raise InvalidResource("unknown identifier kind (ins, email)")
            ids = self.repo.patients_by_identifier(conn, kind, value)
            found = [self.repo.find(conn, pid) for pid in ids]
            rows = [r for r in found if r is not None and r.resource_type == "Patient"]
            asked = [Resource("Patient", r.patient_id, r.resource_id, r.sensitivity) for r in rows]
            if len(rows) == 1:
                self.door.authorize(conn, attempt, Action.SEARCH, asked[0])
                return list(self.repo.load_all(conn, rows))
            visible = [
                (r, res)
                for r, res in zip(rows, asked, strict=True)
                if self.door.permits(conn, attempt, Action.SEARCH, res)
            ]
            first = visible[0][1] if visible else Resource("Patient")
            self.door.authorize(conn, attempt, Action.SEARCH, first)
            return list(self.repo.load_all(conn, [r for r, _ in visible]))

        return self.door.read(attempt, work)


def _no_inline_file(body: Mapping[str, Any]) -> None:
    """A DocumentReference's file comes through the upload (type allow-list, signature check,
    size limit, streaming encryption: :class:`~secretum.records.documents.DocumentService`),
    never inline as base64 ``attachment.data``, which would skip all of them."""
    if body.get("resourceType") != "DocumentReference":
        return
    for entry in body.get("content") or ():
        attachment = entry.get("attachment") if isinstance(entry, Mapping) else None
        if isinstance(attachment, Mapping) and attachment.get("data") is not None:
            raise UnprocessableResource(
                "a DocumentReference's file is uploaded as a file, not inline (attachment.data)"
            )


def _no_client_signature(body: Mapping[str, Any]) -> None:
    """A report's signature is written by the signing use case after it verified the
    assertion (:mod:`secretum.radiology`), never sent by a client: a copied signature would
    be shown as this version's."""
    for extension in body.get("extension") or ():
        if isinstance(extension, Mapping) and extension.get("url") == SIGNATURE_EXTENSION:
            raise UnprocessableResource("a signature is made by signing, not written")


def _no_client_attachment(body: dict[str, Any]) -> None:
    """Drop what a client says of a DocumentReference's file (contentType, url, size, hash)
    when the server holds none: those are the server's to set from the file it stores
    (:class:`~secretum.records.documents.DocumentService`). Kept, a url naming another
    document's file and a forged size or hash would be shown as this document's own."""
    if body.get("resourceType") != "DocumentReference":
        return
    for entry in body.get("content") or ():
        attachment = entry.get("attachment") if isinstance(entry, dict) else None
        if isinstance(attachment, dict):
            for name in SERVER_ATTACHMENT:
                attachment.pop(name, None)


def _asked(attempt: Attempt, resource_type: str, resource_id: str, types: frozenset[str]) -> None:
    """Check what a request names (type served by the interaction, well-formed id) and name it
    in the attempt's audit entry."""
    if resource_type not in types:
        raise NotSupported("this resource type is not supported by this interaction")
    check_id(resource_id)
    attempt.target(resource_type, resource_id)


def sensitivity_for(
    body: Mapping[str, Any], asked: Sensitivity | None, previous: Sensitivity | None
) -> Sensitivity:
    """Restricted if labelled, asked for, or already restricted (never lowered)."""
    levels = {sensitivity_of(body), asked, previous}
    return Sensitivity.RESTRICTED if Sensitivity.RESTRICTED in levels else Sensitivity.NORMAL


def _keep_attachment(body: dict[str, Any], previous: Mapping[str, Any]) -> None:
    """A DocumentReference update keeps the stored file: one content, the server's fields."""
    entries = body.get("content", [])
    if len(entries) != 1:
        raise UnprocessableResource("a DocumentReference holds exactly one file")
    kept = previous["content"][0]["attachment"]
    attachment = entries[0].setdefault("attachment", {})
    attachment.pop("data", None)
    attachment.update({k: kept[k] for k in SERVER_ATTACHMENT if k in kept})
