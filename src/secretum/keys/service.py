"""Audited key operations: crypto-shredding, KEK rotation and retirement.

Every one leaves an entry in the tamper-evident audit log (ids and codes only), success or
failure. Shredding spans two databases (the vault holds the key, the main database the audit)
so it cannot be one transaction: the key is deleted first, then the audit entry commits. The
vault keeps a tombstone (owner, key id, time) of every shredding, which is the record to
reconcile with the audit should the process die between the two.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from sqlalchemy import literal, or_, select, union_all
from sqlalchemy.engine import Engine

from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType, Outcome
from secretum.keys.keyring import KeyRing
from secretum.keys.rotation import Progress, RotationReport, retire, rotate

SECURITY_CONFIGURATION = "110129"


class KeyPorts(Protocol):
    """What the audited key operations need (the composition root's ``Platform`` has it):
    the main database (audit, the patient check), the audit log, the key ring, the clock."""

    @property
    def engine(self) -> Engine: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def keyring(self) -> KeyRing: ...

    @property
    def clock(self) -> Callable[[], datetime]: ...


def _audit(platform: KeyPorts, **fields: object) -> None:
    with platform.engine.begin() as conn:
        platform.audit.append(conn, AuditEvent(recorded=platform.clock(), **fields))  # type: ignore[arg-type]


class NotAPatient(ValueError):
    """The id given to shred is not a patient's (an account of staff, or unknown)."""


def check_patient(platform: KeyPorts, owner_id: str) -> None:
    """Raise :class:`NotAPatient` unless ``owner_id`` is a patient of this platform.

    Data keys are per owner, and staff accounts have one too (their sealed name and e-mail):
    shredding one by mistake would destroy a practitioner's or an administrator's account.
    A patient is an id with a patient account, or with health data in the records (a Patient
    resource, a resource, record or file about them); an account of another role is refused
    even if the records mention its id.
    """
    from secretum.identity.tables import accounts
    from secretum.records.tables import encrypted_files, fhir_resources, sealed_records

    with platform.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        role = conn.execute(
            select(accounts.c.role).where(accounts.c.user_id == owner_id)
        ).scalar_one_or_none()
        if role is not None and role != "patient":
            raise NotAPatient(f"{owner_id} is the account of a {role}, not a patient: refused")
        if role == "patient":
            return
        f = fhir_resources.c
        evidence = union_all(
            select(literal(1)).where(
                or_(
                    f.patient_id == owner_id,
                    (f.resource_type == "Patient") & (f.resource_id == owner_id),
                )
            ),
            select(literal(1)).where(sealed_records.c.patient_id == owner_id),
            select(literal(1)).where(encrypted_files.c.patient_id == owner_id),
        )
        if conn.execute(evidence.limit(1)).first() is None:
            raise NotAPatient(f"no patient has the id {owner_id}: refused")


def audited_shred(
    platform: KeyPorts,
    patient_id: str,
    *,
    actor_id: str,
    actor_role: str,
    source_address: str | None = None,
) -> None:
    """Destroy the data key of ``patient_id``, audited (success or failure).

    Refuses (:class:`NotAPatient`, audited as a minor failure, nothing shredded) an id that
    is not a patient's: see :func:`check_patient`.
    """
    common = dict(
        event_type=EventType.PATIENT_RECORD,
        action=EventAction.DELETE,
        actor_id=actor_id,
        actor_role=actor_role,
        subtype="delete",
        resource_type="Patient",
        resource_id=patient_id,
        patient_id=patient_id,
        source_address=source_address,
    )
    try:
        check_patient(platform, patient_id)
    except NotAPatient:
        _audit(platform, outcome=Outcome.MINOR_FAILURE, **common)
        raise
    try:
        platform.keyring.shred(patient_id)
    except BaseException:
        _audit(platform, outcome=Outcome.SERIOUS_FAILURE, **common)
        raise
    _audit(platform, outcome=Outcome.SUCCESS, **common)


def audited_rotate(
    platform: KeyPorts, *, batch_size: int = 500, progress: Progress | None = None
) -> RotationReport:
    """Rotate the KEK (or finish an interrupted rotation), audited."""
    report = rotate(platform.keyring, batch_size=batch_size, progress=progress)
    _audit(
        platform,
        event_type=EventType.SECURITY_ALERT,
        action=EventAction.EXECUTE,
        subtype=SECURITY_CONFIGURATION,
        actor_id="cli",
        actor_role="admin",
        resource_type="Device",
        resource_id=f"kek-v{report.to_version}",
    )
    return report


def audited_retire(platform: KeyPorts, below: int) -> None:
    """Destroy KEK versions below ``below``, audited."""
    retire(platform.keyring, below)
    _audit(
        platform,
        event_type=EventType.SECURITY_ALERT,
        action=EventAction.DELETE,
        subtype=SECURITY_CONFIGURATION,
        actor_id="cli",
        actor_role="admin",
        resource_type="Device",
        resource_id=f"kek-below-v{below}",
    )
