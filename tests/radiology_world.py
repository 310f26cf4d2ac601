"""Shared world of the radiology report tests (imported by them; holds no test).

The imaging world (real policy on the archive) plus a :class:`ReportService` whose records go
through the real policy too, and signers' credentials held by software authenticators
(:class:`~identity_authenticator.SoftAuthenticator`) registered in an in-memory key list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import Connection, Engine

from identity_authenticator import ORIGIN, RP_ID, SoftAuthenticator, SoftCredential, cose_key
from imaging_archive_world import RADIOLOGIST, ImagingWorld
from imaging_export_world import ct_study
from secretum.policy.guard import PolicyGuard
from secretum.policy.reads import CareReads
from secretum.radiology.service import ReportService
from secretum.radiology.signing import RelyingParty, SignerKey
from secretum.records.service import RecordService

RP = RelyingParty(RP_ID, (ORIGIN,))


@dataclass
class MemoryKeys:
    """The :class:`~secretum.radiology.signing.SignerKeys` port, in memory."""

    keys: dict[bytes, SignerKey] = field(default_factory=dict)

    def keys_of(self, user_id: str) -> list[SignerKey]:
        return [k for k in self.keys.values() if k.user_id == user_id]

    def key(self, credential_id: bytes) -> SignerKey | None:
        return self.keys.get(credential_id)

    def record_use(self, conn: Connection, key: SignerKey, sign_count: int, now: datetime) -> bool:
        current = self.keys.get(key.credential_id)
        if current is None or current.sign_count != key.sign_count:
            return False
        self.keys[key.credential_id] = replace(current, sign_count=sign_count)
        return True


@dataclass
class RadiologyWorld:
    iw: ImagingWorld
    reports: ReportService
    keys: MemoryKeys
    authenticators: dict[str, SoftAuthenticator]

    @property
    def engine(self) -> Engine:
        return self.iw.engine

    def enrol(self, user_id: str) -> SoftAuthenticator:
        """A security key for ``user_id``, registered as their credential."""
        auth = self.authenticators.setdefault(user_id, SoftAuthenticator())
        cid = os.urandom(32)
        key = ec.generate_private_key(ec.SECP256R1())
        auth.credentials[cid] = SoftCredential(cid, key, RP_ID, user_id.encode())
        self.keys.keys[cid] = SignerKey(cid, user_id, cose_key(key.public_key()), 0, False)
        return auth

    def study(self, n: int = 2) -> str:
        return str(ct_study(self.iw, n)[0].StudyInstanceUID)


@pytest.fixture(name="rw")
def radiology_world(iw: ImagingWorld) -> RadiologyWorld:
    iw.patient("pat-1")
    iw.register("pat-1", "SYN0001")
    records = RecordService(
        iw.engine,
        iw.records.repo.records,
        iw.records.files,
        iw.records.repo.blind_index,
        iw.audit,
        PolicyGuard(),
    )
    keys = MemoryKeys()
    care = CareReads(iw.engine)
    service = ReportService(iw.engine, records, iw.archive, keys, RP, care.referred_patients_of)
    world = RadiologyWorld(iw, service, keys, {})
    world.enrol(RADIOLOGIST.user_id)
    return world
