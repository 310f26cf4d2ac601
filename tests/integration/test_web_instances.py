"""The scale path: two stateless instances of the web app on PostgreSQL and Redis.

Both instances are built from the same settings (main database and key vault in PostgreSQL,
sessions and brute-force counters in Redis under a prefix of this test, the local keystore and
the files in one shared folder) and serve through their own app. A session opened on one works
on the other; consent withdrawn, sign-out and lock-out on one hold on the other at the very
next request; the audit entries of both form one log that verifies.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from structlog.testing import capture_logs
from tests.conftest import _pg_schema_url

from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose, Role
from secretum.bootstrap import Platform, init_platform, open_platform
from secretum.config import Settings
from secretum.consent.store import ConsentMethod
from secretum.identity.factors import time_step, totp_code
from secretum.identity.service_signin import SignedIn
from secretum.web import create_app
from secretum.web.deps import CSRF_HEADER, SESSION_COOKIE

pytestmark = pytest.mark.postgres

PASSWORD = "violet tractor mumbles under seven lanterns"
PASSPHRASE = "a passphrase for the two instances"
BASE = "https://localhost:8443"


@dataclass
class Cluster:
    a: Platform
    b: Platform
    clients: dict[str, TestClient] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)

    def client(self, instance: str, who: str | None = None) -> TestClient:
        platform = self.a if instance == "a" else self.b
        client = TestClient(create_app(platform.settings, services=platform), base_url=BASE)
        if who is not None:
            session_id = self.sessions[who]
            client.cookies.set(SESSION_COOKIE, session_id)
            found = platform.services.identity.sessions.resolve(session_id, now=platform.clock())
            if found is not None:
                client.headers[CSRF_HEADER] = found.csrf_token
        return client


def _redis() -> redis.Redis:
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (see .ci/run)")
    return client


@pytest.fixture
def cluster(pg_admin: Engine, tmp_path: Path) -> Iterator[Cluster]:
    main_url, main_schema = _pg_schema_url(pg_admin, "inst")
    vault_url, vault_schema = _pg_schema_url(pg_admin, "instv")
    prefix = f"secretum-test-{secrets.token_hex(4)}:"
    settings = Settings(
        data_dir=tmp_path / "shared",
        database_url=main_url,
        vault_url=vault_url,
        redis_url="redis://127.0.0.1:6379/0",
        redis_prefix=prefix,
    )
    store = _redis()
    a = init_platform(settings, PASSPHRASE)
    b = open_platform(settings, passphrase=PASSPHRASE)
    for platform in (a, b):  # (tests: Argon2 at its cheapest)
        from secretum.identity.passwords import FAST_ARGON2, PasswordHasher

        platform.services.identity.core.hasher = PasswordHasher(FAST_ARGON2)
    world = Cluster(a, b)
    _seed(world)
    yield world
    a.close()
    b.close()
    for key in store.scan_iter(match=f"{prefix}*"):
        store.delete(key)
    with pg_admin.connect() as conn:
        for schema in (main_schema, vault_schema):
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def _seed(world: Cluster) -> None:
    """On instance a: an administrator, a doctor and a patient in their care with consent, an
    observation; a strong session each for the doctor and the patient."""
    from secretum.identity.model import luhn_ok

    platform = world.a
    identity, now = platform.services.identity, platform.clock()
    token = identity.accounts.create_setup_token(None, now)
    identity.accounts.complete_setup(
        token, email="admin@inst.test", display_name="Ada Admin", password=PASSWORD, now=now
    )

    def strong(email: str) -> str:
        signed = identity.sign_in.sign_in_password(email, PASSWORD, now=now)
        assert isinstance(signed, SignedIn)
        setup = identity.factors.begin_totp_setup(signed.session_id, now=now)
        enrolled = identity.factors.confirm_totp(
            signed.session_id, totp_code(setup.secret, time_step(now)), now=now
        )
        assert enrolled.session is not None
        world.ids[email + ":totp"] = setup.secret
        return enrolled.session.session_id

    admin = strong("admin@inst.test")
    rpps = next(f"1099999000{d}" for d in range(10) if luhn_ok(f"1099999000{d}"))
    for name, role, extra in (
        ("doctor", Role.PRACTITIONER, {"specialty": "general-practice", "rpps": rpps}),
        ("patient", Role.PATIENT, {}),
    ):
        invitation = identity.accounts.invite(
            admin, email=f"{name}@inst.test", role=role, display_name=name.title(), now=now, **extra
        )
        assert invitation.token is not None
        world.ids[name] = identity.accounts.accept_invitation(
            invitation.token, password=PASSWORD, now=now
        )
        world.sessions[name] = strong(f"{name}@inst.test")
    svc, pid = platform.services, world.ids["patient"]
    patient, doctor = Actor(pid, Role.PATIENT), Actor(world.ids["doctor"], Role.PRACTITIONER)
    svc.choices.invite(
        RequestContext(patient, Purpose.PATIENT_REQUEST, now),
        patient_id=pid,
        practitioner_id=doctor.user_id,
    )
    svc.consent.grant(
        RequestContext(patient, Purpose.PATIENT_REQUEST, now),
        patient_id=pid,
        purpose=Purpose.TELECONSULTATION,
        text_sha256=svc.consent.texts.current(Purpose.TELECONSULTATION, "fr").sha256,
        method=ConsentMethod.WEB_CHECKBOX,
    )
    care = Purpose.TELECONSULTATION
    patient_json = {"resourceType": "Patient", "id": pid, "name": [{"family": "Inst"}]}
    svc.records.create(
        RequestContext(doctor, care, now), patient_json, resource_id=pid, patient_id=pid
    )
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": 72, "unit": "/min"},
    }
    world.ids["obs"] = svc.records.create(
        RequestContext(doctor, care, now), observation, patient_id=pid
    ).resource_id


def test_a_session_opened_on_one_instance_works_on_the_other(cluster: Cluster) -> None:
    url = f"/fhir/Observation/{cluster.ids['obs']}"
    for instance in ("a", "b"):
        read = cluster.client(instance, "doctor").get(url)
        assert read.status_code == 200, read.text
        assert read.json()["valueQuantity"]["value"] == 72


def test_consent_withdrawn_on_b_denies_the_next_read_on_a(cluster: Cluster) -> None:
    url = f"/fhir/Observation/{cluster.ids['obs']}"
    assert cluster.client("a", "doctor").get(url).status_code == 200
    withdrawn = cluster.client("b", "patient").post(
        "/me/consents/withdraw", data={"purpose": "teleconsultation"}, follow_redirects=False
    )
    assert withdrawn.status_code == 303
    with capture_logs() as logs:
        denied = cluster.client("a", "doctor").get(url)
    assert denied.status_code == 403  # the fixed answer; the reason is logged
    assert [e["reason"] for e in logs if e["event"] == "fhir.denied"] == ["deny.no-consent"]


def test_sign_out_on_one_instance_ends_the_session_on_the_other(cluster: Cluster) -> None:
    url = f"/fhir/Observation/{cluster.ids['obs']}"
    out = cluster.client("a", "doctor").post("/sign-out", follow_redirects=False)
    assert out.status_code == 303
    assert cluster.client("b", "doctor").get(url).status_code == 401


def test_failed_sign_ins_count_across_instances(cluster: Cluster) -> None:
    from secretum.identity.errors import InvalidCredentials, Locked, Throttled

    refused = []
    for attempt in range(12):
        platform = cluster.a if attempt % 2 == 0 else cluster.b
        try:
            platform.services.identity.sign_in.sign_in_password(
                "doctor@inst.test", "not the password", now=platform.clock()
            )
        except (InvalidCredentials, Throttled, Locked) as exc:
            refused.append(type(exc).__name__)
    assert refused[0] == "InvalidCredentials"
    assert {"Throttled", "Locked"} & set(refused)  # the two instances counted together
    with pytest.raises((Throttled, Locked)):  # now the right password waits too, on both
        cluster.b.services.identity.sign_in.sign_in_password(
            "doctor@inst.test", PASSWORD, now=cluster.b.clock()
        )


def test_both_instances_write_one_audit_log_that_verifies(cluster: Cluster) -> None:
    url = f"/fhir/Observation/{cluster.ids['obs']}"
    for instance in ("a", "b", "a", "b"):
        assert cluster.client(instance, "doctor").get(url).status_code == 200
    with cluster.a.engine.connect() as conn:
        reads = conn.execute(
            text("SELECT count(*) FROM audit_entries WHERE resource_id = :obs AND action = 'R'"),
            {"obs": cluster.ids["obs"]},
        ).scalar_one()
    assert reads == 4
    cluster.a.audit.checkpoint(cluster.a.clock())
    report = cluster.b.audit.verify(cluster.b.audit_public_key)
    assert report.ok, report.findings
