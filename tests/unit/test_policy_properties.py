"""Properties of the access policy, over every actor, action, resource, purpose and facts.

Each property states a promise of the issue; hypothesis looks for a counter-example. The
``deliberately_broken`` test shows the properties can fail: a rule table with one bad rule is
caught.
"""

from __future__ import annotations

import itertools
import sys
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secretum.access.model import Action, Actor, Facts, Purpose, Resource, Role, Sensitivity
from secretum.policy.decide import decide, is_health_data
from secretum.policy.rules import (
    AGENDA_KINDS,
    DIRECTORY_KINDS,
    IDENTITY_VIGILANCE_SPECIALTY,
    OPERATIONAL_KINDS,
    READ_ACTIONS,
    RULES,
    UNMATCHED_IMAGING_ACTIONS,
    Condition,
    Rule,
)

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
USERS = ("p1", "p2", "d1", "a1", "o1")
KINDS = (
    *sorted(OPERATIONAL_KINDS),
    "Observation",
    "Patient",
    "Consent",
    "DocumentReference",
    "ImagingStudy",
    "X",
)

actors = st.builds(
    Actor,
    user_id=st.sampled_from(USERS),
    role=st.sampled_from(Role),
    strong_auth_at=st.one_of(
        st.none(),
        st.integers(min_value=-60, max_value=900).map(lambda s: NOW - timedelta(seconds=s)),
    ),
    specialty=st.sampled_from([None, "radiology", IDENTITY_VIGILANCE_SPECIALTY]),
)


def unmatched_imaging(action: Action, resource: Resource) -> bool:
    """The imaging exception: depositing or reconciling a study whose patient is unknown."""
    return (
        action in UNMATCHED_IMAGING_ACTIONS
        and resource.kind == "ImagingStudy"
        and resource.patient_id is None
    )


resources = st.builds(
    Resource,
    kind=st.sampled_from(KINDS),
    patient_id=st.one_of(st.none(), st.sampled_from(USERS)),
    resource_id=st.one_of(st.none(), st.just("r1"), st.sampled_from(USERS)),
    sensitivity=st.sampled_from(Sensitivity),
)
facts_strategy = st.builds(
    Facts,
    consents=st.frozensets(st.sampled_from(Purpose)),
    in_care_team=st.booleans(),
    named_by_patient=st.booleans(),
    break_glass_active=st.booleans(),
    restricted_processing=st.booleans(),
)
actions = st.sampled_from(Action)
purposes = st.sampled_from(Purpose)


def own(actor: Actor, resource: Resource) -> bool:
    return actor.role is Role.PATIENT and resource.patient_id == actor.user_id


@settings(max_examples=1000)
@given(actors, actions, resources, purposes)
def test_default_deny_with_empty_facts(
    actor: Actor, action: Action, resource: Resource, purpose: Purpose
) -> None:
    """Knowing nothing, only a patient's own record and the staff directory are open: besides
    them, an administrator or
    DPO may run the platform (no health data), and a practitioner may *declare* an emergency
    (which opens nothing by itself: the grant is a fact of the next request)."""
    decision = decide(actor, action, resource, purpose, NOW, Facts())
    if not decision.allowed:
        return
    if resource.kind in DIRECTORY_KINDS and action in READ_ACTIONS:
        pass  # the staff directory: read by all (it holds no health data)
    elif resource.kind == "Slot" and action in READ_ACTIONS:
        assert actor.role in (Role.PATIENT, Role.PRACTITIONER)  # free slots: hours, no patient
    elif own(actor, resource):
        assert purpose is Purpose.PATIENT_REQUEST
    elif actor.role in (Role.ADMIN, Role.DPO):
        assert not is_health_data(resource) and purpose is Purpose.OPERATIONS
    elif unmatched_imaging(action, resource):
        # deposit (write-only) for teleradiology; reconciliation by identity vigilance only
        assert actor.role is Role.PRACTITIONER
        if action is Action.STORE_IMAGING:
            assert purpose is Purpose.TELERADIOLOGY
        else:
            assert actor.specialty == IDENTITY_VIGILANCE_SPECIALTY
            assert purpose is Purpose.OPERATIONS and actor.strong_auth_at is not None
    elif resource.kind == "Schedule":  # a practitioner's own schedule and agenda
        assert actor.role is Role.PRACTITIONER and resource.resource_id == actor.user_id
    else:
        assert actor.role is Role.PRACTITIONER and action is Action.BREAK_GLASS
        assert purpose is Purpose.EMERGENCY and not decision.break_glass


@settings(max_examples=1000)
@given(st.sampled_from([Role.ADMIN, Role.DPO]), actions, resources, purposes, facts_strategy)
def test_admins_and_dpos_never_touch_health_data(
    role: Role, action: Action, resource: Resource, purpose: Purpose, facts: Facts
) -> None:
    actor = Actor("p1", role, strong_auth_at=NOW)  # even with a patient's id and fresh step-up
    decision = decide(actor, action, resource, purpose, NOW, facts)
    if is_health_data(resource):
        assert not decision.allowed
    if decision.allowed:
        assert not decision.break_glass
        assert purpose is Purpose.OPERATIONS or (
            resource.kind in DIRECTORY_KINDS and action in READ_ACTIONS
        )


@settings(max_examples=1000)
@given(actors, actions, resources, purposes, facts_strategy)
def test_practitioners_need_consent_and_care_team_or_break_glass(
    actor: Actor, action: Action, resource: Resource, purpose: Purpose, facts: Facts
) -> None:
    actor = Actor(actor.user_id, Role.PRACTITIONER, actor.strong_auth_at, actor.specialty)
    decision = decide(actor, action, resource, purpose, NOW, facts)
    if not decision.allowed:
        return
    if unmatched_imaging(action, resource):  # no patient yet: see the test above
        return
    if resource.kind in DIRECTORY_KINDS:  # the staff directory: practitioners only read it
        assert action in READ_ACTIONS and not decision.break_glass
        return
    if resource.kind in AGENDA_KINDS:  # free slots (read), or their own schedule
        assert not decision.break_glass
        assert action in READ_ACTIONS or resource.resource_id == actor.user_id
        return
    if action is Action.BREAK_GLASS:  # the declaration itself: no data, a fresh step-up
        assert purpose is Purpose.EMERGENCY and actor.strong_auth_at is not None
    elif action is Action.MANAGE_CONSENT:  # a paper consent, recorded by the care team
        assert facts.in_care_team and actor.strong_auth_at is not None
    else:
        assert (purpose in facts.consents and facts.in_care_team) or (
            facts.break_glass_active and decision.break_glass
        )
    assert resource.patient_id is not None and not facts.restricted_processing


@settings(max_examples=1000)
@given(actors, actions, resources, purposes, facts_strategy)
def test_break_glass_never_grants_writes(
    actor: Actor, action: Action, resource: Resource, purpose: Purpose, facts: Facts
) -> None:
    decision = decide(actor, action, resource, purpose, NOW, facts)
    if decision.break_glass:
        assert decision.allowed and action in (Action.READ, Action.SEARCH)
    # a practitioner holding a grant, but neither care team nor consent, writes nothing
    doctor = Actor(actor.user_id, Role.PRACTITIONER, actor.strong_auth_at)
    only_glass = Facts(consents=facts.consents, break_glass_active=True)
    if is_health_data(resource) and decide(doctor, action, resource, purpose, NOW, only_glass):
        assert action in (Action.READ, Action.SEARCH, Action.BREAK_GLASS)


@settings(max_examples=1000)
@given(actors, actions, resources, purposes, facts_strategy)
def test_restricted_data_needs_the_patients_naming(
    actor: Actor, action: Action, resource: Resource, purpose: Purpose, facts: Facts
) -> None:
    restricted = Resource(resource.kind, resource.patient_id, None, Sensitivity.RESTRICTED)
    decision = decide(actor, action, restricted, purpose, NOW, facts)
    if decision.allowed and is_health_data(restricted) and actor.role is Role.PRACTITIONER:
        assert (
            facts.named_by_patient
            or action is Action.BREAK_GLASS
            or (action is Action.MANAGE_CONSENT)
        )


@settings(max_examples=1000)
@given(actors, actions, resources, purposes, facts_strategy)
def test_restriction_of_processing_leaves_only_the_patient(
    actor: Actor, action: Action, resource: Resource, purpose: Purpose, facts: Facts
) -> None:
    restricted = Facts(
        facts.consents, facts.in_care_team, facts.named_by_patient, facts.break_glass_active, True
    )
    decision = decide(actor, action, resource, purpose, NOW, restricted)
    if decision.allowed and is_health_data(resource):
        assert own(actor, resource)


@settings(max_examples=1000)
@given(actors, actions, resources, purposes, facts_strategy)
def test_health_data_without_patient_is_always_denied(
    actor: Actor, action: Action, resource: Resource, purpose: Purpose, facts: Facts
) -> None:
    unscoped = Resource(resource.kind, None, resource.resource_id, resource.sensitivity)
    if is_health_data(unscoped):
        assert not decide(actor, action, unscoped, purpose, NOW, facts).allowed


@settings(max_examples=1000)
@given(actors, actions, resources, purposes, facts_strategy)
def test_requires_step_up_means_a_fresh_step_up_is_enough(
    actor: Actor, action: Action, resource: Resource, purpose: Purpose, facts: Facts
) -> None:
    decision = decide(actor, action, resource, purpose, NOW, facts)
    stepped_up = Actor(actor.user_id, actor.role, strong_auth_at=NOW - timedelta(seconds=30))
    again = decide(stepped_up, action, resource, purpose, NOW, facts)
    if decision.requires == ("step-up",):
        assert not decision.allowed and again.allowed
    elif not decision.allowed:
        assert (
            not again.allowed
            or actor.strong_auth_at is None
            or not (timedelta(0) <= NOW - actor.strong_auth_at <= timedelta(minutes=5))
        )
    assert decision == decide(actor, action, resource, purpose, NOW, facts)  # pure


def test_deliberately_broken_rule_table_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule letting practitioners write under break-the-glass breaks a property above."""
    bad = Rule(
        "allow.bad",
        frozenset({Role.PRACTITIONER}),
        frozenset({Action.UPDATE}),
        frozenset({Purpose.EMERGENCY}),
        (Condition.HEALTH_DATA, Condition.BREAK_GLASS),
        break_glass=True,
    )
    monkeypatch.setattr(sys.modules["secretum.policy.decide"], "RULES", (*RULES, bad))
    example = (
        Actor("d1", Role.PRACTITIONER),
        Action.UPDATE,
        Resource("Observation", "p1"),
        Purpose.EMERGENCY,
        Facts(break_glass_active=True),
    )
    decision = decide(*example[:4], NOW, example[4])
    assert decision.allowed and decision.break_glass  # the broken table allows a write...
    property_body = test_break_glass_never_grants_writes.hypothesis.inner_test  # type: ignore[attr-defined]
    with pytest.raises(AssertionError):  # ...and the property says so
        property_body(*example)


def test_default_deny_exhaustively() -> None:
    """The same promise over every combination of a small but complete universe (no luck)."""
    check = test_default_deny_with_empty_facts.hypothesis.inner_test  # type: ignore[attr-defined]
    auth_states = (None, NOW - timedelta(minutes=1), NOW - timedelta(minutes=6))
    allowed = 0
    for role, user, at, action, kind, patient, rid, sensitivity, purpose in itertools.product(
        Role, ("p1", "p2"), auth_states, Action, KINDS, (None, "p1"), (None, "p1"), Sensitivity,
        Purpose,
    ):  # fmt: skip
        actor = Actor(user, role, at)
        resource = Resource(kind, patient, rid, sensitivity)
        check(actor, action, resource, purpose)
        allowed += decide(actor, action, resource, purpose, NOW, Facts()).allowed
    assert allowed > 0  # the universe does reach the allow rules
