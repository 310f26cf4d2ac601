"""Tamper-evident audit log: an RFC 9162 Merkle tree in the main database, signed checkpoints
copied to a witness file, verification that names the first tampered entry, FHIR export.

Typical use, in the transaction of the action being audited::

    audit.append(conn, AuditEvent(recorded=now, event_type=EventType.PATIENT_RECORD,
                                  action=EventAction.READ, actor_id=user.id, actor_role="doctor",
                                  resource_type="Observation", resource_id=obs.id,
                                  patient_id=patient.id, purpose="TREAT",
                                  source_address=client_ip))
"""

from secretum.audit.checkpoint import Checkpoint, WitnessFile
from secretum.audit.log import AuditLog, ConsistencyProof, InclusionProof
from secretum.audit.model import AuditEvent, EventAction, EventType, Outcome
from secretum.audit.verify import CheckpointPolicy, Finding, Kind, VerifyReport, verify_log

__all__ = [
    "AuditEvent",
    "AuditLog",
    "Checkpoint",
    "CheckpointPolicy",
    "ConsistencyProof",
    "EventAction",
    "EventType",
    "Finding",
    "InclusionProof",
    "Kind",
    "Outcome",
    "VerifyReport",
    "WitnessFile",
    "verify_log",
]
