"""Shared world of the imaging archive tests (imported by them; holds no test).

The archive runs with the *real* policy (``PolicyGuard``: consent, care relationships,
labels, break-the-glass as stored), on the ``engine``/``vault_engine`` fixtures (SQLite and
PostgreSQL). Patients are created through the record service (allow-all guard: not what is
tested here). Cast: the referring doctor who sends the images (care team, teleradiology
consent), the radiologist (a referral), a stranger radiologist, identity-vigilance staff.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from secretum.access.context import RequestContext
from secretum.access.guard import TableGuard, allow
from secretum.access.model import Actor, Purpose, Role
from secretum.audit.log import AuditLog
from secretum.audit.store import audit_entries
from secretum.consent.service import ConsentService
from secretum.consent.store import ConsentMethod
from secretum.consent.texts import default_texts
from secretum.crypto.blind_index import BlindIndex
from secretum.crypto.kms.fake import FakeKMS
from secretum.imaging.archive import ImagingArchive
from secretum.keys.keyring import KeyRing
from secretum.policy import care
from secretum.policy.care import CareBasis
from secretum.policy.guard import PolicyGuard
from secretum.policy.rules import IDENTITY_VIGILANCE_SPECIALTY
from secretum.records.files import FileStore
from secretum.records.service import RecordService
from secretum.records.store import RecordStore
from secretum.storage.blobs import FileSystemBlobStore

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
TR = Purpose.TELERADIOLOGY
SENDER = Actor("doc-sender", Role.PRACTITIONER)
RADIOLOGIST = Actor("rad-1", Role.PRACTITIONER, specialty="radiology")
STRANGER = Actor("rad-2", Role.PRACTITIONER, specialty="radiology")
VIGIL = Actor(
    "vig-1", Role.PRACTITIONER, strong_auth_at=NOW, specialty=IDENTITY_VIGILANCE_SPECIALTY
)
#: The request contexts the tests use most: the sending practitioner, the reading radiologist
#: (teleradiology purpose) and identity-vigilance staff (operations).
SENDING = RequestContext(SENDER, TR, NOW)
READING = RequestContext(RADIOLOGIST, TR, NOW)
RECONCILING = RequestContext(VIGIL, Purpose.OPERATIONS, NOW)
ISSUER = "HOPITAL-NORD"


@dataclass
class ImagingWorld:
    engine: Engine
    vault: Engine
    keyring: KeyRing
    archive: ImagingArchive
    records: RecordService
    audit: AuditLog
    blob_dir: Path

    def patient(self, pid: str, *, consent: bool = True, radiologist: bool = True) -> None:
        """A patient with a Patient resource; the sender in their care team; optionally the
        teleradiology consent and a referral to the radiologist."""
        body: dict[str, Any] = {"resourceType": "Patient", "id": pid, "birthDate": "1970-01-01"}
        own = RequestContext(Actor(pid, Role.PATIENT), Purpose.PATIENT_REQUEST, NOW)
        self.records.create(own, body, resource_id=pid)
        with self.engine.begin() as conn:
            care.start(conn, patient_id=pid, practitioner_id=SENDER.user_id,
                       basis=CareBasis.INVITATION, now=NOW - timedelta(days=1))  # fmt: skip
            if radiologist:
                care.start(conn, patient_id=pid, practitioner_id=RADIOLOGIST.user_id,
                           basis=CareBasis.REFERRAL, now=NOW - timedelta(days=1))  # fmt: skip
        if consent:
            ConsentService(self.engine, self.audit, PolicyGuard()).grant(
                own.at(NOW - timedelta(days=1)), patient_id=pid, purpose=TR,
                text_sha256=default_texts().current(TR, "en").sha256,
                method=ConsentMethod.WEB_CHECKBOX,
            )  # fmt: skip

    def register(self, pid: str, dicom_pid: str, issuer: str = ISSUER) -> None:
        self.archive.register_patient_identifier(SENDING, pid, issuer, dicom_pid)

    def audit_rows(self, actor_id: str | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            query = select(audit_entries).order_by(audit_entries.c.seq)
            if actor_id is not None:
                query = query.where(audit_entries.c.actor_id == actor_id)
            return [dict(r) for r in conn.execute(query).mappings()]

    def blobs(self) -> list[Path]:
        return sorted(p for p in self.blob_dir.rglob("*") if p.is_file())

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())

    def database_bytes(self) -> bytes:
        """Every row of the imaging tables and the audit: what a stolen database shows."""
        out = []
        with self.engine.connect() as conn:
            for name in ("imaging_studies", "imaging_series", "imaging_instances",
                         "imaging_patient_ids", "audit_entries"):  # fmt: skip
                for row in conn.execute(text(f"SELECT * FROM {name}")):
                    for value in row:
                        out.append(value if isinstance(value, bytes) else str(value).encode())
        return b"\n".join(bytes(v) for v in out)


@pytest.fixture(name="iw")
def imaging_world(engine: Engine, vault_engine: Engine, tmp_path: Path) -> ImagingWorld:
    keyring = KeyRing(vault_engine, FakeKMS())
    blob_dir = tmp_path / "blobs"
    blobs = FileSystemBlobStore(blob_dir)
    blind = BlindIndex(os.urandom(32))
    audit = AuditLog(engine)
    records = RecordService(
        engine, RecordStore(keyring), FileStore(keyring, blobs), blind, audit,
        TableGuard([allow()]),
    )  # fmt: skip
    archive = ImagingArchive(engine, keyring, blobs, blind, audit, PolicyGuard(), batch_size=64)
    return ImagingWorld(engine, vault_engine, keyring, archive, records, audit, blob_dir)
