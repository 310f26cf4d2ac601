"""Shared fixtures of the records and rights tests (imported by them; holds no test).

``world`` wires the record and rights services on the ``engine``/``vault_engine`` fixtures (so
on SQLite and PostgreSQL) with a FakeKMS, a blob directory, a table-driven guard that allows
everything until a test changes its rules, and a Platform for the audited shredder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine

from secretum.access.context import RequestContext
from secretum.access.guard import TableGuard, allow
from secretum.access.model import Actor, Purpose, Role
from secretum.audit.log import AuditLog
from secretum.audit.store import audit_entries
from secretum.bootstrap import Platform
from secretum.config import Settings
from secretum.crypto.blind_index import BlindIndex
from secretum.crypto.kms.fake import FakeKMS
from secretum.keys.keyring import KeyRing
from secretum.records.documents import DocumentService
from secretum.records.files import FileStore
from secretum.records.service import RecordService
from secretum.records.store import RecordStore
from secretum.rights import InMemoryRestrictionFlags, RightsService, platform_shredder
from secretum.storage.blobs import FileSystemBlobStore

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
INS = "1 84 12 75 108 123 45"
INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
#: Strings that are health or identifying data in these tests: never in clear in the database,
#: never in an audit entry, never echoed by an error.
SECRETS = (
    "Marguerite",
    "Duras-Test",
    "marguerite@example.org",
    "glycemie-secrete",
    "184127510812345",
)

PATIENT = Actor("pat-1", Role.PATIENT)
DOCTOR = Actor("doc-1", Role.PRACTITIONER)
TREAT = Purpose.TELECONSULTATION
SELF = Purpose.PATIENT_REQUEST


def patient_json(pid: str = "pat-1", *, ins: str = INS, email: str = SECRETS[2]) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": INS_SYSTEM, "value": ins}],
        "name": [{"family": SECRETS[1], "given": [SECRETS[0]]}],
        "telecom": [{"system": "email", "value": email}],
        "birthDate": "1984-12-01",
    }


def observation_json(pid: str = "pat-1", text_: str = SECRETS[3], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text_},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": 1.2, "unit": "g/L"},
        **extra,
    }


@dataclass
class World:
    engine: Engine
    vault: Engine
    keyring: KeyRing
    records: RecordService
    documents: DocumentService
    rights: RightsService
    guard: TableGuard
    flags: InMemoryRestrictionFlags
    blob_dir: Path
    care_team: dict[str, list[str]] = field(default_factory=dict)

    def audit_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_entries).order_by(audit_entries.c.seq)).mappings()
            return [dict(r) for r in rows]

    def blobs(self) -> list[Path]:
        return [p for p in self.blob_dir.rglob("*") if p.is_file()]

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())

    def database_text(self) -> bytes:
        """Every table's rows, as bytes: what a stolen copy of the main database shows."""
        out = []
        with self.engine.connect() as conn:
            for name in (
                "sealed_records",
                "fhir_resources",
                "fhir_identifiers",
                "encrypted_files",
                "audit_entries",
                "notices",
                "scheduled_erasures",
            ):
                for row in conn.execute(text(f"SELECT * FROM {name}")):
                    for value in row:
                        out.append(value if isinstance(value, bytes) else str(value).encode())
        return b"\n".join(bytes(v) for v in out)

    def new_patient(self, pid: str = "pat-1", **kwargs: Any) -> None:
        self.records.create(
            RequestContext(Actor(pid, Role.PATIENT), SELF, NOW),
            patient_json(pid, **kwargs),
            resource_id=pid,
        )


@pytest.fixture(name="world")
def world_fixture(engine: Engine, vault_engine: Engine, tmp_path: Path) -> World:
    kms = FakeKMS()
    keyring = KeyRing(vault_engine, kms)
    store = RecordStore(keyring)
    blob_dir = tmp_path / "blobs"
    files = FileStore(keyring, FileSystemBlobStore(blob_dir))
    blind = BlindIndex(os.urandom(32))
    audit = AuditLog(engine)
    guard = TableGuard([allow()])
    records = RecordService(engine, store, files, blind, audit, guard)
    signing = Ed25519PrivateKey.generate()
    platform = Platform(
        settings=Settings(data_dir=tmp_path / "data"),
        engine=engine,
        vault_engine=vault_engine,
        kms=kms,
        keyring=keyring,
        records=store,
        files=files,
        imaging_blobs=FileSystemBlobStore(tmp_path / "imaging"),
        blind_index=blind,
        audit=audit,
        audit_public_key=signing.public_key(),
        clock=lambda: NOW,
    )
    flags = InMemoryRestrictionFlags()
    care_team: dict[str, list[str]] = {}

    def care_team_of(conn: Connection, patient_id: str, now: datetime) -> list[str]:
        return care_team.get(patient_id, [])

    rights = RightsService(
        records, care_team_of=care_team_of, flags=flags, shred=platform_shredder(platform)
    )
    return World(
        engine,
        vault_engine,
        keyring,
        records,
        DocumentService(records),
        rights,
        guard,
        flags,
        blob_dir,
        care_team,
    )
