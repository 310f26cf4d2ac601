"""Sealed records: versioned, encrypted with the patient's data key, context bound.

A thin repository over :data:`secretum.records.tables.sealed_records`. Each write creates a new
version (history is kept); a read opens the sealed bytes with the patient's data key and the
record's own context, so a ciphertext copied onto another row does not open. Callers pass the
SQLAlchemy connection of their transaction, so the audit entry commits with the write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, func, insert, select

from secretum.crypto.context import RecordContext
from secretum.crypto.errors import IntegrityError
from secretum.crypto.records import key_id_of, open_sealed, seal
from secretum.keys.keyring import KeyRing, utc_now
from secretum.records.tables import sealed_records


@dataclass(frozen=True)
class Record:
    record_id: str
    version: int
    patient_id: str
    record_type: str
    payload: bytes
    created_at: datetime

    def __repr__(self) -> str:  # the payload is patient data: never in a repr
        return f"Record({self.record_type}/{self.record_id} v{self.version})"


class RecordNotFound(LookupError):
    pass


# The reads, built once (every record read runs one): SQLAlchemy reuses their compiled form.
_OF_RECORD = select(sealed_records).where(sealed_records.c.record_id == bindparam("record_id"))
_LATEST = _OF_RECORD.order_by(sealed_records.c.version.desc()).limit(1)
_VERSION = _OF_RECORD.where(sealed_records.c.version == bindparam("version"))


class RecordStore:
    def __init__(self, keyring: KeyRing, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.keyring = keyring
        self._clock = clock

    def put(
        self,
        conn: Connection,
        *,
        patient_id: str,
        record_type: str,
        record_id: str,
        payload: bytes,
        now: datetime | None = None,
    ) -> int:
        """Store a new version of a record; returns its version number (1, 2, ...).

        ``now`` is the version's creation time (default: the store's clock).
        """
        last = conn.execute(
            select(func.max(sealed_records.c.version)).where(
                sealed_records.c.record_id == record_id
            )
        ).scalar()
        if last is not None:
            owner = conn.execute(
                select(sealed_records.c.patient_id, sealed_records.c.record_type)
                .where(sealed_records.c.record_id == record_id)
                .limit(1)
            ).one()
            if tuple(owner) != (patient_id, record_type):
                raise ValueError("a record keeps its patient and type across versions")
        version = (last or 0) + 1
        key = self.keyring.data_key(patient_id, create=True)
        context = RecordContext(record_type, record_id, patient_id, version)
        conn.execute(
            insert(sealed_records).values(
                record_id=record_id,
                version=version,
                patient_id=patient_id,
                record_type=record_type,
                key_id=key.key_id,
                sealed=seal(key, payload, context),
                created_at=now or self._clock(),
            )
        )
        return version

    def get(self, conn: Connection, record_id: str, version: int | None = None) -> Record:
        """The latest (or given) version, decrypted; IntegrityError if it was tampered with."""
        if version is None:
            row = conn.execute(_LATEST, {"record_id": record_id}).mappings().first()
        else:
            params = {"record_id": record_id, "version": version}
            row = conn.execute(_VERSION, params).mappings().first()
        if row is None:
            raise RecordNotFound(record_id)
        return self.open_row(row)

    def history(self, conn: Connection, record_id: str) -> list[Record]:
        rows = conn.execute(
            select(sealed_records)
            .where(sealed_records.c.record_id == record_id)
            .order_by(sealed_records.c.version)
        ).mappings()
        return [self.open_row(row) for row in rows]

    def ids_of_patient(self, conn: Connection, patient_id: str) -> list[str]:
        return list(
            conn.execute(
                select(sealed_records.c.record_id)
                .where(sealed_records.c.patient_id == patient_id)
                .distinct()
                .order_by(sealed_records.c.record_id)
            ).scalars()
        )

    def open_row(self, r: RowMapping | Mapping[str, Any]) -> Record:
        """Decrypt one row of ``sealed_records`` (its columns by name), fetched by :meth:`get`
        or by a caller's own query; IntegrityError if it was tampered with."""
        sealed: bytes = r["sealed"]
        if key_id_of(sealed) != r["key_id"]:
            raise IntegrityError("record key id does not match its ciphertext")
        key = self.keyring.data_key_for(r["patient_id"], r["key_id"])
        context = RecordContext(r["record_type"], r["record_id"], r["patient_id"], r["version"])
        return Record(
            record_id=r["record_id"],
            version=r["version"],
            patient_id=r["patient_id"],
            record_type=r["record_type"],
            payload=open_sealed(key, sealed, context),
            created_at=r["created_at"],
        )
