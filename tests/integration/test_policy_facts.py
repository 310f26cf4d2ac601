"""``load_facts`` is one query (the stores' conditions joined by UNION ALL): it must say exactly
what the stores' own primitives say, for any history and any instant, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Connection, Engine

from secretum.access.model import Actor, Facts, Purpose, Role
from secretum.consent import store as consents
from secretum.consent.store import ConsentMethod, Evidence
from secretum.policy import care, grants
from secretum.policy.care import CareBasis
from secretum.policy.facts import load_facts
from secretum.policy.restriction import is_restricted, set_restriction

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PATIENTS = ("p1", "p2")
DOCTORS = ("d1", "d2")
PURPOSES = (Purpose.TELECONSULTATION, Purpose.RESEARCH, Purpose.SHARING)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _history(conn: Connection, rng: random.Random) -> None:
    """Consents granted and withdrawn, care relationships started and ended, namings made
    and revoked, break-the-glass grants given and closed, restrictions set and lifted."""
    for n in range(12):
        patient, doctor, start = rng.choice(PATIENTS), rng.choice(DOCTORS), rng.randrange(0, 20)
        purpose = rng.choice(PURPOSES)
        evidence = Evidence(ConsentMethod.WEB_CHECKBOX, patient, "patient", at(start))
        consents.insert_grant(
            conn, consent_id=f"c{n}", patient_id=patient, purpose=purpose,
            grantee_id=doctor if purpose is Purpose.SHARING else None,
            text_sha256="0" * 64, text_version=1, language="en", evidence=evidence,
        )  # fmt: skip
        if rng.random() < 0.5:
            end = Evidence(ConsentMethod.WEB_CHECKBOX, patient, "patient", at(start + 3))
            consents.insert_withdrawal(conn, f"c{n}", end)
    for _ in range(6):
        patient, doctor, start = rng.choice(PATIENTS), rng.choice(DOCTORS), rng.randrange(0, 20)
        until = at(start + rng.randrange(1, 6)) if rng.random() < 0.5 else None
        rid = care.start(
            conn, patient_id=patient, practitioner_id=doctor, basis=CareBasis.APPOINTMENT,
            now=at(start), until=until,
        )  # fmt: skip
        if rng.random() < 0.3:
            care.end(conn, rid, at(start + 2))
    for _ in range(4):
        patient, doctor, start = rng.choice(PATIENTS), rng.choice(DOCTORS), rng.randrange(0, 20)
        care.name_for_restricted(conn, patient, doctor, at(start))
        if rng.random() < 0.5:
            care.revoke_named(conn, patient, doctor, at(start + 4))
    for n in range(4):
        patient, doctor, start = rng.choice(PATIENTS), rng.choice(DOCTORS), rng.randrange(0, 20)
        grants.insert_grant(
            conn, grant_id=f"g{n}", patient_id=patient, practitioner_id=doctor,
            key_id=b"k" * 16, reason_sealed=b"sealed", granted_at=at(start),
            expires_at=at(start + 4),
        )  # fmt: skip
        if rng.random() < 0.5:
            grants.close_grant(conn, f"g{n}", at(start + 1), doctor)
    for patient in PATIENTS:
        for hours in sorted(rng.sample(range(0, 24), 3)):
            set_restriction(conn, patient, rng.random() < 0.5, at(hours))


def _from_primitives(conn: Connection, actor: Actor, patient_id: str, now: datetime) -> Facts:
    """The facts as each store's own primitive reads them."""
    purposes = consents.active_purposes(conn, patient_id, now, for_actor=actor.user_id)
    restricted = is_restricted(conn, patient_id, now)
    if actor.role is not Role.PRACTITIONER:
        return Facts(consents=purposes, restricted_processing=restricted)
    return Facts(
        consents=purposes,
        in_care_team=care.in_care_team(conn, actor.user_id, patient_id, now),
        named_by_patient=care.is_named_for_restricted(conn, patient_id, actor.user_id, now),
        break_glass_active=grants.has_active_grant(conn, actor.user_id, patient_id, now),
        restricted_processing=restricted,
    )


def test_one_query_says_what_the_primitives_say(engine: Engine) -> None:
    rng = random.Random(20260301)
    with engine.begin() as conn:
        _history(conn, rng)
    actors = [Actor(d, Role.PRACTITIONER) for d in DOCTORS]
    actors += [Actor("p1", Role.PATIENT), Actor("d1", Role.ADMIN)]
    seen: set[Facts] = set()
    with engine.connect() as conn:
        for half_hours in range(0, 60):
            now = at(half_hours / 2)
            for actor in actors:
                for patient in PATIENTS:
                    facts = load_facts(conn, actor, patient, now)
                    assert facts == _from_primitives(conn, actor, patient, now), (
                        actor,
                        patient,
                        now,
                    )
                    seen.add(facts)
    assert len(seen) > 10  # the histories did exercise the facts
    assert any(f.in_care_team for f in seen) and any(f.named_by_patient for f in seen)
    assert any(f.break_glass_active for f in seen) and any(f.restricted_processing for f in seen)
    assert any(Purpose.SHARING in f.consents for f in seen)
