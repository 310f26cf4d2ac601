"""The access rules, as data: who (role) may do what (action) for which purposes (purpose) under
which conditions. :func:`secretum.policy.decide.decide` evaluates these tables; it holds no rule
of its own.

Two tables:

* :data:`GUARDS`, deny rules checked first: when every condition of a guard holds, the answer is
  "no" whatever the allow rules say (health data without a patient, administrators and DPOs on
  health data, a patient's restriction of processing).
* :data:`RULES`, allow rules: a rule applies to a request when the actor's role, the action and
  the purpose are in its sets; it allows when all its conditions hold. The first rule that
  allows wins; when none applies the answer is ``deny.default``.

Conditions are named (:class:`Condition`) and each has a pure predicate in
:mod:`secretum.policy.decide` and a stable deny reason here (:data:`DENY_REASONS`), so that a
refused request says which condition was missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from secretum.access.model import STEP_UP as STEP_UP  # re-exported: the rules' vocabulary
from secretum.access.model import STEP_UP_MAX_AGE as STEP_UP_MAX_AGE
from secretum.access.model import STEP_UP_REASON, Action, Purpose, Role

#: The staff directory (FHIR Practitioner: name, qualification, RPPS): public to the signed-in.
DIRECTORY_KINDS = frozenset({"Practitioner"})
#: A practitioner's agenda (secretum.agenda): ``Slot`` (their free slots: hours, no patient) and
#: ``Schedule`` (their published availability, and their own day/week of appointments). The
#: resource id of either is the practitioner's user id. Neither names a patient: the agenda's
#: appointments are the practitioner's own, each with a patient whose booking put the
#: practitioner in their care team (see :data:`RULES`, ``allow.own-schedule``).
AGENDA_KINDS = frozenset({"Schedule", "Slot"})
#: Resource kinds that never hold health data (ids and codes, the staff directory, the agenda's
#: hours). Every other kind, known or not, is treated as health data: an unknown kind fails safe.
OPERATIONAL_KINDS = (
    frozenset({"Account", "AuditEvent", "Key", "BreakGlassGrant"}) | DIRECTORY_KINDS | AGENDA_KINDS
)

#: Purposes of care for which a practitioner may act with the patient's consent.
CARE_PURPOSES = frozenset(
    {Purpose.TELECONSULTATION, Purpose.TELERADIOLOGY, Purpose.REMOTE_MONITORING, Purpose.SHARING}
)

#: Actions that read (the only ones a break-the-glass grant allows).
READ_ACTIONS = frozenset({Action.READ, Action.SEARCH})

#: What a practitioner does on a patient's data for care.
CARE_ACTIONS = frozenset({Action.READ, Action.SEARCH, Action.CREATE, Action.UPDATE})

#: The rights a patient exercises on their own record (GDPR art. 15-21 and consent).
PATIENT_RIGHTS = frozenset(
    {
        Action.READ,
        Action.SEARCH,
        Action.EXPORT,
        Action.ERASE,
        Action.RESTRICT,
        Action.RECTIFY,
        Action.READ_ACCESS_LOG,
        Action.MANAGE_CONSENT,
    }
)

#: Resource kinds of the imaging archive (studies, their series and instances).
IMAGING_KINDS = frozenset({"ImagingStudy"})
#: The account specialty of identity-vigilance staff (set by an administrator), who reconcile
#: imaging studies that matched no patient. A capability, not a role: they are practitioners
#: (bound by professional secrecy), and the rule below gives them nothing else.
IDENTITY_VIGILANCE_SPECIALTY = "identity-vigilance"
#: Actions on an imaging study that matched no patient yet (so the resource names none).
UNMATCHED_IMAGING_ACTIONS = frozenset({Action.STORE_IMAGING, Action.RECONCILE_IMAGING})

#: What a registered imaging node may be allowed (``secretum.imaging.nodes``): deposit studies
#: (``store``), search them (``query``), read their instances (``retrieve``).
NODE_SCOPES = frozenset({"store", "query", "retrieve"})

ALL_ROLES = frozenset(Role)
ALL_ACTIONS = frozenset(Action)
ALL_PURPOSES = frozenset(Purpose)


class Condition(StrEnum):
    """A named, pure test of the request (see ``decide._CHECKS`` for each predicate)."""

    #: the actor is a patient and the resource belongs to them
    OWN_RECORD = "own-record"
    #: ... and its negation, for guards
    NOT_OWN_RECORD = "not-own-record"
    #: the resource kind may hold health data (not in :data:`OPERATIONAL_KINDS`)
    HEALTH_DATA = "health-data"
    #: the resource kind holds no health data
    OPERATIONAL_DATA = "operational-data"
    #: the resource names no patient
    NO_PATIENT = "no-patient"
    #: the resource is an entry of the staff directory (:data:`DIRECTORY_KINDS`)
    DIRECTORY = "directory"
    #: the resource is an entry of the audit log (FHIR AuditEvent: ids and codes only)
    AUDIT_ENTRY = "audit-entry"
    #: the patient has an active consent for the request's purpose
    CONSENT = "consent"
    #: the actor is in the patient's care team now
    CARE_TEAM = "care-team"
    #: the resource is not restricted, or the patient named this practitioner for it
    NAMED_IF_RESTRICTED = "named-if-restricted"
    #: the actor holds an unexpired break-the-glass grant on the patient
    BREAK_GLASS = "break-glass"
    #: the actor proved a second factor less than :data:`STEP_UP_MAX_AGE` ago
    STEP_UP = "step-up"
    #: the patient restricted the processing of their data (GDPR art. 18)
    RESTRICTED_PROCESSING = "restricted-processing"
    #: the resource is an imaging study that matched no patient (patient unknown)
    UNMATCHED_IMAGING = "unmatched-imaging"
    #: the actor's account carries :data:`IDENTITY_VIGILANCE_SPECIALTY`
    IDENTITY_VIGILANCE = "identity-vigilance"
    #: the resource is a practitioner's free slots (``Slot``)
    SLOTS = "slots"
    #: the resource is a practitioner's schedule (``Schedule``)
    SCHEDULE = "schedule"
    #: the actor is the practitioner whose agenda this is (resource id = their user id)
    OWN_AGENDA = "own-agenda"
    #: the resource is an appointment (``Appointment``)
    APPOINTMENT = "appointment"
    #: the patient accepted the actor into this appointment's call (secretum.policy.guests)
    CALL_GUEST = "call-guest"
    #: the resource is an imaging study (:data:`IMAGING_KINDS`)
    IMAGING_STUDY = "imaging-study"
    #: ... and its negation, for guards
    NOT_IMAGING_STUDY = "not-imaging-study"
    #: the actor is an imaging node registered with the ``store`` scope
    NODE_STORE = "node-store"
    #: ... with the ``query`` scope
    NODE_QUERY = "node-query"
    #: ... with the ``retrieve`` scope
    NODE_RETRIEVE = "node-retrieve"


#: Why a request was refused when this condition did not hold.
DENY_REASONS: dict[Condition, str] = {
    Condition.OWN_RECORD: "deny.not-own-record",
    Condition.NOT_OWN_RECORD: "deny.own-record",
    Condition.HEALTH_DATA: "deny.not-health-data",
    Condition.OPERATIONAL_DATA: "deny.health-data",
    Condition.NO_PATIENT: "deny.patient-scoped",
    Condition.CONSENT: "deny.no-consent",
    Condition.CARE_TEAM: "deny.not-in-care-team",
    Condition.CALL_GUEST: "deny.not-call-guest",
    Condition.NAMED_IF_RESTRICTED: "deny.not-named-for-restricted",
    Condition.BREAK_GLASS: "deny.no-break-glass",
    Condition.STEP_UP: STEP_UP_REASON,
    Condition.RESTRICTED_PROCESSING: "deny.not-restricted",
    Condition.DIRECTORY: "deny.not-directory",
    Condition.AUDIT_ENTRY: "deny.not-audit-entry",
    Condition.UNMATCHED_IMAGING: "deny.not-unmatched-imaging",
    Condition.IDENTITY_VIGILANCE: "deny.not-identity-vigilance",
    Condition.SLOTS: "deny.not-slots",
    Condition.SCHEDULE: "deny.not-schedule",
    Condition.OWN_AGENDA: "deny.not-own-agenda",
    Condition.APPOINTMENT: "deny.not-appointment",
    Condition.IMAGING_STUDY: "deny.not-imaging-study",
    Condition.NOT_IMAGING_STUDY: "deny.imaging-study",
    Condition.NODE_STORE: "deny.node-scope-store",
    Condition.NODE_QUERY: "deny.node-scope-query",
    Condition.NODE_RETRIEVE: "deny.node-scope-retrieve",
}

DEFAULT_DENY = "deny.default"

#: Conditions that say which resources a rule is about (rather than what the request lacks):
#: a rule whose selector fails does not apply, and gives no reason to a refusal.
SELECTORS = frozenset(
    {
        Condition.DIRECTORY,
        Condition.AUDIT_ENTRY,
        Condition.UNMATCHED_IMAGING,
        Condition.SLOTS,
        Condition.SCHEDULE,
        Condition.APPOINTMENT,
        Condition.IMAGING_STUDY,
    }
)


@dataclass(frozen=True, slots=True)
class Guard:
    """A deny rule: when the role and action match and every condition holds, refuse."""

    reason: str
    roles: frozenset[Role]
    actions: frozenset[Action]
    when: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    """An allow rule: for these roles, actions and purposes, allow when all conditions hold."""

    #: the ``Decision.reason`` when this rule allows, e.g. ``allow.care-team``
    reason: str
    roles: frozenset[Role]
    actions: frozenset[Action]
    purposes: frozenset[Purpose]
    conditions: tuple[Condition, ...]
    #: the access rides on a break-the-glass grant (the caller audits it as ETREAT)
    break_glass: bool = False


GUARDS: tuple[Guard, ...] = (
    # Health data must name its patient: an unscoped query or a lost id never passes. The one
    # exception: an imaging study that matched no patient is deposited and reconciled (linked
    # to its patient by hand) before anyone knows whose it is; those two actions read nothing
    # clinical and have rules of their own below.
    Guard(
        "deny.health-data-without-patient",
        ALL_ROLES,
        ALL_ACTIONS - UNMATCHED_IMAGING_ACTIONS,
        (Condition.HEALTH_DATA, Condition.NO_PATIENT),
    ),
    # Administrators and DPOs run the platform; no path leads them to health data.
    Guard(
        "deny.role-never-health-data",
        frozenset({Role.ADMIN, Role.DPO}),
        ALL_ACTIONS,
        (Condition.HEALTH_DATA,),
    ),
    # GDPR art. 18: once the patient restricts processing, nobody else processes their health
    # data (break-the-glass included); the patient keeps their own rights (and may lift it).
    # The audit and accounts are not health data and stay reachable (legal obligations).
    Guard(
        "deny.restricted-processing",
        ALL_ROLES,
        ALL_ACTIONS,
        (Condition.HEALTH_DATA, Condition.RESTRICTED_PROCESSING, Condition.NOT_OWN_RECORD),
    ),
    # An imaging node (a machine) acts on imaging studies and on nothing else: not the records,
    # not the directory, not the agenda, whatever an allow rule for "every role" says.
    Guard(
        "deny.node-outside-imaging",
        frozenset({Role.IMAGING_NODE}),
        ALL_ACTIONS,
        (Condition.NOT_IMAGING_STUDY,),
    ),
)

_PATIENT = frozenset({Role.PATIENT})
_PRACTITIONER = frozenset({Role.PRACTITIONER})
_PATIENT_REQUEST = frozenset({Purpose.PATIENT_REQUEST})
_OPERATIONS = frozenset({Purpose.OPERATIONS})
_NODE = frozenset({Role.IMAGING_NODE})
_TELERADIOLOGY = frozenset({Purpose.TELERADIOLOGY})

RULES: tuple[Rule, ...] = (
    # -- patients, on their own record only -------------------------------------------------
    Rule(
        "allow.own-record",
        _PATIENT,
        PATIENT_RIGHTS - {Action.EXPORT, Action.ERASE},
        _PATIENT_REQUEST,
        (Condition.OWN_RECORD,),
    ),
    Rule(
        "allow.own-record-step-up",
        _PATIENT,
        frozenset({Action.EXPORT, Action.ERASE}),
        _PATIENT_REQUEST,
        (Condition.OWN_RECORD, Condition.STEP_UP),
    ),
    # A patient books a consultation for themselves: the purpose is teleconsultation, which
    # needs their active consent; moving it is a new booking (same rule). Cancelling needs no
    # consent (a patient who withdrew it must still be able to cancel).
    Rule(
        "allow.book-appointment",
        _PATIENT,
        frozenset({Action.CREATE, Action.UPDATE}),
        frozenset({Purpose.TELECONSULTATION}),
        (Condition.APPOINTMENT, Condition.OWN_RECORD, Condition.CONSENT),
    ),
    # A patient joins the video call of their own appointment, with their active
    # teleconsultation consent (secretum.consult adds the call's own checks: the appointment's
    # participants, booked, its care relationship, its time window).
    Rule(
        "allow.join-own-call",
        _PATIENT,
        frozenset({Action.JOIN_CALL}),
        frozenset({Purpose.TELECONSULTATION}),
        (Condition.APPOINTMENT, Condition.OWN_RECORD, Condition.CONSENT),
    ),
    Rule(
        "allow.cancel-own-appointment",
        _PATIENT,
        frozenset({Action.UPDATE}),
        _PATIENT_REQUEST,
        (Condition.APPOINTMENT, Condition.OWN_RECORD),
    ),
    # -- practitioners ----------------------------------------------------------------------
    Rule(
        "allow.care-team",
        _PRACTITIONER,
        CARE_ACTIONS,
        CARE_PURPOSES,
        (
            Condition.HEALTH_DATA,
            Condition.CARE_TEAM,
            Condition.CONSENT,
            Condition.NAMED_IF_RESTRICTED,
        ),
    ),
    # ... and the practitioner joins it as a member of the patient's care team, with the
    # patient's teleconsultation consent (no break-the-glass path leads into a call).
    Rule(
        "allow.join-call-care-team",
        _PRACTITIONER,
        frozenset({Action.JOIN_CALL}),
        frozenset({Purpose.TELECONSULTATION}),
        (Condition.APPOINTMENT, Condition.HEALTH_DATA, Condition.CARE_TEAM, Condition.CONSENT),
    ),
    # ... and a practitioner (a second one, an interpreter) the patient accepted into this
    # appointment's call joins it, with the same consent: the call only (no care relationship,
    # nothing of the record), while the acceptance holds (secretum.policy.guests).
    Rule(
        "allow.join-call-guest",
        _PRACTITIONER,
        frozenset({Action.JOIN_CALL}),
        frozenset({Purpose.TELECONSULTATION}),
        (Condition.APPOINTMENT, Condition.HEALTH_DATA, Condition.CALL_GUEST, Condition.CONSENT),
    ),
    Rule(
        "allow.break-glass",
        _PRACTITIONER,
        READ_ACTIONS,
        CARE_PURPOSES | {Purpose.EMERGENCY},
        (Condition.HEALTH_DATA, Condition.BREAK_GLASS, Condition.NAMED_IF_RESTRICTED),
        break_glass=True,
    ),
    Rule(
        "allow.declare-break-glass",
        _PRACTITIONER,
        frozenset({Action.BREAK_GLASS}),
        frozenset({Purpose.EMERGENCY}),
        (Condition.HEALTH_DATA, Condition.STEP_UP),
    ),
    # A consent given on paper, recorded by a practitioner of the care team on the patient's
    # behalf (the patient is notified).
    Rule(
        "allow.consent-on-behalf",
        _PRACTITIONER,
        frozenset({Action.MANAGE_CONSENT}),
        _PATIENT_REQUEST,
        (Condition.HEALTH_DATA, Condition.CARE_TEAM, Condition.STEP_UP),
    ),
    # -- imaging studies that matched no patient (issue 10) ----------------------------------
    # A sender (a practitioner, for teleradiology) may deposit a study whose patient is unknown
    # here: it is stored under a holding key and readable by no clinician until linked.
    Rule(
        "allow.imaging-deposit",
        _PRACTITIONER,
        frozenset({Action.STORE_IMAGING}),
        frozenset({Purpose.TELERADIOLOGY}),
        (Condition.UNMATCHED_IMAGING,),
    ),
    # Identity-vigilance staff list such studies and link each to its patient, with a fresh
    # second factor (audited, naming the patient once linked).
    Rule(
        "allow.imaging-reconciliation",
        _PRACTITIONER,
        frozenset({Action.RECONCILE_IMAGING}),
        _OPERATIONS,
        (Condition.UNMATCHED_IMAGING, Condition.IDENTITY_VIGILANCE, Condition.STEP_UP),
    ),
    # A study leaves de-identified (issue 10, section 5) for a second opinion (a care purpose,
    # with its consent) or for research (the patient's research consent), by a practitioner of
    # the care team, who may read it: the same conditions as reading it, for the export's
    # purpose.
    Rule(
        "allow.imaging-deidentified-export",
        _PRACTITIONER,
        frozenset({Action.EXPORT_DEIDENTIFIED}),
        CARE_PURPOSES | {Purpose.RESEARCH},
        (
            Condition.IMAGING_STUDY,
            Condition.HEALTH_DATA,
            Condition.CARE_TEAM,
            Condition.CONSENT,
            Condition.NAMED_IF_RESTRICTED,
        ),
    ),
    # A practitioner publishes their availability and reads their own agenda (their own
    # appointments, with each patient's name: every one of them booked it, for
    # teleconsultation, with their consent, which put the practitioner in their care team).
    Rule(
        "allow.own-schedule",
        _PRACTITIONER,
        frozenset({Action.READ, Action.SEARCH, Action.CREATE, Action.UPDATE}),
        frozenset({Purpose.TELECONSULTATION, Purpose.OPERATIONS}),
        (Condition.SCHEDULE, Condition.OWN_AGENDA),
    ),
    # -- registered imaging nodes (modalities, PACS, AI services; secretum.imaging.nodes) -------
    # A node acts for teleradiology only, each action within a scope given at registration.
    # Storing (C-STORE, STOW-RS) into a known patient's study needs the patient's teleradiology
    # consent (a node is told nothing back: without it, the study waits for reconciliation, as
    # for a practitioner outside the care team); restricted studies stay closed to nodes (no
    # patient names a machine). A study whose patient is unknown is deposited like a
    # practitioner's.
    Rule(
        "allow.node-store",
        _NODE,
        frozenset({Action.CREATE}),
        _TELERADIOLOGY,
        (
            Condition.IMAGING_STUDY,
            Condition.NODE_STORE,
            Condition.CONSENT,
            Condition.NAMED_IF_RESTRICTED,
        ),
    ),
    Rule(
        "allow.node-deposit",
        _NODE,
        frozenset({Action.STORE_IMAGING}),
        _TELERADIOLOGY,
        (Condition.UNMATCHED_IMAGING, Condition.NODE_STORE),
    ),
    # Searching (C-FIND, QIDO-RS) and reading (C-GET, C-MOVE, WADO-RS) a patient's studies need
    # the patient's teleradiology consent AND the node in the patient's care team: a referral
    # of the patient to the node (a care relationship naming the node's id, opened by the care
    # team like a referral to a radiologist, ended or expiring like one). Having sent a study
    # gives a node no right to read it back.
    Rule(
        "allow.node-query",
        _NODE,
        frozenset({Action.SEARCH}),
        _TELERADIOLOGY,
        (
            Condition.IMAGING_STUDY,
            Condition.NODE_QUERY,
            Condition.CARE_TEAM,
            Condition.CONSENT,
            Condition.NAMED_IF_RESTRICTED,
        ),
    ),
    Rule(
        "allow.node-retrieve",
        _NODE,
        frozenset({Action.READ}),
        _TELERADIOLOGY,
        (
            Condition.IMAGING_STUDY,
            Condition.NODE_RETRIEVE,
            Condition.CARE_TEAM,
            Condition.CONSENT,
            Condition.NAMED_IF_RESTRICTED,
        ),
    ),
    # -- running the platform: never health data (see GUARDS) --------------------------------
    Rule(
        "allow.admin",
        frozenset({Role.ADMIN}),
        frozenset({Action.MANAGE_ACCOUNTS, Action.MANAGE_KEYS}),
        _OPERATIONS,
        (Condition.OPERATIONAL_DATA, Condition.STEP_UP),
    ),
    # The staff directory: everyone signed in reads it (who is my doctor?); administrators
    # keep it, with a fresh second factor.
    Rule("allow.directory-read", ALL_ROLES, READ_ACTIONS, ALL_PURPOSES, (Condition.DIRECTORY,)),
    # A practitioner's free slots (hours, no patient): read by those who book and those who
    # care (patients, practitioners), not by the staff who run the platform.
    Rule(
        "allow.slots-read",
        _PATIENT | _PRACTITIONER,
        READ_ACTIONS,
        frozenset({Purpose.TELECONSULTATION, Purpose.PATIENT_REQUEST}),
        (Condition.SLOTS,),
    ),
    Rule(
        "allow.directory-admin",
        frozenset({Role.ADMIN}),
        frozenset({Action.CREATE, Action.UPDATE}),
        _OPERATIONS,
        (Condition.DIRECTORY, Condition.STEP_UP),
    ),
    Rule(
        "allow.dpo",
        frozenset({Role.DPO}),
        frozenset({Action.READ_AUDIT, Action.REVIEW_BREAK_GLASS}),
        _OPERATIONS,
        (Condition.OPERATIONAL_DATA,),
    ),
    # ... and the audit entries themselves, as FHIR AuditEvents (read, search by patient): what
    # was opened under a break-the-glass grant, who opened a record.
    Rule(
        "allow.dpo-audit-entries",
        frozenset({Role.DPO}),
        READ_ACTIONS,
        _OPERATIONS,
        (Condition.AUDIT_ENTRY,),
    ),
)
