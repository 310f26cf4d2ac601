"""Audited key operations: crypto-shredding, KEK rotation and retirement.

Every one leaves an entry in the tamper-evident audit log (ids and codes only), success or
failure. Shredding spans two databases (the vault holds the key, the main database the audit)
so it cannot be one transaction: the key is deleted first, then the audit entry commits. The
vault keeps a tombstone (owner, key id, time) of every shredding, which is the record to
reconcile with the audit should the process die between the two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secretum.audit.model import AuditEvent, EventAction, EventType, Outcome
from secretum.keys.rotation import Progress, RotationReport, retire, rotate

if TYPE_CHECKING:
    from secretum.bootstrap import Platform

SECURITY_CONFIGURATION = "110129"


def _audit(platform: Platform, **fields: object) -> None:
    with platform.engine.begin() as conn:
        platform.audit.append(conn, AuditEvent(recorded=platform.clock(), **fields))  # type: ignore[arg-type]


def audited_shred(
    platform: Platform,
    patient_id: str,
    *,
    actor_id: str,
    actor_role: str,
    source_address: str | None = None,
) -> None:
    """Destroy the data key of ``patient_id``, audited (success or failure)."""
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
        platform.keyring.shred(patient_id)
    except BaseException:
        _audit(platform, outcome=Outcome.SERIOUS_FAILURE, **common)
        raise
    _audit(platform, outcome=Outcome.SUCCESS, **common)


def audited_rotate(
    platform: Platform, *, batch_size: int = 500, progress: Progress | None = None
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


def audited_retire(platform: Platform, below: int) -> None:
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
