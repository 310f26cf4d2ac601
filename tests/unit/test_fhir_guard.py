"""The guard port and its fakes, and the audit entry an attempt becomes (no I/O)."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

import pytest

from secretum.access.context import RequestContext
from secretum.access.door import Attempt, sensitivity_max
from secretum.access.guard import Rule, TableGuard, allow, deny
from secretum.access.model import (
    Action,
    Actor,
    Decision,
    Facts,
    Purpose,
    Resource,
    Role,
    Sensitivity,
)
from secretum.audit.model import EventAction, EventType, Outcome
from secretum.policy.guard import PolicyGuard

NOW = datetime(2026, 3, 1, tzinfo=UTC)
DOCTOR = Actor("doc-1", Role.PRACTITIONER)
PATIENT = Actor("pat-1", Role.PATIENT)
OBS = Resource("Observation", "pat-1", "obs-1")
conn: Any = None  # the fakes never touch the connection


def test_table_guard_first_match_and_default_deny() -> None:
    guard = TableGuard(
        [
            deny("deny.restricted", sensitivity=Sensitivity.RESTRICTED),
            allow("allow.self", role=Role.PATIENT, patient_id="pat-1"),
            allow("allow.read", action=Action.READ, purpose=Purpose.TELECONSULTATION),
        ]
    )
    tc = Purpose.TELECONSULTATION
    assert guard.check(conn, PATIENT, Action.UPDATE, OBS, Purpose.PATIENT_REQUEST, NOW)
    assert guard.check(conn, DOCTOR, Action.READ, OBS, tc, NOW).reason == "allow.read"
    restricted = Resource("Observation", "pat-1", "obs-2", Sensitivity.RESTRICTED)
    assert not guard.check(conn, PATIENT, Action.READ, restricted, tc, NOW)
    refused = guard.check(conn, DOCTOR, Action.UPDATE, OBS, tc, NOW)
    assert not refused and refused.reason == "deny.default"
    assert len(guard.calls) == 4 and guard.calls[-1].action is Action.UPDATE
    assert not TableGuard().check(conn, DOCTOR, Action.READ, OBS, tc, NOW)


def test_policy_guard_loads_facts_then_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def load_facts(
        conn_: object,
        actor: Actor,
        patient_id: str | None,
        now: datetime,
        *,
        appointment_id: str | None = None,
    ) -> Facts:
        seen["facts_for"] = (actor.user_id, patient_id, now)
        seen["appointment"] = appointment_id
        return Facts(in_care_team=patient_id is not None)

    def decide(
        actor: Actor,
        action: Action,
        resource: Resource,
        purpose: Purpose,
        now: datetime,
        facts: Facts,
    ) -> Decision:
        seen["decided"] = (action, resource, purpose, facts)
        return Decision(facts.in_care_team, "allow.care-team")

    guard_module = importlib.import_module("secretum.policy.guard")
    monkeypatch.setattr(guard_module, "load_facts", load_facts)
    monkeypatch.setattr(guard_module, "decide", decide)
    decision = PolicyGuard().check(conn, DOCTOR, Action.READ, OBS, Purpose.TELECONSULTATION, NOW)
    assert decision.allowed and decision.reason == "allow.care-team"
    assert seen["facts_for"] == ("doc-1", "pat-1", NOW)
    assert seen["decided"][3] == Facts(in_care_team=True)
    seen.clear()
    no_patient = Resource("Practitioner", None, "doc-1")
    assert not PolicyGuard().check(conn, DOCTOR, Action.READ, no_patient, Purpose.OPERATIONS, NOW)
    assert seen["facts_for"][1] is None and seen["decided"][3] == Facts()
    # an appointment: its id goes to the facts (is the actor a guest of its call?); nothing else
    assert seen["appointment"] is None
    call = Resource("Appointment", "pat-1", "appt-1")
    PolicyGuard().check(conn, DOCTOR, Action.JOIN_CALL, call, Purpose.TELECONSULTATION, NOW)
    assert seen["appointment"] == "appt-1"


def _attempt(source_address: str | None = None) -> Attempt:
    ctx = RequestContext(DOCTOR, Purpose.TELECONSULTATION, NOW, source_address)
    return Attempt(ctx, EventType.PATIENT_RECORD, "read", EventAction.READ)


def test_attempt_becomes_an_audit_event_of_ids_and_codes() -> None:
    attempt = _attempt(source_address="192.0.2.7")
    attempt.target("Observation", "obs-1", "pat-1")
    event = attempt.event(Outcome.SUCCESS)
    assert (event.event_type, event.subtype, event.action, event.purpose) == (
        "110110",
        "read",
        "R",
        "TREAT",
    )
    assert (event.resource_type, event.resource_id, event.patient_id) == (
        "Observation",
        "obs-1",
        "pat-1",
    )
    attempt.decision = Decision(True, "allow.break-glass", break_glass=True)
    assert attempt.event(Outcome.SUCCESS).purpose == "ETREAT"


def test_attempt_drops_what_is_not_an_id() -> None:
    attempt = _attempt()
    attempt.target("Observation", "Marguerite Duras", "pat 1")
    event = attempt.event(Outcome.MINOR_FAILURE)
    assert event.resource_id is None and event.resource_type is None and event.patient_id is None


def test_sensitivity_max() -> None:
    assert sensitivity_max([]) is Sensitivity.NORMAL
    assert sensitivity_max([Sensitivity.NORMAL, Sensitivity.RESTRICTED]) is Sensitivity.RESTRICTED


def test_rule_matches_everything_when_empty() -> None:
    assert Rule(Decision(True, "x")).matches(DOCTOR, Action.READ, OBS, Purpose.RESEARCH)
