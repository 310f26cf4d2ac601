"""The attacker writes to the main database (not to the key vault, nor the KMS): rolls a record
back, lowers a label, forges the rows a decision rests on, promotes an account, or copies a
valid tag onto another row. Every change is caught by the row tags (secretum.storage.integrity):
the request is refused and audited as tampering. On the code before row tags, each of these
attacks opened the data (or returned the old version) silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied, Tampered
from secretum.access.guard import TableGuard, allow
from secretum.access.model import Actor, Purpose, Role, Sensitivity
from secretum.audit.log import AuditLog
from secretum.audit.model import EventType, Outcome
from secretum.audit.store import audit_entries
from secretum.consent import store as consents_store
from secretum.consent.store import ConsentMethod, Evidence
from secretum.consent.tables import consent_withdrawals, consents
from secretum.crypto.blind_index import BlindIndex
from secretum.crypto.kms.fake import FakeKMS
from secretum.identity.accounts import AccountStore
from secretum.identity.model import AccountStatus, PersonalData
from secretum.identity.tables import accounts
from secretum.keys.keyring import KeyRing
from secretum.policy import care, grants, restriction
from secretum.policy.guard import PolicyGuard
from secretum.policy.tables import (
    break_glass_grants,
    care_relationships,
    processing_restrictions,
)
from secretum.records.files import FileStore
from secretum.records.service import RecordService
from secretum.records.store import RecordStore
from secretum.records.tables import fhir_resources, sealed_records
from secretum.storage.blobs import FileSystemBlobStore
from secretum.storage.integrity import RowTampered
from secretum.storage.integrity_backfill import tag_untagged

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
PATIENT = Actor("pat-1", Role.PATIENT)
DOCTOR = Actor("doc-1", Role.PRACTITIONER)
OTHER_DOCTOR = Actor("doc-2", Role.PRACTITIONER)
TREAT = Purpose.TELECONSULTATION
AS_DOCTOR = RequestContext(DOCTOR, TREAT, NOW)
SELF = Purpose.PATIENT_REQUEST


def observation(text_: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text_},
        "subject": {"reference": "Patient/pat-1"},
    }


@dataclass
class World:
    engine: Engine
    seed: RecordService  # an allow-all guard: sets the scene
    records: RecordService  # the real policy: what the attack is tried against
    keyring: KeyRing

    def audit(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            query = select(audit_entries).order_by(audit_entries.c.seq)
            return [dict(r) for r in conn.execute(query).mappings()]

    def write(self, *statements: Any) -> None:
        """The attacker's raw writes to the main database."""
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(statement)

    def consent(self, purpose: Purpose = TREAT, grantee: str | None = None) -> str:
        consent_id = os.urandom(8).hex()
        with self.engine.begin() as conn:
            consents_store.insert_grant(
                conn,
                consent_id=consent_id,
                patient_id="pat-1",
                purpose=purpose,
                grantee_id=grantee,
                text_sha256="0" * 64,
                text_version=1,
                language="fr",
                evidence=Evidence(ConsentMethod.WEB_CHECKBOX, "pat-1", "patient", NOW),
            )
        return consent_id

    def in_care_team(self, actor: Actor = DOCTOR) -> str:
        with self.engine.begin() as conn:
            return care.start(
                conn,
                patient_id="pat-1",
                practitioner_id=actor.user_id,
                basis=care.CareBasis.APPOINTMENT,
                now=NOW - timedelta(days=1),
            )


@pytest.fixture
def world(engine: Engine, vault_engine: Engine, tmp_path: Any) -> Iterator[World]:
    keyring = KeyRing(vault_engine, FakeKMS())
    store = RecordStore(keyring)
    files = FileStore(keyring, FileSystemBlobStore(tmp_path / "blobs"))
    blind = BlindIndex(os.urandom(32))
    audit = AuditLog(engine)
    seed = RecordService(engine, store, files, blind, audit, TableGuard([allow()]))
    records = RecordService(engine, store, files, blind, audit, PolicyGuard())
    patient = {"resourceType": "Patient", "id": "pat-1", "birthDate": "1984-12-01"}
    seed.create(RequestContext(PATIENT, SELF, NOW), patient, resource_id="pat-1")
    yield World(engine, seed, records, keyring)


def assert_tamper_audited(world: World) -> None:
    """The last two entries: the refused attempt (outcome 12) and a Security Alert."""
    attempt, alert = world.audit()[-2:]
    assert attempt["outcome"] == Outcome.MAJOR_FAILURE
    assert alert["event_type"] == EventType.SECURITY_ALERT
    assert alert["outcome"] == Outcome.MAJOR_FAILURE
    # the same ids as the attempt (the patient only when learnt from an untampered row)
    assert alert["patient_id"] == attempt["patient_id"]
    assert alert["resource_id"] == attempt["resource_id"] is not None


def refused_as_tampering(world: World, read: Any) -> None:
    with pytest.raises(Tampered) as refused:
        read()
    assert refused.value.decision.reason == "deny.tampered"
    assert_tamper_audited(world)


# -- rollback of a record ---------------------------------------------------------------------


def test_deleting_the_latest_version_and_resetting_the_index_is_caught(world: World) -> None:
    first = world.seed.create(RequestContext(DOCTOR, TREAT, NOW), observation("v1 glycemia 1.2"))
    rid = first.resource_id
    body = {**observation("v2 glycemia 3.4"), "id": rid}
    world.seed.update(RequestContext(DOCTOR, TREAT, NOW), "Observation", rid, body)
    assert world.records.read(RequestContext(PATIENT, SELF, NOW), "Observation", rid).version == 2

    world.write(
        delete(sealed_records).where(
            sealed_records.c.record_id == rid, sealed_records.c.version == 2
        ),
        update(fhir_resources).where(fhir_resources.c.resource_id == rid).values(version=1),
    )
    refused_as_tampering(
        world, lambda: world.records.read(RequestContext(PATIENT, SELF, NOW), "Observation", rid)
    )
    # the search, too, never serves the old version as the current one
    with pytest.raises(Tampered):
        world.records.search(RequestContext(PATIENT, SELF, NOW), "pat-1", "Observation")


def test_a_tag_copied_from_another_index_row_is_caught(world: World) -> None:
    a = world.seed.create(RequestContext(DOCTOR, TREAT, NOW), observation("a"))
    b = world.seed.create(
        RequestContext(DOCTOR, TREAT, NOW), observation("b"), sensitivity=Sensitivity.RESTRICTED
    )
    with world.engine.connect() as conn:
        tag = conn.execute(
            select(fhir_resources.c.row_mac).where(fhir_resources.c.resource_id == a.resource_id)
        ).scalar_one()
    # b relabelled as normal, with a's (valid) tag: the tag names a's id, not b's
    world.write(
        update(fhir_resources)
        .where(fhir_resources.c.resource_id == b.resource_id)
        .values(sensitivity="normal", row_mac=tag)
    )
    refused_as_tampering(
        world,
        lambda: world.records.read(
            RequestContext(PATIENT, SELF, NOW), "Observation", b.resource_id
        ),
    )


# -- labels and the rows a decision rests on ---------------------------------------------------


def test_lowering_a_sensitivity_label_is_caught(world: World) -> None:
    world.consent()
    world.in_care_team()
    secret = world.seed.create(
        RequestContext(DOCTOR, TREAT, NOW), observation("hiv"), sensitivity=Sensitivity.RESTRICTED
    )
    read = lambda: world.records.read(AS_DOCTOR, "Observation", secret.resource_id)  # noqa: E731
    with pytest.raises(AccessDenied) as denied:
        read()  # in the care team, but not named for restricted data
    assert denied.value.decision.reason == "deny.not-named-for-restricted"

    world.write(
        update(fhir_resources)
        .where(fhir_resources.c.resource_id == secret.resource_id)
        .values(sensitivity="normal")
    )
    refused_as_tampering(world, read)


def test_a_forged_care_relationship_is_caught(world: World) -> None:
    world.consent()
    obs = world.seed.create(RequestContext(DOCTOR, TREAT, NOW), observation("x"))
    read = lambda: world.records.read(AS_DOCTOR, "Observation", obs.resource_id)  # noqa: E731
    with pytest.raises(AccessDenied):
        read()  # not in the care team
    world.write(
        insert(care_relationships).values(
            relationship_id="f" * 32,
            patient_id="pat-1",
            practitioner_id=DOCTOR.user_id,
            basis="appointment",
            started_at=NOW - timedelta(days=1),
        )
    )
    refused_as_tampering(world, read)


def test_a_valid_care_tag_copied_onto_another_practitioner_is_caught(world: World) -> None:
    world.consent()
    legit = world.in_care_team(OTHER_DOCTOR)
    obs = world.seed.create(RequestContext(DOCTOR, TREAT, NOW), observation("x"))
    with world.engine.connect() as conn:
        row = dict(
            conn.execute(
                select(care_relationships).where(care_relationships.c.relationship_id == legit)
            )
            .mappings()
            .one()
        )
    # the same row, tag and all, for doc-1 (and under another id)
    world.write(
        insert(care_relationships).values(
            {**row, "relationship_id": "e" * 32, "practitioner_id": DOCTOR.user_id}
        )
    )
    refused_as_tampering(
        world,
        lambda: world.records.read(
            RequestContext(DOCTOR, TREAT, NOW), "Observation", obs.resource_id
        ),
    )


def test_an_ended_care_relationship_reopened_is_caught(world: World) -> None:
    world.consent()
    relationship = world.in_care_team()
    obs = world.seed.create(RequestContext(DOCTOR, TREAT, NOW), observation("x"))
    with world.engine.begin() as conn:
        assert care.end(conn, relationship, NOW - timedelta(hours=1), by="pat-1")
    read = lambda: world.records.read(AS_DOCTOR, "Observation", obs.resource_id)  # noqa: E731
    with pytest.raises(AccessDenied):
        read()
    world.write(
        update(care_relationships)
        .where(care_relationships.c.relationship_id == relationship)
        .values(ended_at=None, ended_by=None)
    )
    refused_as_tampering(world, read)


def test_a_forged_consent_is_caught(world: World) -> None:
    world.in_care_team()
    obs = world.seed.create(RequestContext(DOCTOR, TREAT, NOW), observation("x"))
    read = lambda: world.records.read(AS_DOCTOR, "Observation", obs.resource_id)  # noqa: E731
    with pytest.raises(AccessDenied) as denied:
        read()
    assert denied.value.decision.reason == "deny.no-consent"
    world.write(
        insert(consents).values(
            consent_id="c" * 32,
            patient_id="pat-1",
            purpose=str(TREAT),
            text_sha256="0" * 64,
            text_version=1,
            language="fr",
            method="web-checkbox",
            actor_id="pat-1",
            actor_role="patient",
            granted_at=NOW - timedelta(days=1),
        )
    )
    refused_as_tampering(world, read)


def test_a_consent_flipped_to_another_purpose_is_caught(world: World) -> None:
    world.in_care_team()
    research = world.consent(Purpose.RESEARCH)
    obs = world.seed.create(RequestContext(DOCTOR, TREAT, NOW), observation("x"))
    read = lambda: world.records.read(AS_DOCTOR, "Observation", obs.resource_id)  # noqa: E731
    with pytest.raises(AccessDenied):
        read()
    world.write(
        update(consents).where(consents.c.consent_id == research).values(purpose=str(TREAT))
    )
    refused_as_tampering(world, read)


def test_deleting_a_consent_withdrawal_is_caught(world: World) -> None:
    world.in_care_team()
    consent_id = world.consent()
    obs = world.seed.create(RequestContext(DOCTOR, TREAT, NOW), observation("x"))
    read = lambda: world.records.read(AS_DOCTOR, "Observation", obs.resource_id)  # noqa: E731
    assert read().resource_id == obs.resource_id
    with world.engine.begin() as conn:
        evidence = Evidence(
            ConsentMethod.WEB_CHECKBOX, "pat-1", "patient", NOW - timedelta(minutes=5)
        )
        consents_store.insert_withdrawal(conn, consent_id, evidence)
    with pytest.raises(AccessDenied):
        read()
    world.write(delete(consent_withdrawals).where(consent_withdrawals.c.consent_id == consent_id))
    refused_as_tampering(world, read)


def _grant(world: World, expires_at: datetime) -> str:
    grant_id = os.urandom(16).hex()
    with world.engine.begin() as conn:
        grants.insert_grant(
            conn,
            grant_id=grant_id,
            patient_id="pat-1",
            practitioner_id=DOCTOR.user_id,
            key_id=b"k" * 16,
            reason_sealed=b"sealed",
            granted_at=NOW - timedelta(hours=5),
            expires_at=expires_at,
        )
    return grant_id


def test_an_extended_break_the_glass_grant_is_caught(world: World) -> None:
    grant_id = _grant(world, NOW - timedelta(hours=1))  # expired an hour ago
    obs = world.seed.create(RequestContext(DOCTOR, TREAT, NOW), observation("x"))
    read = lambda: world.records.read(  # noqa: E731
        RequestContext(DOCTOR, Purpose.EMERGENCY, NOW), "Observation", obs.resource_id
    )
    with pytest.raises(AccessDenied):
        read()
    world.write(
        update(break_glass_grants)
        .where(break_glass_grants.c.grant_id == grant_id)
        .values(expires_at=NOW + timedelta(hours=4))
    )
    refused_as_tampering(world, read)


def test_a_forged_break_the_glass_grant_is_caught(world: World) -> None:
    obs = world.seed.create(RequestContext(DOCTOR, TREAT, NOW), observation("x"))
    read = lambda: world.records.read(  # noqa: E731
        RequestContext(DOCTOR, Purpose.EMERGENCY, NOW), "Observation", obs.resource_id
    )
    with pytest.raises(AccessDenied):
        read()
    world.write(
        insert(break_glass_grants).values(
            grant_id="g" * 32,
            patient_id="pat-1",
            practitioner_id=DOCTOR.user_id,
            key_id=b"k" * 16,
            reason_sealed=b"x",
            granted_at=NOW - timedelta(minutes=1),
            expires_at=NOW + timedelta(hours=4),
        )
    )
    refused_as_tampering(world, read)


@pytest.mark.parametrize("change", ["flip", "push-into-the-future"])
def test_lifting_a_restriction_of_processing_by_hand_is_caught(world: World, change: str) -> None:
    world.consent()
    world.in_care_team()
    obs = world.seed.create(RequestContext(DOCTOR, TREAT, NOW), observation("x"))
    with world.engine.begin() as conn:
        restriction.set_restriction(conn, "pat-1", True, NOW - timedelta(days=3))
        restriction.set_restriction(conn, "pat-1", False, NOW - timedelta(days=2))
        seq = restriction.set_restriction(conn, "pat-1", True, NOW - timedelta(days=1))
    read = lambda: world.records.read(AS_DOCTOR, "Observation", obs.resource_id)  # noqa: E731
    with pytest.raises(AccessDenied) as denied:
        read()
    assert denied.value.decision.reason == "deny.restricted-processing"
    values = {"restricted": False} if change == "flip" else {"set_at": NOW + timedelta(days=365)}
    world.write(
        update(processing_restrictions)
        .where(processing_restrictions.c.patient_id == "pat-1")
        .where(processing_restrictions.c.seq == seq)
        .values(**values)
    )
    refused_as_tampering(world, read)
    with world.engine.connect() as conn, pytest.raises(RowTampered):
        restriction.is_restricted(conn, "pat-1", NOW)  # what the rights flags read


# -- accounts ----------------------------------------------------------------------------------


def test_an_account_turned_into_an_admin_is_refused(world: World) -> None:
    store = AccountStore(world.keyring, BlindIndex(os.urandom(32)))
    with world.engine.begin() as conn:
        store.create(
            conn,
            user_id="pat-9",
            role=Role.PATIENT,
            status=AccountStatus.ACTIVE,
            personal=PersonalData("Ada", "ada@example.org"),
            user_handle=os.urandom(32),
            now=NOW,
        )
        # a legitimate change re-tags the row
        store.update(conn, "pat-9", NOW, password_hash="$argon2id$legit")
    with world.engine.connect() as conn:
        row = store.by_id(conn, "pat-9")
        assert row is not None and row.role is Role.PATIENT
    world.write(update(accounts).where(accounts.c.user_id == "pat-9").values(role="admin"))
    with world.engine.connect() as conn, pytest.raises(RowTampered):
        store.by_id(conn, "pat-9")
    with world.engine.connect() as conn, pytest.raises(RowTampered):
        store.by_email(conn, "ada@example.org")
    # nor can a tampered account be laundered by a legitimate write
    with world.engine.begin() as conn, pytest.raises(RowTampered):
        store.update(conn, "pat-9", NOW, status=AccountStatus.DISABLED)


def test_a_password_hash_of_the_attackers_choosing_is_refused(world: World) -> None:
    store = AccountStore(world.keyring, BlindIndex(os.urandom(32)))
    with world.engine.begin() as conn:
        store.create(
            conn,
            user_id="adm-1",
            role=Role.ADMIN,
            status=AccountStatus.ACTIVE,
            personal=PersonalData("Root", "root@example.org"),
            user_handle=os.urandom(32),
            now=NOW,
            password_hash="$argon2id$real",
        )
    world.write(
        update(accounts).where(accounts.c.user_id == "adm-1").values(password_hash="$argon2id$x")
    )
    with world.engine.connect() as conn, pytest.raises(RowTampered):
        store.by_email(conn, "root@example.org")


# -- rows from before the tags -------------------------------------------------------------------


def test_untagged_rows_are_refused_until_the_one_off_backfill(world: World) -> None:
    world.consent()
    world.in_care_team()
    obs = world.seed.create(RequestContext(DOCTOR, TREAT, NOW), observation("x"))
    read = lambda: world.records.read(AS_DOCTOR, "Observation", obs.resource_id)  # noqa: E731
    assert read().resource_id == obs.resource_id
    # as a database upgraded from before migration 0006 looks
    world.write(
        update(care_relationships).values(row_mac=None),
        update(consents).values(row_mac=None),
        update(fhir_resources).values(row_mac=None),
    )
    refused_as_tampering(world, read)
    with world.engine.begin() as conn:
        done = tag_untagged(conn)
    assert done["care_relationships"] == 1 and done["consents"] == 1
    assert done["fhir_resources"] == 2  # the Patient and the Observation
    assert read().resource_id == obs.resource_id
