"""The vocabulary of access decisions: who (Actor), does what (Action), to what (Resource),
why (Purpose), knowing what (Facts). Plain objects, no I/O: :mod:`secretum.policy.decide`
evaluates them with rules that are data.

Every context speaks this vocabulary: identity builds the :class:`Actor` of a session,
consent and care relationships supply the :class:`Facts`, records describe the
:class:`Resource` they hold, and the audit records the decision (purpose as a v3
PurposeOfUse code, see :data:`AUDIT_PURPOSE`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class Role(StrEnum):
    PATIENT = "patient"
    PRACTITIONER = "practitioner"
    #: runs the platform and manages accounts; never reads health data
    ADMIN = "admin"
    #: data protection officer / auditor: reads the audit, reviews break-the-glass; no health data
    DPO = "dpo"
    #: a registered imaging node (modality, PACS, AI service) authenticated by its client
    #: certificate from the internal CA; acts on imaging studies only, within its scopes
    IMAGING_NODE = "imaging-node"


#: The roles a person's account may have (an imaging node is registered, never invited).
ACCOUNT_ROLES = frozenset({Role.PATIENT, Role.PRACTITIONER, Role.ADMIN, Role.DPO})


class Action(StrEnum):
    READ = "read"
    SEARCH = "search"
    CREATE = "create"
    UPDATE = "update"
    EXPORT = "export"  # the patient's whole record ($everything)
    ERASE = "erase"  # GDPR erasure request
    RESTRICT = "restrict"  # GDPR restriction
    RECTIFY = "rectify"  # GDPR rectification request
    READ_ACCESS_LOG = "read-access-log"  # "who opened my record"
    MANAGE_CONSENT = "manage-consent"
    BREAK_GLASS = "break-glass"
    READ_AUDIT = "read-audit"  # the audit log itself (DPO)
    REVIEW_BREAK_GLASS = "review-break-glass"
    MANAGE_ACCOUNTS = "manage-accounts"  # admin: users, invitations, MFA policy
    MANAGE_KEYS = "manage-keys"
    #: deposit DICOM instances whose patient is not (yet) known here: write-only, reads nothing
    STORE_IMAGING = "store-imaging"
    #: identity vigilance: list imaging studies that matched no patient, link one by hand
    RECONCILE_IMAGING = "reconcile-imaging"
    #: join the video call of an appointment (secretum.consult)
    JOIN_CALL = "join-call"
    #: a study leaves de-identified (PS3.15 Annex E): a zip or a STOW-RS to another server
    EXPORT_DEIDENTIFIED = "export-deidentified"


class Purpose(StrEnum):
    """Purposes a patient consents to, one by one (and two that need no consent)."""

    TELECONSULTATION = "teleconsultation"
    TELERADIOLOGY = "teleradiology"
    REMOTE_MONITORING = "remote-monitoring"
    SHARING = "sharing"  # sharing with a practitioner the patient named
    RESEARCH = "research"  # de-identified research
    #: the patient acting on their own data (no consent needed)
    PATIENT_REQUEST = "patient-request"
    #: running the platform: accounts, audit, keys (never health data)
    OPERATIONS = "operations"
    #: break-the-glass emergency access (no consent needed; declared, limited, reviewed)
    EMERGENCY = "emergency"


#: Purposes that need the patient's active consent.
CONSENTED_PURPOSES = frozenset(
    {
        Purpose.TELECONSULTATION,
        Purpose.TELERADIOLOGY,
        Purpose.REMOTE_MONITORING,
        Purpose.SHARING,
        Purpose.RESEARCH,
    }
)

#: HL7 v3 PurposeOfUse code written in the audit for each purpose.
AUDIT_PURPOSE: dict[Purpose, str] = {
    Purpose.TELECONSULTATION: "TREAT",
    Purpose.TELERADIOLOGY: "TREAT",
    Purpose.REMOTE_MONITORING: "TREAT",
    Purpose.SHARING: "COC",
    Purpose.RESEARCH: "HRESCH",
    Purpose.PATIENT_REQUEST: "PATRQT",
    Purpose.OPERATIONS: "HOPERAT",
    Purpose.EMERGENCY: "ETREAT",
}


class Sensitivity(StrEnum):
    NORMAL = "normal"
    #: e.g. mental health, HIV: only practitioners the patient named may see it
    RESTRICTED = "restricted"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: built from an authenticated session (or a client certificate)."""

    user_id: str
    role: Role
    #: when the actor last proved a second factor or a WebAuthn user verification
    #: (step-up); None if never in this session
    strong_auth_at: datetime | None = None
    specialty: str | None = None
    #: what an imaging node may do (``store``, ``query``, ``retrieve``); empty for people
    scopes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Resource:
    """What is acted upon. ``patient_id`` is None for resources that hold no health data."""

    kind: str  # FHIR type ("Observation", "DocumentReference", ...) or "Account", "Audit", ...
    patient_id: str | None = None
    resource_id: str | None = None
    sensitivity: Sensitivity = Sensitivity.NORMAL


@dataclass(frozen=True, slots=True)
class Facts:
    """What the stores know about the actor and the patient at decision time."""

    #: purposes the patient has an active consent for
    consents: frozenset[Purpose] = frozenset()
    #: the actor is in the patient's care team now (appointment, referral, invitation)
    in_care_team: bool = False
    #: the patient named this practitioner for restricted data
    named_by_patient: bool = False
    #: the actor holds an unexpired break-the-glass grant on this patient
    break_glass_active: bool = False
    #: the patient asked for restriction (GDPR art. 18): only storage, no other processing
    restricted_processing: bool = False
    #: the patient accepted the actor into the call of the appointment the request is about
    call_guest: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    #: a stable code saying why, e.g. "allow.care-team", "deny.no-consent", "deny.default"
    reason: str
    #: the access rides on a break-the-glass grant (the audit marks it)
    break_glass: bool = False
    #: what the caller must still obtain, e.g. "step-up" (a fresh second factor)
    requires: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return self.allowed


#: A step-up (second factor, WebAuthn user verification) counts as fresh for this long.
STEP_UP_MAX_AGE = timedelta(minutes=5)
#: The ``Decision.requires`` value asking the caller for a fresh step-up.
STEP_UP = "step-up"
#: Why a request needing a fresh step-up was refused.
STEP_UP_REASON = "deny.step-up-required"


def step_up_is_fresh(actor: Actor, now: datetime, max_age: timedelta = STEP_UP_MAX_AGE) -> bool:
    """The actor proved a second factor within ``max_age`` before ``now`` (never in the future,
    never a naive time)."""
    at = actor.strong_auth_at
    if at is None or at.utcoffset() is None:
        return False
    return timedelta(0) <= now - at <= max_age
