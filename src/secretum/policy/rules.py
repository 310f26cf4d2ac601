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
from datetime import timedelta
from enum import StrEnum

from secretum.access.model import Action, Purpose, Role

#: A step-up (second factor, WebAuthn user verification) counts as fresh for this long.
STEP_UP_MAX_AGE = timedelta(minutes=5)

#: The ``Decision.requires`` value asking the caller for a fresh step-up.
STEP_UP = "step-up"

#: The staff directory (FHIR Practitioner: name, qualification, RPPS): public to the signed-in.
DIRECTORY_KINDS = frozenset({"Practitioner"})
#: Resource kinds that never hold health data (ids and codes, the staff directory). Every other
#: kind, known or not, is treated as health data: an unknown kind fails safe.
OPERATIONAL_KINDS = frozenset({"Account", "AuditEvent", "Key", "BreakGlassGrant"}) | DIRECTORY_KINDS

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


#: Why a request was refused when this condition did not hold.
DENY_REASONS: dict[Condition, str] = {
    Condition.OWN_RECORD: "deny.not-own-record",
    Condition.NOT_OWN_RECORD: "deny.own-record",
    Condition.HEALTH_DATA: "deny.not-health-data",
    Condition.OPERATIONAL_DATA: "deny.health-data",
    Condition.NO_PATIENT: "deny.patient-scoped",
    Condition.CONSENT: "deny.no-consent",
    Condition.CARE_TEAM: "deny.not-in-care-team",
    Condition.NAMED_IF_RESTRICTED: "deny.not-named-for-restricted",
    Condition.BREAK_GLASS: "deny.no-break-glass",
    Condition.STEP_UP: "deny.step-up-required",
    Condition.RESTRICTED_PROCESSING: "deny.not-restricted",
    Condition.DIRECTORY: "deny.not-directory",
    Condition.AUDIT_ENTRY: "deny.not-audit-entry",
}

DEFAULT_DENY = "deny.default"

#: Conditions that say which resources a rule is about (rather than what the request lacks):
#: a rule whose selector fails does not apply, and gives no reason to a refusal.
SELECTORS = frozenset({Condition.DIRECTORY, Condition.AUDIT_ENTRY})


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
    # Health data must name its patient: an unscoped query or a lost id never passes.
    Guard(
        "deny.health-data-without-patient",
        ALL_ROLES,
        ALL_ACTIONS,
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
)

_PATIENT = frozenset({Role.PATIENT})
_PRACTITIONER = frozenset({Role.PRACTITIONER})
_PATIENT_REQUEST = frozenset({Purpose.PATIENT_REQUEST})
_OPERATIONS = frozenset({Purpose.OPERATIONS})

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
