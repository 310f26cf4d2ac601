"""The FHIR repository: sealed resources, their index, and the blind index of identifiers.

Every resource version is sealed whole (its JSON) with the patient's data key through
:class:`~secretum.records.store.RecordStore`; the index row (:data:`fhir_resources`) keeps what
the repository needs to scope a query without opening anything: ids, type, version, time and
the sensitivity label. Queries take the patient and the sensitivities the actor may see, so a
restricted resource is never even decrypted for an actor who may not see it.

Lookup identifiers of a Patient (INS, e-mail) go into :data:`fhir_identifiers` as blind-index
values (HMAC): found by exact match, never stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from secretum.access.door import Scope
from secretum.access.model import Sensitivity
from secretum.audit.fhir import to_audit_event
from secretum.audit.store import audit_entries
from secretum.crypto.blind_index import BlindIndex
from secretum.records.fhir import (
    FhirRecord,
    VersionConflict,
    sensitivity_of,
)
from secretum.records.store import Record, RecordNotFound, RecordStore
from secretum.records.tables import (
    encrypted_files,
    fhir_identifiers,
    fhir_resources,
    sealed_records,
)
from secretum.storage.integrity import RowSpec

#: Identifier systems indexed for lookup, and their blind-index kind (French INS, ANS OIDs).
IDENTIFIER_KINDS = {
    "urn:oid:1.2.250.1.213.1.4.8": "ins",  # INS-NIR
    "urn:oid:1.2.250.1.213.1.4.9": "ins",  # INS-NIA
    "urn:oid:1.2.250.1.213.1.4.10": "ins",  # INS-NIR test
    "urn:oid:1.2.250.1.213.1.4.11": "ins",  # INS-NIA test
}
#: Kinds one patient at most should hold (an e-mail may be shared, e.g. by a family): a second
#: holder is a collision for identity vigilance (see :meth:`FhirRepository.index_identifiers`).
UNIQUE_KINDS = frozenset({"ins"})


def aware(when: datetime) -> datetime:
    """SQLite hands back naive datetimes: they are UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class IndexRow:
    resource_id: str
    resource_type: str
    patient_id: str | None
    version: int
    sensitivity: Sensitivity
    file_version: int | None
    last_updated: datetime

    @property
    def owner_id(self) -> str:
        """Whose data key seals it: the patient's, or the resource's own (Practitioner)."""
        return self.patient_id or self.resource_id


#: What the tag of an index row covers: the resource's id, type, patient, *current version*,
#: sensitivity label and file version. A label lowered, a patient changed, or the version
#: rolled back (the latest sealed version deleted and the index reset to the one before) leaves
#: a row whose tag fails: the database does not hold the key to make a new one. What a tag
#: cannot catch is a whole old row written back with its old tag (a replay by someone who kept
#: a copy): see the README's security model.
INDEX_SPEC = RowSpec(
    "fhir_resources",
    ("resource_id",),
    ("resource_type", "patient_id", "version", "sensitivity", "file_version"),
)


def _row(conn: Connection, r: RowMapping) -> IndexRow:
    """An index row, its tag checked (RowTampered if it fails)."""
    INDEX_SPEC.check(conn, r)
    return IndexRow(
        r["resource_id"],
        r["resource_type"],
        r["patient_id"],
        r["version"],
        Sensitivity(r["sensitivity"]),
        r["file_version"],
        aware(r["last_updated"]),
    )


@dataclass(frozen=True)
class SealedHit:
    """An index row and one version of its resource as stored: sealed, not yet opened."""

    row: IndexRow
    #: the ``sealed_records`` row (columns by name); None if there is no such version
    sealed: Mapping[str, Any] | None


# Built once (the read path runs them on every request): SQLAlchemy reuses the compiled form.
_FIND = select(fhir_resources).where(fhir_resources.c.resource_id == bindparam("resource_id"))
_SEALED_COLUMNS = ("version", "patient_id", "record_type", "key_id", "sealed", "created_at")
#: The index row and, in the same query, the sealed version asked for (default: the current).
_FIND_SEALED = (
    select(
        fhir_resources,
        *(sealed_records.c[name].label(f"sealed_{name}") for name in _SEALED_COLUMNS),
    )
    .select_from(
        fhir_resources.outerjoin(
            sealed_records,
            and_(
                sealed_records.c.record_id == fhir_resources.c.resource_id,
                sealed_records.c.version
                == func.coalesce(bindparam("version", type_=Integer()), fhir_resources.c.version),
            ),
        )
    )
    .where(fhir_resources.c.resource_id == bindparam("resource_id"))
)


class FhirRepository:
    """Reads and writes FHIR resources in the caller's transaction."""

    def __init__(self, records: RecordStore, blind_index: BlindIndex) -> None:
        self.records = records
        self.blind_index = blind_index

    # -- index ----------------------------------------------------------------------------------

    def find(self, conn: Connection, resource_id: str) -> IndexRow | None:
        found = conn.execute(_FIND, {"resource_id": resource_id}).mappings().first()
        return None if found is None else _row(conn, found)

    def find_sealed(
        self, conn: Connection, resource_id: str, version: int | None = None
    ) -> SealedHit | None:
        """The index row of ``resource_id`` and its version ``version`` (default: the current
        one) still sealed, in one query: the caller decides on the row before anything is
        opened (:meth:`open_hit`)."""
        found = (
            conn.execute(_FIND_SEALED, {"resource_id": resource_id, "version": version})
            .mappings()
            .first()
        )
        if found is None:
            return None
        sealed = None
        if found["sealed_version"] is not None:
            sealed = {name: found[f"sealed_{name}"] for name in _SEALED_COLUMNS}
            sealed["record_id"] = resource_id
        return SealedHit(_row(conn, found), sealed)

    def scoped(
        self, conn: Connection, scope: Scope, resource_type: str | None = None
    ) -> list[IndexRow]:
        """Index rows (of ``resource_type``) within ``scope``: its patients, its labels. The
        scope is the door's decision (:meth:`~secretum.access.door.Door.scope`), a required
        argument: the query cannot forget to narrow by it."""
        t = fhir_resources.c
        query = select(fhir_resources).where(
            t.patient_id.in_(sorted(scope.patient_ids)),
            t.sensitivity.in_(sorted(str(s) for s in scope.labels)),
        )
        if resource_type is not None:
            query = query.where(t.resource_type == resource_type)
        rows = conn.execute(query.order_by(t.resource_type, t.created_at, t.resource_id))
        return [_row(conn, r) for r in rows.mappings()]

    def sensitivities(
        self, conn: Connection, patient_id: str, resource_type: str | None = None
    ) -> set[Sensitivity]:
        t = fhir_resources.c
        query = select(t.sensitivity).where(t.patient_id == patient_id).distinct()
        if resource_type is not None:
            query = query.where(t.resource_type == resource_type)
        return {Sensitivity(s) for s in conn.execute(query).scalars()}

    # -- sealed resources -----------------------------------------------------------------------

    def save(
        self,
        conn: Connection,
        resource: dict[str, Any],
        *,
        previous: IndexRow | None,
        patient_id: str | None,
        sensitivity: Sensitivity,
        now: datetime,
        file_version: int | None = None,
    ) -> FhirRecord:
        """Seal ``resource`` (already stamped with id and meta) as its next version."""
        resource_id, kind = resource["id"], resource["resourceType"]
        version = int(resource["meta"]["versionId"])
        try:
            self._store(conn, resource, previous, patient_id, sensitivity, now, file_version)
        except DBIntegrityError:  # a concurrent writer took this id or version first
            raise VersionConflict("the resource changed meanwhile") from None
        return FhirRecord(kind, resource_id, version, patient_id, sensitivity, now, resource)

    def _store(
        self,
        conn: Connection,
        resource: dict[str, Any],
        previous: IndexRow | None,
        patient_id: str | None,
        sensitivity: Sensitivity,
        now: datetime,
        file_version: int | None,
    ) -> None:
        resource_id, kind = resource["id"], resource["resourceType"]
        version = int(resource["meta"]["versionId"])
        payload = json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode()
        owner = patient_id or resource_id
        stored = self.records.put(
            conn,
            patient_id=owner,
            record_type=kind,
            record_id=resource_id,
            payload=payload,
            now=now,
        )
        if stored != version:
            raise VersionConflict("the resource changed meanwhile")
        values = dict(
            version=version,
            sensitivity=str(sensitivity),
            last_updated=now,
            file_version=file_version,
        )
        identity = dict(resource_id=resource_id, resource_type=kind, patient_id=patient_id)
        values["row_mac"] = INDEX_SPEC.tag(conn, {**identity, **values})
        if previous is None:
            conn.execute(insert(fhir_resources).values(created_at=now, **identity, **values))
        else:
            done = conn.execute(
                update(fhir_resources)
                .where(fhir_resources.c.resource_id == resource_id)
                .where(fhir_resources.c.version == previous.version)
                .values(**values)
            )
            if done.rowcount != 1:
                raise VersionConflict("the resource changed meanwhile")

    def load(self, conn: Connection, row: IndexRow, version: int | None = None) -> FhirRecord:
        """Open one version (default: the current one) of an indexed resource."""
        return self._opened(row, self.records.get(conn, row.resource_id, version))

    def open_hit(self, hit: SealedHit) -> FhirRecord:
        """Open the version found by :meth:`find_sealed` (RecordNotFound if there was none)."""
        if hit.sealed is None:
            raise RecordNotFound(hit.row.resource_id)
        return self._opened(hit.row, self.records.open_row(hit.sealed))

    def _opened(self, row: IndexRow, record: Record) -> FhirRecord:
        if record.patient_id != row.owner_id or record.record_type != row.resource_type:
            raise LookupError("index and sealed record disagree")
        return self._record(row, record.version, json.loads(record.payload))

    def history(self, conn: Connection, row: IndexRow) -> list[FhirRecord]:
        """Every version, newest first."""
        versions = self.records.history(conn, row.resource_id)
        return [self._record(row, r.version, json.loads(r.payload)) for r in reversed(versions)]

    def load_all(self, conn: Connection, rows: list[IndexRow]) -> Iterator[FhirRecord]:
        for row in rows:
            yield self.load(conn, row)

    @staticmethod
    def _record(row: IndexRow, version: int, resource: dict[str, Any]) -> FhirRecord:
        updated = resource.get("meta", {}).get("lastUpdated")
        when = aware(datetime.fromisoformat(updated)) if updated else row.last_updated
        sensitivity = row.sensitivity if version == row.version else sensitivity_of(resource)
        return FhirRecord(
            row.resource_type, row.resource_id, version, row.patient_id, sensitivity, when, resource
        )

    # -- blind index of identifiers -------------------------------------------------------------

    def identifiers_of(self, patient: Mapping[str, Any]) -> set[tuple[str, bytes]]:
        """Blind-index values of a Patient's INS identifiers and e-mail addresses."""
        found: set[tuple[str, bytes]] = set()
        for ident in patient.get("identifier", []):
            kind = IDENTIFIER_KINDS.get(ident.get("system", ""))
            if kind and ident.get("value"):
                found.add((kind, self.blind_index(kind, ident["value"])))
        for telecom in patient.get("telecom", []):
            if telecom.get("system") == "email" and telecom.get("value"):
                found.add(("email", self.blind_index("email", telecom["value"])))
        return found

    def index_identifiers(
        self, conn: Connection, patient_id: str, patient: Mapping[str, Any]
    ) -> list[str]:
        """Replace the blind-index entries of ``patient_id`` with those of ``patient``; return
        the other patients already holding one of its INS (a collision, indexed all the same).

        A collision is not refused: the refusal would tell the writer that this INS belongs to
        a patient here, whoever they are (an oracle on the whole platform for anyone who may
        edit one Patient). Nor is it dropped from the index: a later lookup of that INS would
        then find only the other patient, and its refusal tell the same thing. Both patients
        keep the INS; which record is right is for identity vigilance to settle (the record
        service raises an audit alert), and a lookup answers each caller the holders they may
        see."""
        t = fhir_identifiers.c
        conn.execute(delete(fhir_identifiers).where(t.patient_id == patient_id))
        values = self.identifiers_of(patient)
        collisions = sorted(
            {
                holder
                for kind, blind in values
                if kind in UNIQUE_KINDS
                for holder in self._holders(conn, kind, blind)
            }
        )
        if values:
            conn.execute(
                insert(fhir_identifiers),
                [{"kind": k, "blind_value": b, "patient_id": patient_id} for k, b in values],
            )
        return collisions

    def patients_by_identifier(self, conn: Connection, kind: str, value: str) -> list[str]:
        return self._holders(conn, kind, self.blind_index(kind, value))

    def _holders(self, conn: Connection, kind: str, blind: bytes) -> list[str]:
        t = fhir_identifiers.c
        query = select(t.patient_id).where(t.kind == kind, t.blind_value == blind)
        return sorted(conn.execute(query).scalars())

    def forget_identifiers(self, conn: Connection, patient_id: str) -> None:
        conn.execute(delete(fhir_identifiers).where(fhir_identifiers.c.patient_id == patient_id))

    # -- activity -------------------------------------------------------------------------------

    def last_activity(self, conn: Connection, patient_id: str) -> datetime | None:
        """The time of the newest record or file version of the patient (retention start)."""
        times = [
            conn.execute(
                select(func.max(t.c.created_at)).where(t.c.patient_id == patient_id)
            ).scalar()
            for t in (sealed_records, encrypted_files)
        ]
        times.append(
            conn.execute(
                select(func.max(fhir_resources.c.last_updated)).where(
                    fhir_resources.c.patient_id == patient_id
                )
            ).scalar()
        )
        known = [aware(t) for t in times if t is not None]
        return max(known) if known else None


# -- AuditEvent: read-only, from the audit log ----------------------------------------------------

AUDIT_ID_PREFIX = "audit-"


def audit_records(
    conn: Connection, *, patient_id: str | None = None, seq: int | None = None
) -> list[FhirRecord]:
    """Audit entries (of one patient, or the one at ``seq``) as FHIR AuditEvent records."""
    t = audit_entries.c
    query = select(audit_entries).order_by(t.seq)
    if patient_id is not None:
        query = query.where(t.patient_id == patient_id)
    if seq is not None:
        query = query.where(t.seq == seq)
    records = []
    for row in conn.execute(query).mappings():
        event = to_audit_event(dict(row))
        when = aware(datetime.fromisoformat(row["recorded"].replace("Z", "+00:00")))
        records.append(
            FhirRecord(
                "AuditEvent", event["id"], 1, row["patient_id"], Sensitivity.NORMAL, when, event
            )
        )
    return records


def audit_seq(resource_id: str) -> int | None:
    """The ``seq`` of an AuditEvent id (``audit-<seq>``), None if it is not one."""
    digits = resource_id.removeprefix(AUDIT_ID_PREFIX)
    if resource_id == digits or not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)


# -- Consent: read-only, from the consent context's records ----------------------------------------


def consent_records(
    conn: Connection, *, patient_id: str | None = None, consent_id: str | None = None
) -> list[FhirRecord]:
    """The consents (withdrawn ones too) of one patient, or the one ``consent_id``, as FHIR
    Consent records (version 2 once withdrawn)."""
    from secretum.consent import store as consents
    from secretum.consent.fhir import to_fhir_consent

    if consent_id is not None:
        one = consents.get(conn, consent_id)
        found = [] if one is None else [one]
    else:
        found = consents.history(conn, patient_id) if patient_id is not None else []
    records = []
    for consent in found:
        last = consent.withdrawn or consent.granted
        version = 1 if consent.withdrawn is None else 2
        resource = to_fhir_consent(consent)
        records.append(
            FhirRecord(
                "Consent",
                consent.consent_id,
                version,
                consent.patient_id,
                Sensitivity.NORMAL,
                aware(last.at),
                resource,
            )
        )
    return records
