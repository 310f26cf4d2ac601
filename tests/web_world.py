"""A whole platform for web tests: real app, real services, real sessions, a clock tests move.

:func:`build_world` wires a :class:`~secretum.bootstrap.Platform` in a temporary directory
(SQLite main database and key vault, FakeKMS, encrypted blobs, a signed audit log with its
witness file) whose clock is a :class:`Clock`, and the FastAPI app on it. Accounts of every role
are created the way people get them — bootstrap of the administrator, invitation, acceptance
with a password, password sign-in, TOTP enrolment — so every test request carries a real
session cookie (and its CSRF token on unsafe methods).

The clinic (:func:`seed_clinic`) holds four patients, one per scenario of the access matrix:

* ``own`` — in the care team of ``gp`` and ``radio``, consents to teleconsultation and
  teleradiology (the patient of the "own record" scenario);
* ``other`` — also cared for by ``gp`` with consent (another patient, for the patient role);
* ``nocare`` — consents, but ``gp`` is not in the care team;
* ``noconsent`` — ``gp`` in the care team, no consent.

Each has a Patient resource, an Observation and a document, all with fictitious data.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient

from identity_authenticator import PASSWORD, enrol_totp
from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose, Role
from secretum.audit.log import AuditLog
from secretum.bootstrap import Platform, bind_row_mac
from secretum.config import Settings
from secretum.consent.store import ConsentMethod
from secretum.crypto.blind_index import BlindIndex
from secretum.crypto.kms.fake import FakeKMS
from secretum.identity.factors import time_step, totp_code
from secretum.identity.model import IdentitySettings, luhn_ok
from secretum.identity.passwords import FAST_ARGON2
from secretum.identity.service import Identity
from secretum.identity.service_signin import SecondFactorRequired, SignedIn
from secretum.keys.keyring import KeyRing
from secretum.records.files import FileStore
from secretum.records.store import RecordStore
from secretum.services import Services, build_services
from secretum.storage.blobs import FileSystemBlobStore
from secretum.storage.db import make_engine
from secretum.storage.schema import create_main_schema, create_vault_schema
from secretum.web.app import create_app
from secretum.web.deps import CSRF_HEADER, SESSION_COOKIE

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ADDRESS = ("192.0.2.10", 50000)
#: Fictitious health and identity data: must never reach a log line or an audit entry.
SECRETS = {
    "own": ("Apolline", "Zéphyrin-Test", "glycemie-apolline-7c1"),
    "other": ("Bérénice", "Quintal-Test", "glycemie-berenice-8d2"),
    "nocare": ("Casimir", "Ondulé-Test", "glycemie-casimir-9e3"),
    "noconsent": ("Délphine", "Vautrin-Test", "glycemie-delphine-0f4"),
}
PDF = b"%PDF-1.4\n% fictitious test document\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@dataclass
class Clock:
    """The platform's clock: tests set and move it."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class WebUser:
    """A signed-in account: its session cookie and TOTP secret (tests only)."""

    name: str
    role: Role
    user_id: str
    email: str
    session_id: str
    totp_secret: str
    specialty: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.user_id, self.role, specialty=self.specialty)


@dataclass
class WebWorld:
    platform: Platform
    app: FastAPI
    clock: Clock
    data_dir: Path
    users: dict[str, WebUser] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)

    @property
    def services(self) -> Services:
        return self.platform.services

    # -- sessions ---------------------------------------------------------------------------

    def session(self, name: str) -> Any:
        assert self.users[name].session_id
        found = self.services.identity.sessions.resolve(
            self.users[name].session_id, now=self.clock.now
        )
        assert found is not None, f"{name}'s session is gone"
        return found

    def csrf(self, name: str) -> str:
        return str(self.session(name).csrf_token)

    def client(self, name: str | None = None, *, html: bool = False) -> TestClient:
        """A client signed in as ``name`` (anonymous if None); CSRF header on every request."""
        headers = {"accept": "text/html"} if html else {}
        client = TestClient(
            self.app,
            base_url="https://testserver",
            client=ADDRESS,
            follow_redirects=False,
            headers=headers,
        )
        if name is not None:
            client.cookies.set(SESSION_COOKIE, self.users[name].session_id)
            client.headers[CSRF_HEADER] = self.csrf(name)
        return client

    def _code(self, name: str) -> str:
        """A TOTP code of a time step not used yet (the clock moves 30 s first)."""
        self.clock.advance(seconds=30)
        return totp_code(self.users[name].totp_secret, time_step(self.clock.now))

    def step_up(self, name: str) -> None:
        """A fresh second factor: the session rotates with ``strong_auth_at`` = now."""
        user = self.users[name]
        rotated = self.services.identity.step_up.step_up_totp(
            user.session_id, self._code(name), now=self.clock.now
        )
        user.session_id = rotated.session_id

    def sign_in(self, name: str) -> None:
        """A new session (password, then TOTP), e.g. after the clock jumped past expiry."""
        user = self.users[name]
        identity = self.services.identity
        first = identity.sign_in.sign_in_password(user.email, PASSWORD, now=self.clock.now)
        if isinstance(first, SecondFactorRequired):
            first = identity.sign_in.complete_sign_in_totp(
                first.ticket, self._code(name), now=self.clock.now
            )
        assert isinstance(first, SignedIn)
        user.session_id = first.session_id

    # -- snapshots (the access matrix restores one before every state-changing request) ----

    def snapshot(self, target: Path) -> None:
        self._close()
        shutil.copytree(self.data_dir, target)

    def restore(self, source: Path) -> None:
        self._close()
        for attempt in range(20):  # the witness flusher (a thread) may write in the meantime
            try:
                shutil.rmtree(self.data_dir)
                break
            except OSError:
                if attempt == 19:
                    raise
                time.sleep(0.05)
        shutil.copytree(source, self.data_dir, dirs_exist_ok=True)

    def _close(self) -> None:
        self.platform.engine.dispose()
        self.platform.vault_engine.dispose()


def rpps(n: int) -> str:
    """An RPPS number (11 digits, Luhn check digit) for test practitioner ``n``."""
    body = f"1000000{n:03d}"
    return next(body + str(d) for d in range(10) if luhn_ok(body + str(d)))


def build_platform(data_dir: Path, clock: Clock, **settings: Any) -> Platform:
    """A platform like :func:`secretum.bootstrap.open_platform` builds, with a FakeKMS, cheap
    Argon2 and ``clock``."""
    config = Settings(data_dir=data_dir, **settings)
    engine = make_engine(config.db_url)
    vault = make_engine(config.key_vault_url)
    create_main_schema(engine)
    create_vault_schema(vault)
    kms = FakeKMS()
    keyring = KeyRing(vault, kms)
    bind_row_mac(engine, keyring)
    signing = Ed25519PrivateKey.from_private_bytes(
        keyring.secret("audit/signing-key", generate=lambda: os.urandom(32))
    )
    audit = AuditLog(
        engine,
        signing_key=signing,
        witness_path=config.witness_path,
        checkpoint_every=config.audit_checkpoint_every,
        checkpoint_seconds=config.audit_checkpoint_seconds,
    )
    platform = Platform(
        settings=config,
        engine=engine,
        vault_engine=vault,
        kms=kms,
        keyring=keyring,
        records=RecordStore(keyring),
        files=FileStore(keyring, FileSystemBlobStore(config.blob_dir)),
        imaging_blobs=FileSystemBlobStore(config.blob_area_dir("imaging")),
        blind_index=BlindIndex(os.urandom(32)),
        audit=audit,
        audit_public_key=signing.public_key(),
        clock=clock,
    )
    services = build_services(platform)
    base = services.identity
    services.identity = Identity.build(
        engine,
        keyring=keyring,
        blind_index=platform.blind_index,
        audit=audit,
        sessions=base.core.sessions,
        rate_limiter=base.core.limiter,
        webauthn=base.core.webauthn,
        settings=IdentitySettings(argon2=FAST_ARGON2),
    )
    platform.__dict__["services"] = services  # the cached property, filled
    return platform


def build_world(tmp_path: Path, **settings: Any) -> WebWorld:
    """A platform, its app, and one signed-in account per role (no clinic data yet)."""
    clock = Clock()
    data_dir = tmp_path / "data"
    platform = build_platform(data_dir, clock, **settings)
    world = WebWorld(platform, create_app(platform.settings, services=platform), clock, data_dir)
    identity = platform.services.identity
    token = identity.accounts.create_setup_token(None, clock.now)
    identity.accounts.complete_setup(
        token, email="ada@clinic.test", display_name="Ada Admin", password=PASSWORD, now=clock.now
    )
    world.users["admin"] = _enrol(world, "admin", Role.ADMIN, "ada@clinic.test")
    people = [
        ("dpo", Role.DPO, "Dora Delegate", None),
        ("gp", Role.PRACTITIONER, "Dr Gaston Généraliste", "general-practice"),
        ("radio", Role.PRACTITIONER, "Dr Rachel Radiologue", "radiology"),
        ("own", Role.PATIENT, "Apolline Zéphyrin-Test", None),
        ("other", Role.PATIENT, "Bérénice Quintal-Test", None),
        ("nocare", Role.PATIENT, "Casimir Ondulé-Test", None),
        ("noconsent", Role.PATIENT, "Délphine Vautrin-Test", None),
    ]
    for n, (name, role, display, specialty) in enumerate(people):
        email = f"{name}@clinic.test"
        invitation = identity.accounts.invite(
            world.users["admin"].session_id,
            email=email,
            role=role,
            display_name=display,
            now=clock.now,
            specialty=specialty,
            rpps=rpps(n) if role is Role.PRACTITIONER else None,
        )
        assert invitation.token is not None
        identity.accounts.accept_invitation(invitation.token, password=PASSWORD, now=clock.now)
        world.users[name] = _enrol(world, name, role, email, specialty)
    return world


def _enrol(
    world: WebWorld, name: str, role: Role, email: str, specialty: str | None = None
) -> WebUser:
    identity = world.services.identity
    signed = identity.sign_in.sign_in_password(email, PASSWORD, now=world.clock.now)
    assert isinstance(signed, SignedIn)
    enrolled = enrol_totp(identity, signed.session_id, world.clock.now)
    assert enrolled.totp_secret is not None
    return WebUser(
        name, role, enrolled.user_id, email, enrolled.session_id, enrolled.totp_secret, specialty
    )


def seed_clinic(world: WebWorld) -> None:
    """Care relationships, consents and records of the four scenario patients (see above)."""
    svc, now = world.services, world.clock.now
    gp, radio = world.users["gp"], world.users["radio"]
    teams = {"own": [gp, radio], "other": [gp], "nocare": [radio], "noconsent": [gp]}
    consents = {
        "own": [Purpose.TELECONSULTATION, Purpose.TELERADIOLOGY],
        "other": [Purpose.TELECONSULTATION],
        "nocare": [Purpose.TELECONSULTATION, Purpose.TELERADIOLOGY],
        "noconsent": [],
    }
    for name, team in teams.items():
        patient = world.users[name]
        for member in team:
            world.ids[f"rel:{name}:{member.name}"] = svc.choices.invite(
                RequestContext(patient.actor, Purpose.PATIENT_REQUEST, now),
                patient_id=patient.user_id,
                practitioner_id=member.user_id,
            )
        for purpose in consents[name]:
            svc.consent.grant(
                RequestContext(patient.actor, Purpose.PATIENT_REQUEST, now),
                patient_id=patient.user_id,
                purpose=purpose,
                text_sha256=svc.consent.texts.current(purpose, "fr").sha256,
                method=ConsentMethod.WEB_CHECKBOX,
            )
    for name in teams:
        patient = world.users[name]
        author = radio if name == "nocare" else gp
        purpose = Purpose.TELERADIOLOGY if name == "nocare" else Purpose.TELECONSULTATION
        given, family, marker = SECRETS[name]
        if name == "noconsent":  # nobody may write without consent: the patient's consent
            _seed_without_consent(world, patient, given, family, marker)
            continue
        _seed_record(world, author.actor, purpose, patient.user_id, given, family, marker)


def _seed_record(
    world: WebWorld, actor: Actor, purpose: Purpose, pid: str, given: str, family: str, marker: str
) -> None:
    svc, now = world.services, world.clock.now
    patient = {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "1980-05-17",
    }
    svc.records.create(
        RequestContext(actor, purpose, now), patient, resource_id=pid, patient_id=pid
    )
    obs = svc.records.create(
        RequestContext(actor, purpose, now), observation(pid, marker), patient_id=pid
    )
    doc = svc.documents.create_document(
        RequestContext(actor, purpose, now),
        document(pid, f"Compte rendu {marker}"),
        io.BytesIO(PDF),
        "application/pdf",
        patient_id=pid,
    )
    name = next(n for n, u in world.users.items() if u.user_id == pid)
    world.ids[f"obs:{name}"] = obs.resource_id
    world.ids[f"doc:{name}"] = doc.resource_id


def _seed_without_consent(
    world: WebWorld, patient: WebUser, given: str, family: str, marker: str
) -> None:
    """The record of ``noconsent``, written while a consent held, then withdrawn."""
    svc, now = world.services, world.clock.now
    text = svc.consent.texts.current(Purpose.TELECONSULTATION, "fr").sha256
    ctx = RequestContext(patient.actor, Purpose.PATIENT_REQUEST, now)
    common: dict[str, Any] = {
        "patient_id": patient.user_id,
        "purpose": Purpose.TELECONSULTATION,
        "method": ConsentMethod.WEB_CHECKBOX,
    }
    svc.consent.grant(ctx, text_sha256=text, **common)
    _seed_record(
        world,
        world.users["gp"].actor,
        Purpose.TELECONSULTATION,
        patient.user_id,
        given,
        family,
        marker,
    )
    svc.consent.withdraw(ctx, **common)


def observation(pid: str, marker: str, value: float = 1.05) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}], "text": marker},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": value, "unit": "g/L"},
    }


def document(pid: str, title: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{pid}"},
        "description": title,
        "content": [{"attachment": {}}],
    }


def clinic(tmp_path: Path, **settings: Any) -> WebWorld:
    """:func:`build_world` + :func:`seed_clinic`."""
    world = build_world(tmp_path, **settings)
    seed_clinic(world)
    return world
