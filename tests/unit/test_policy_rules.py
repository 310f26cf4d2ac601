"""Table-driven tests of each access rule and guard: one row per case, the expected reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from secretum.access.errors import AccessDenied
from secretum.policy import (
    GUARDS,
    RULES,
    Action,
    Actor,
    Decision,
    Facts,
    Purpose,
    Resource,
    Role,
    Sensitivity,
    decide,
)
from secretum.policy.decide import require, step_up_is_fresh
from secretum.policy.rules import DENY_REASONS, Condition

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
FRESH = NOW - timedelta(minutes=4, seconds=59)
STALE = NOW - timedelta(minutes=5, seconds=1)

PATIENT = Actor("p1", Role.PATIENT)
PATIENT_UP = Actor("p1", Role.PATIENT, strong_auth_at=FRESH)
OTHER_PATIENT = Actor("p2", Role.PATIENT, strong_auth_at=FRESH)
DOC = Actor("d1", Role.PRACTITIONER)
DOC_UP = Actor("d1", Role.PRACTITIONER, strong_auth_at=FRESH)
DOC_STALE = Actor("d1", Role.PRACTITIONER, strong_auth_at=STALE)
ADMIN_UP = Actor("a1", Role.ADMIN, strong_auth_at=FRESH)
ADMIN = Actor("a1", Role.ADMIN)
DPO = Actor("o1", Role.DPO, strong_auth_at=FRESH)

OBS = Resource("Observation", patient_id="p1", resource_id="obs-1")
OBS_RESTRICTED = Resource("Observation", "p1", "obs-2", Sensitivity.RESTRICTED)
OBS_NO_PATIENT = Resource("Observation")
PATIENT_RES = Resource("Patient", patient_id="p1", resource_id="p1")
CONSENT = Resource("Consent", patient_id="p1")
ACCESS_LOG = Resource("AuditEvent", patient_id="p1")
ACCOUNT = Resource("Account", resource_id="u9")
KEY = Resource("Key", resource_id="kek")
AUDIT = Resource("AuditEvent")
GRANT = Resource("BreakGlassGrant", patient_id="p1", resource_id="g1")
PRACTITIONER_RES = Resource("Practitioner", resource_id="d1")
APPT = Resource("Appointment", patient_id="p1", resource_id="a1")
SLOTS = Resource("Slot", resource_id="d1")
SCHEDULE = Resource("Schedule", resource_id="d1")
OTHER_SCHEDULE = Resource("Schedule", resource_id="d2")

TC = Purpose.TELECONSULTATION
PR = Purpose.PATIENT_REQUEST
OPS = Purpose.OPERATIONS
EM = Purpose.EMERGENCY

CARE = Facts(consents=frozenset({TC}), in_care_team=True)
CARE_NAMED = Facts(consents=frozenset({TC}), in_care_team=True, named_by_patient=True)
BG = Facts(break_glass_active=True)
RESTRICTED = Facts(consents=frozenset({TC}), in_care_team=True, restricted_processing=True)

# short names keep one case per line
R, S, C, U = Action.READ, Action.SEARCH, Action.CREATE, Action.UPDATE
EXP, ERA, RES, RECT = Action.EXPORT, Action.ERASE, Action.RESTRICT, Action.RECTIFY
LOG, MC, BGA = Action.READ_ACCESS_LOG, Action.MANAGE_CONSENT, Action.BREAK_GLASS
MA, MK, RA, RBG = (
    Action.MANAGE_ACCOUNTS,
    Action.MANAGE_KEYS,
    Action.READ_AUDIT,
    Action.REVIEW_BREAK_GLASS,
)
TR, RS = Purpose.TELERADIOLOGY, Purpose.RESEARCH
NONE = Facts()
STORE, REC = Action.STORE_IMAGING, Action.RECONCILE_IMAGING
JOIN = Action.JOIN_CALL
DEID = Action.EXPORT_DEIDENTIFIED
UNMATCHED = Resource("ImagingStudy", resource_id="s1")
STUDY = Resource("ImagingStudy", patient_id="p1", resource_id="s1")
VIGIL = Actor("v1", Role.PRACTITIONER, specialty="identity-vigilance")
VIGIL_UP = Actor("v1", Role.PRACTITIONER, strong_auth_at=FRESH, specialty="identity-vigilance")
ONLY_CONSENT = Facts(consents=frozenset({TC}))
GUEST = Facts(consents=frozenset({TC}), call_guest=True)
ONLY_CARE = Facts(in_care_team=True)
RESEARCH_CARE = Facts(frozenset({RS}), True)
RP = Facts(restricted_processing=True)
BG_RP = Facts(break_glass_active=True, restricted_processing=True)
NODE = Actor("node-1", Role.IMAGING_NODE, scopes=frozenset({"store", "query", "retrieve"}))
READER_NODE = Actor("node-2", Role.IMAGING_NODE, scopes=frozenset({"query", "retrieve"}))
STORE_NODE = Actor("node-3", Role.IMAGING_NODE, scopes=frozenset({"store"}))
TR_CONSENT = Facts(consents=frozenset({TR}))
TR_REFERRED = Facts(consents=frozenset({TR}), in_care_team=True)
OWN, OWN_UP, DEFAULT = "allow.own-record", "allow.own-record-step-up", "deny.default"
STEP_UP, NOT_NAMED = "deny.step-up-required", "deny.not-named-for-restricted"
NO_PATIENT, NEVER = "deny.health-data-without-patient", "deny.role-never-health-data"
RESTRICTION = "deny.restricted-processing"

CASES = [
    # patients: their own record only, PATIENT_REQUEST
    ("own read", PATIENT, R, OBS, PR, NONE, OWN),
    ("own search", PATIENT, S, OBS, PR, NONE, OWN),
    ("own rectify", PATIENT, RECT, OBS, PR, NONE, OWN),
    ("own restrict", PATIENT, RES, PATIENT_RES, PR, NONE, OWN),
    ("own consent", PATIENT, MC, CONSENT, PR, NONE, OWN),
    ("own access log", PATIENT, LOG, ACCESS_LOG, PR, NONE, OWN),
    ("own restricted data", PATIENT, R, OBS_RESTRICTED, PR, NONE, OWN),
    ("export, stepped up", PATIENT_UP, EXP, PATIENT_RES, PR, NONE, OWN_UP),
    ("export, no step-up", PATIENT, EXP, PATIENT_RES, PR, NONE, STEP_UP),
    ("erase, no step-up", PATIENT, ERA, PATIENT_RES, PR, NONE, STEP_UP),
    ("erase, stepped up", PATIENT_UP, ERA, PATIENT_RES, PR, NONE, OWN_UP),
    ("another's record", OTHER_PATIENT, R, OBS, PR, NONE, "deny.not-own-record"),
    ("another's export", OTHER_PATIENT, EXP, PATIENT_RES, PR, NONE, "deny.not-own-record"),
    ("own, other purpose", PATIENT, R, OBS, TC, CARE, DEFAULT),
    ("patient writes", PATIENT, U, OBS, PR, NONE, DEFAULT),
    ("patient break-glass", PATIENT_UP, BGA, PATIENT_RES, EM, NONE, DEFAULT),
    # practitioners: care team AND consent (restricted: also named), or break-glass (read)
    ("care read", DOC, R, OBS, TC, CARE, "allow.care-team"),
    ("care create", DOC, C, OBS, TC, CARE, "allow.care-team"),
    ("care update", DOC, U, OBS, TC, CARE, "allow.care-team"),
    ("care search", DOC, S, OBS, TC, CARE, "allow.care-team"),
    ("no care team", DOC, R, OBS, TC, ONLY_CONSENT, "deny.not-in-care-team"),
    ("no consent", DOC, R, OBS, TC, ONLY_CARE, "deny.no-consent"),
    ("consent for another purpose", DOC, R, OBS, TR, CARE, "deny.no-consent"),
    ("restricted, not named", DOC, R, OBS_RESTRICTED, TC, CARE, NOT_NAMED),
    ("restricted, named", DOC, R, OBS_RESTRICTED, TC, CARE_NAMED, "allow.care-team"),
    ("research purpose", DOC, R, OBS, RS, RESEARCH_CARE, DEFAULT),
    ("practitioner export", DOC_UP, EXP, PATIENT_RES, TC, CARE, DEFAULT),
    ("practitioner erase", DOC_UP, ERA, PATIENT_RES, TC, CARE, DEFAULT),
    ("practitioner own-request purpose", DOC, R, OBS, PR, CARE, DEFAULT),
    ("break-glass read", DOC, R, OBS, EM, BG, "allow.break-glass"),
    ("break-glass read, care purpose", DOC, R, OBS, TC, BG, "allow.break-glass"),
    ("break-glass search", DOC, S, OBS, EM, BG, "allow.break-glass"),
    ("break-glass update", DOC, U, OBS, TC, BG, "deny.not-in-care-team"),
    ("break-glass create", DOC, C, OBS, EM, BG, DEFAULT),
    ("break-glass restricted", DOC, R, OBS_RESTRICTED, EM, BG, NOT_NAMED),
    ("no grant", DOC, R, OBS, EM, NONE, "deny.no-break-glass"),
    ("declare, stepped up", DOC_UP, BGA, PATIENT_RES, EM, NONE, "allow.declare-break-glass"),
    ("declare, no step-up", DOC, BGA, PATIENT_RES, EM, NONE, STEP_UP),
    ("declare, stale step-up", DOC_STALE, BGA, PATIENT_RES, EM, NONE, STEP_UP),
    ("declare, other purpose", DOC_UP, BGA, PATIENT_RES, TC, NONE, DEFAULT),
    ("paper consent, care team", DOC_UP, MC, CONSENT, PR, ONLY_CARE, "allow.consent-on-behalf"),
    ("paper consent, no step-up", DOC, MC, CONSENT, PR, ONLY_CARE, STEP_UP),
    ("paper consent, no care team", DOC_UP, MC, CONSENT, PR, NONE, "deny.not-in-care-team"),
    ("practitioner access log", DOC_UP, LOG, ACCESS_LOG, PR, CARE, DEFAULT),
    ("practitioner audit", DOC_UP, RA, AUDIT, OPS, NONE, DEFAULT),
    # health data must name its patient
    ("no patient, care facts", DOC, R, OBS_NO_PATIENT, TC, CARE_NAMED, NO_PATIENT),
    ("no patient, break-glass", DOC, R, OBS_NO_PATIENT, EM, BG, NO_PATIENT),
    ("unknown kind, no patient", DOC, S, Resource("Whatever"), TC, CARE, NO_PATIENT),
    # restriction of processing (art. 18)
    ("restricted: practitioner", DOC, R, OBS, TC, RESTRICTED, RESTRICTION),
    ("restricted: break-glass", DOC, R, OBS, EM, BG_RP, RESTRICTION),
    ("restricted: own read", PATIENT, R, OBS, PR, RP, OWN),
    ("restricted: own export", PATIENT_UP, EXP, PATIENT_RES, PR, RP, OWN_UP),
    ("restricted: lift it", PATIENT, RES, PATIENT_RES, PR, RP, OWN),
    ("restricted: DPO audit", DPO, RA, ACCESS_LOG, OPS, RP, "allow.dpo"),
    # admins: accounts and keys with step-up, never health data
    ("admin accounts", ADMIN_UP, MA, ACCOUNT, OPS, NONE, "allow.admin"),
    ("admin keys", ADMIN_UP, MK, KEY, OPS, NONE, "allow.admin"),
    ("admin, no step-up", ADMIN, MK, KEY, OPS, NONE, STEP_UP),
    ("admin reads health", ADMIN_UP, R, OBS, TC, CARE_NAMED, NEVER),
    ("admin, accounts on health", ADMIN_UP, MA, OBS, OPS, NONE, NEVER),
    ("admin break-glass", ADMIN_UP, BGA, PATIENT_RES, EM, NONE, NEVER),
    ("admin reads audit", ADMIN_UP, RA, AUDIT, OPS, NONE, DEFAULT),
    ("admin, wrong purpose", ADMIN_UP, MA, ACCOUNT, TC, NONE, DEFAULT),
    # DPO: audit and break-glass reviews, never health data
    ("dpo audit", DPO, RA, AUDIT, OPS, NONE, "allow.dpo"),
    ("dpo review", DPO, RBG, GRANT, OPS, NONE, "allow.dpo"),
    ("dpo reads health", DPO, R, OBS, EM, BG, NEVER),
    ("dpo exports", DPO, EXP, PATIENT_RES, PR, NONE, NEVER),
    ("dpo manages keys", DPO, MK, KEY, OPS, NONE, DEFAULT),
    ("dpo audit on health kind", DPO, RA, OBS, OPS, NONE, NEVER),
    ("dpo reads audit entries", DPO, S, ACCESS_LOG, OPS, NONE, "allow.dpo-audit-entries"),
    ("dpo reads one audit entry", DPO, R, AUDIT, OPS, NONE, "allow.dpo-audit-entries"),
    ("dpo reads an account", DPO, R, ACCOUNT, OPS, NONE, DEFAULT),
    ("dpo writes audit entries", DPO, C, AUDIT, OPS, NONE, DEFAULT),
    ("doctor reads audit entries", DOC, S, ACCESS_LOG, TC, CARE, "deny.not-health-data"),
    # the staff directory (FHIR Practitioner): read by all, kept by administrators
    ("patient reads the directory", PATIENT, R, PRACTITIONER_RES, PR, NONE, "allow.directory-read"),
    ("doctor searches the directory", DOC, S, PRACTITIONER_RES, TC, NONE, "allow.directory-read"),
    ("dpo reads the directory", DPO, R, PRACTITIONER_RES, OPS, NONE, "allow.directory-read"),
    (
        "admin adds to the directory",
        ADMIN_UP,
        C,
        PRACTITIONER_RES,
        OPS,
        NONE,
        "allow.directory-admin",
    ),
    ("admin, stale, edits directory", ADMIN, U, PRACTITIONER_RES, OPS, NONE, STEP_UP),
    ("doctor edits the directory", DOC_UP, U, PRACTITIONER_RES, TC, NONE, "deny.not-health-data"),
    ("patient adds to the directory", PATIENT_UP, C, PRACTITIONER_RES, PR, NONE, DEFAULT),
    # imaging studies that matched no patient (issue 10): deposit, reconciliation
    ("deposit unmatched", DOC, STORE, UNMATCHED, TR, NONE, "allow.imaging-deposit"),
    ("deposit: teleradiology only", DOC, STORE, UNMATCHED, TC, NONE, DEFAULT),
    ("deposit names no patient", DOC, STORE, STUDY, TR, NONE, DEFAULT),
    ("no deposit of other kinds", DOC, STORE, OBS_NO_PATIENT, TR, NONE, DEFAULT),
    ("no read of unmatched", DOC, R, UNMATCHED, TR, CARE, NO_PATIENT),
    ("no care read of unmatched", VIGIL_UP, R, UNMATCHED, TR, CARE, NO_PATIENT),
    ("reconcile", VIGIL_UP, REC, UNMATCHED, OPS, NONE, "allow.imaging-reconciliation"),
    ("reconcile: step-up", VIGIL, REC, UNMATCHED, OPS, NONE, STEP_UP),
    ("reconcile: vigilance only", DOC_UP, REC, UNMATCHED, OPS, NONE, "deny.not-identity-vigilance"),
    ("reconcile: admin never", ADMIN_UP, REC, UNMATCHED, OPS, NONE, NEVER),
    ("reconcile: unmatched only", VIGIL_UP, REC, STUDY, OPS, CARE, DEFAULT),
    # de-identified export of a study (issue 10, section 5): research consent or care purpose
    (
        "export for research",
        DOC,
        DEID,
        STUDY,
        RS,
        RESEARCH_CARE,
        "allow.imaging-deidentified-export",
    ),
    ("export for care", DOC, DEID, STUDY, TC, CARE, "allow.imaging-deidentified-export"),
    ("export, no research consent", DOC, DEID, STUDY, RS, CARE, "deny.no-consent"),
    ("export, not in care team", DOC, DEID, STUDY, TC, ONLY_CONSENT, "deny.not-in-care-team"),
    ("export, other kinds", DOC, DEID, OBS, TC, CARE, DEFAULT),
    ("export, unmatched study", DOC, DEID, UNMATCHED, TC, CARE, NO_PATIENT),
    ("export by a patient", PATIENT, DEID, STUDY, PR, NONE, DEFAULT),
    ("export by the dpo", DPO, DEID, STUDY, OPS, NONE, NEVER),
    # -- the agenda (secretum.agenda) --
    ("patient books, consent", PATIENT, C, APPT, TC, ONLY_CONSENT, "allow.book-appointment"),
    ("patient books, no consent", PATIENT, C, APPT, TC, NONE, "deny.no-consent"),
    ("patient moves, consent", PATIENT, U, APPT, TC, ONLY_CONSENT, "allow.book-appointment"),
    ("patient books for another", OTHER_PATIENT, C, APPT, TC, ONLY_CONSENT, "deny.not-own-record"),
    ("patient books an obs", PATIENT, C, OBS, TC, ONLY_CONSENT, DEFAULT),
    ("patient cancels own", PATIENT, U, APPT, PR, NONE, "allow.cancel-own-appointment"),
    ("patient cancels another's", OTHER_PATIENT, U, APPT, PR, NONE, "deny.not-own-record"),
    ("patient lists own appts", PATIENT, S, APPT, PR, NONE, OWN),
    ("doctor books for a patient", DOC, C, APPT, TC, NONE, "deny.not-in-care-team"),
    ("patient reads slots", PATIENT, S, SLOTS, TC, NONE, "allow.slots-read"),
    ("doctor reads slots", DOC, R, SLOTS, TC, NONE, "allow.slots-read"),
    ("admin reads slots", ADMIN_UP, R, SLOTS, OPS, NONE, DEFAULT),
    ("doctor publishes own", DOC, U, SCHEDULE, OPS, NONE, "allow.own-schedule"),
    ("doctor reads own agenda", DOC, S, SCHEDULE, TC, NONE, "allow.own-schedule"),
    ("doctor reads another agenda", DOC, S, OTHER_SCHEDULE, TC, NONE, "deny.not-health-data"),
    ("doctor publishes another", DOC, U, OTHER_SCHEDULE, OPS, NONE, "deny.not-own-agenda"),
    ("patient reads an agenda", PATIENT, S, SCHEDULE, PR, NONE, "deny.not-own-record"),
    ("admin reads an agenda", ADMIN_UP, S, SCHEDULE, OPS, NONE, DEFAULT),
    # -- the call of an appointment (secretum.consult) --
    ("patient joins own call", PATIENT, JOIN, APPT, TC, ONLY_CONSENT, "allow.join-own-call"),
    ("patient joins, no consent", PATIENT, JOIN, APPT, TC, NONE, "deny.no-consent"),
    (
        "patient joins another's call",
        OTHER_PATIENT,
        JOIN,
        APPT,
        TC,
        ONLY_CONSENT,
        "deny.not-own-record",
    ),
    ("patient joins for another purpose", PATIENT, JOIN, APPT, PR, ONLY_CONSENT, DEFAULT),
    ("doctor joins, care team", DOC, JOIN, APPT, TC, CARE, "allow.join-call-care-team"),
    ("doctor joins, no care team", DOC, JOIN, APPT, TC, ONLY_CONSENT, "deny.not-in-care-team"),
    ("doctor joins, no consent", DOC, JOIN, APPT, TC, Facts(in_care_team=True), "deny.no-consent"),
    ("doctor joins on break-glass", DOC, JOIN, APPT, EM, BG, DEFAULT),
    ("accepted guest joins", DOC, JOIN, APPT, TC, GUEST, "allow.join-call-guest"),
    (
        "guest joins, no consent",
        DOC,
        JOIN,
        APPT,
        TC,
        Facts(call_guest=True),
        "deny.not-in-care-team",
    ),
    ("guest reads the record", DOC, R, OBS, TC, GUEST, "deny.not-in-care-team"),
    ("guest writes the record", DOC, C, OBS, TC, GUEST, "deny.not-in-care-team"),
    ("guest joins an obs", DOC, JOIN, OBS, TC, GUEST, DEFAULT),
    (
        "patient as guest",
        PATIENT,
        JOIN,
        Resource("Appointment", "p2", "a2"),
        TC,
        GUEST,
        "deny.not-own-record",
    ),
    ("admin as guest", ADMIN_UP, JOIN, APPT, TC, GUEST, NEVER),
    ("doctor joins an obs", DOC, JOIN, OBS, TC, CARE, DEFAULT),
    ("admin joins a call", ADMIN_UP, JOIN, APPT, TC, CARE, NEVER),
    # -- imaging nodes (secretum.imaging.nodes): scopes, consent, a referral to the node --
    ("node stores, consent", NODE, C, STUDY, TR, TR_CONSENT, "allow.node-store"),
    ("node stores, no consent", NODE, C, STUDY, TR, NONE, "deny.no-consent"),
    ("reader node stores", READER_NODE, C, STUDY, TR, TR_CONSENT, "deny.node-scope-store"),
    ("node deposits unmatched", NODE, STORE, UNMATCHED, TR, NONE, "allow.node-deposit"),
    ("reader node deposits", READER_NODE, STORE, UNMATCHED, TR, NONE, "deny.node-scope-store"),
    ("node queries, referred", NODE, S, STUDY, TR, TR_REFERRED, "allow.node-query"),
    ("node queries, not referred", NODE, S, STUDY, TR, TR_CONSENT, "deny.not-in-care-team"),
    ("store node queries", STORE_NODE, S, STUDY, TR, TR_REFERRED, "deny.node-scope-query"),
    ("node retrieves, referred", NODE, R, STUDY, TR, TR_REFERRED, "allow.node-retrieve"),
    ("store node retrieves", STORE_NODE, R, STUDY, TR, TR_REFERRED, "deny.node-scope-retrieve"),
    ("node reads a record", NODE, R, OBS, TR, TR_REFERRED, "deny.node-outside-imaging"),
    ("node reads the directory", NODE, R, PRACTITIONER_RES, TR, NONE, "deny.node-outside-imaging"),
    ("node, other purpose", NODE, R, STUDY, TC, CARE, DEFAULT),
]


@pytest.mark.parametrize(
    ("actor", "action", "resource", "purpose", "facts", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_rule_table(
    actor: Actor,
    action: Action,
    resource: Resource,
    purpose: Purpose,
    facts: Facts,
    reason: str,
) -> None:
    decision = decide(actor, action, resource, purpose, NOW, facts)
    assert decision.reason == reason
    assert decision.allowed is reason.startswith("allow.")
    assert bool(decision) is decision.allowed
    assert decision.break_glass is (reason == "allow.break-glass")
    assert decision.requires == (("step-up",) if reason == "deny.step-up-required" else ())


def test_every_rule_and_guard_is_exercised() -> None:
    reasons = {case[-1] for case in CASES}
    assert {rule.reason for rule in RULES} <= reasons
    assert {guard.reason for guard in GUARDS} <= reasons
    assert "deny.default" in reasons


def test_every_condition_has_a_deny_reason_and_reasons_are_unique() -> None:
    assert set(DENY_REASONS) == set(Condition)
    assert len(set(DENY_REASONS.values())) == len(DENY_REASONS)
    assert len({rule.reason for rule in RULES}) == len(RULES)
    assert all(rule.conditions for rule in RULES)  # no unconditional allow


def test_step_up_freshness_bounds() -> None:
    assert step_up_is_fresh(Actor("x", Role.PATIENT, strong_auth_at=NOW), NOW)
    assert step_up_is_fresh(
        Actor("x", Role.PATIENT, strong_auth_at=NOW - timedelta(minutes=5)), NOW
    )
    assert not step_up_is_fresh(Actor("x", Role.PATIENT, strong_auth_at=STALE), NOW)
    future = Actor("x", Role.PATIENT, strong_auth_at=NOW + timedelta(seconds=1))
    assert not step_up_is_fresh(future, NOW)
    naive = Actor("x", Role.PATIENT, strong_auth_at=NOW.replace(tzinfo=None))
    assert not step_up_is_fresh(naive, NOW)
    assert not step_up_is_fresh(Actor("x", Role.PATIENT), NOW)


def test_step_up_is_fresh_in_any_time_zone() -> None:
    paris = NOW.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert decide(PATIENT_UP, Action.EXPORT, PATIENT_RES, PR, paris, Facts()).allowed


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(PATIENT, Action.READ, OBS, PR, NOW.replace(tzinfo=None), Facts())


def test_require_raises_with_the_decision() -> None:
    assert require(PATIENT, Action.READ, OBS, PR, NOW, Facts()) == Decision(
        True, "allow.own-record"
    )
    with pytest.raises(AccessDenied) as caught:
        require(DOC, Action.BREAK_GLASS, PATIENT_RES, EM, NOW, Facts())
    assert caught.value.decision.requires == ("step-up",)
    assert caught.value.reason == "deny.step-up-required"
    assert str(caught.value) == "access denied"  # the reason is for the audit, not a client
