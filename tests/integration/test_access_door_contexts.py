"""One door for every context (issue 9, section 1): each use case is decided once and audited
once, whether the guard allows it or refuses it.

The same use case of each context runs twice through the door, with the table-driven guard
saying yes, then no: a refused attempt must write exactly one audit entry, with a failure
outcome (4) and nothing else; an allowed one exactly one entry with success (0). On SQLite and
PostgreSQL (the ``engine`` fixture behind ``world``).

Before the door was shared (consent, the patient's choices, break-the-glass, referrals each
wrote their own ``require(...)`` + audit pair, and the DPO's reads in ``web/care_reads.py``
audited only what was allowed), a refused attempt of those contexts wrote no audit entry at
all: the "refused" rows below failed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_records_fixtures import (  # noqa: F401 (world_fixture is a fixture)
    DOCTOR,
    NOW,
    PATIENT,
    SELF,
    TREAT,
    World,
    observation_json,
    world_fixture,
)

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.guard import allow, deny
from secretum.access.model import Actor, Purpose, Role
from secretum.consent.service import ConsentService
from secretum.consent.store import ConsentMethod
from secretum.policy.breakglass import BreakGlassService
from secretum.policy.choices import PatientChoices
from secretum.policy.referrals import CareTeamService
from secretum.rights.oversight import OversightService

STEPPED_UP = Actor("doc-1", Role.PRACTITIONER, strong_auth_at=NOW)
AS_PATIENT = RequestContext(PATIENT, SELF, NOW, "192.0.2.9")
AS_DOCTOR = RequestContext(DOCTOR, TREAT, NOW, "192.0.2.9")
AS_DPO = RequestContext(Actor("dpo-1", Role.DPO), Purpose.OPERATIONS, NOW)
KEY = Ed25519PrivateKey.generate()


def _services(world: World) -> dict[str, Any]:
    audit = world.records.door.audit
    return {
        "consent": ConsentService(world.engine, audit, world.guard),
        "choices": PatientChoices(world.engine, audit, world.guard),
        "care_team": CareTeamService(world.engine, audit, world.guard),
        "break_glass": BreakGlassService(world.engine, world.keyring, audit, world.guard),
        "oversight": OversightService(world.engine, audit, world.guard, KEY.public_key()),
    }


def _read_record(world: World, svc: dict[str, Any]) -> Callable[[], object]:
    world.new_patient()
    obs = world.records.create(AS_DOCTOR, observation_json())
    return lambda: world.records.read(AS_DOCTOR, "Observation", obs.resource_id)


def _search_record(world: World, svc: dict[str, Any]) -> Callable[[], object]:
    world.new_patient()
    return lambda: world.records.search(AS_DOCTOR, "pat-1", "Observation")


def _grant_consent(world: World, svc: dict[str, Any]) -> Callable[[], object]:
    consent: ConsentService = svc["consent"]
    text = consent.texts.current(TREAT, "fr").sha256
    return lambda: consent.grant(
        AS_PATIENT,
        patient_id="pat-1",
        purpose=TREAT,
        text_sha256=text,
        method=ConsentMethod.WEB_CHECKBOX,
    )


def _consent_history(world: World, svc: dict[str, Any]) -> Callable[[], object]:
    return lambda: svc["consent"].history(AS_PATIENT, "pat-1")


def _invite(world: World, svc: dict[str, Any]) -> Callable[[], object]:
    return lambda: svc["choices"].invite(AS_PATIENT, patient_id="pat-1", practitioner_id="doc-1")


def _restrict(world: World, svc: dict[str, Any]) -> Callable[[], object]:
    return lambda: svc["choices"].set_restriction(AS_PATIENT, patient_id="pat-1", on=True)


def _break_glass(world: World, svc: dict[str, Any]) -> Callable[[], object]:
    ctx = RequestContext(STEPPED_UP, Purpose.EMERGENCY, NOW)
    return lambda: svc["break_glass"].declare(ctx, "pat-1", "unconscious, allergies unknown")


def _refer(world: World, svc: dict[str, Any]) -> Callable[[], object]:
    return lambda: svc["care_team"].refer(
        AS_DOCTOR, patient_id="pat-1", practitioner_id="doc-2", until=NOW + timedelta(days=1)
    )


def _access_log(world: World, svc: dict[str, Any]) -> Callable[[], object]:
    return lambda: world.rights.access_history(AS_PATIENT, "pat-1")


def _rights_restriction(world: World, svc: dict[str, Any]) -> Callable[[], object]:
    return lambda: world.rights.set_restriction(AS_PATIENT, "pat-1", True)


def _review_queue(world: World, svc: dict[str, Any]) -> Callable[[], object]:
    return lambda: svc["oversight"].review_queue(AS_DPO)


def _audit_status(world: World, svc: dict[str, Any]) -> Callable[[], object]:
    return lambda: svc["oversight"].audit_status(AS_DPO)


USE_CASES = {
    "oversight.review_queue": _review_queue,
    "oversight.audit_status": _audit_status,
    "records.read": _read_record,
    "records.search": _search_record,
    "consent.grant": _grant_consent,
    "consent.history": _consent_history,
    "choices.invite": _invite,
    "choices.set_restriction": _restrict,
    "break_glass.declare": _break_glass,
    "referrals.refer": _refer,
    "rights.access_history": _access_log,
    "rights.set_restriction": _rights_restriction,
}


@pytest.mark.parametrize("allowed", [True, False], ids=["allowed", "refused"])
@pytest.mark.parametrize("use_case", sorted(USE_CASES))
def test_each_attempt_is_decided_once_and_audited_once(
    world: World, use_case: str, allowed: bool
) -> None:
    svc = _services(world)
    run = USE_CASES[use_case](world, svc)  # its setup, with the guard still saying yes
    before = world.audit_rows()
    world.guard.calls.clear()
    world.guard.rules = [allow()] if allowed else [deny()]
    if allowed:
        run()
    else:
        with pytest.raises(AccessDenied) as refused:
            run()
        assert refused.value.reason == "deny.test"
        assert "deny.test" not in str(refused.value)  # the reason is for the audit, not a client
    new = world.audit_rows()[len(before) :]
    assert len(new) == 1, [(e["event_type"], e["subtype"], e["outcome"]) for e in new]
    assert new[0]["outcome"] == (0 if allowed else 4)
    asked_once = [c for c in world.guard.calls if c.resource.sensitivity.value == "normal"]
    assert len(asked_once) == 1  # decided once (a scoping question may follow, never a second)
