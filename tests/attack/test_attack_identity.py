"""Hostile tests of sign-in and account security (issue 8, item 5, second half).

* recovery codes can never become an account's only factor (a user who made them so was
  locked out as soon as the set was lost or used up);
* brute-force lock-out is no denial of service: an attacker who fails ten times locks the
  *untrusted* sign-ins of the account (and their own address), never a browser that signed in
  successfully before (OWASP "device cookie" scheme).

On SQLite and PostgreSQL (``engine`` fixture); the device-cookie scenarios also with the
database and Redis brute-force counters.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from email import message_from_bytes
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from identity_authenticator import (
    ADMIN_EMAIL,
    PASSWORD,
    IdentityRig,
    at,
    bootstrap_admin,
    enrol_totp,
    invite_user,
    make_identity,
)
from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose, Role
from secretum.audit.log import AuditLog
from secretum.consent import store as consent_store
from secretum.consent.service import (
    ConsentService,
    PaperForm,
    PaperFormDate,
    PaperFormPredatesWithdrawal,
    PaperFormRequired,
)
from secretum.consent.store import ConsentMethod
from secretum.identity.devices import DeviceCookies
from secretum.identity.errors import (
    InvalidCode,
    InvalidCredentials,
    Locked,
    NoSecondFactor,
    Throttled,
)
from secretum.identity.factors import time_step, totp_code
from secretum.identity.ratelimit import DbRateLimiter, RateLimiter
from secretum.identity.redis_adapters import RedisRateLimiter
from secretum.identity.service_signin import SecondFactorRequired, SignedIn
from secretum.notices.store import NoticeKind, list_notices
from secretum.policy import care
from secretum.policy.guard import PolicyGuard
from web_world import PDF, SECRETS, WebWorld, clinic

T0 = at("2030-03-01T09:00:00")
PATIENT = "patient@example.org"
DOC = "doc@example.org"


@pytest.fixture
def rig(engine: Engine, vault_engine: Engine) -> IdentityRig:
    return make_identity(engine, vault_engine)


def _patient(rig: IdentityRig) -> SignedIn:
    """A patient (MFA optional) signed in with the password alone, no second factor."""
    admin = bootstrap_admin(rig.service, T0)
    invite_user(rig.service, admin.session_id, PATIENT, Role.PATIENT, T0)
    signed = rig.service.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0)
    assert isinstance(signed, SignedIn) and not signed.session.enrolment_only
    return signed


# -- recovery codes are never the only factor -------------------------------------------------


def test_recovery_codes_without_a_real_factor_are_refused(rig: IdentityRig) -> None:
    """Before the fix the patient got ten codes, and the next sign-in demanded one of them."""
    signed = _patient(rig)
    with pytest.raises(NoSecondFactor):
        rig.service.factors.generate_recovery_codes(signed.session_id, now=T0)
    later = T0 + timedelta(minutes=1)
    assert isinstance(rig.service.sign_in.sign_in_password(PATIENT, PASSWORD, now=later), SignedIn)


def test_removing_the_last_real_factor_revokes_the_recovery_codes(rig: IdentityRig) -> None:
    signed = _patient(rig)
    user = enrol_totp(rig.service, signed.session_id, T0)
    assert user.recovery_codes
    assert rig.service.factors.generate_recovery_codes(user.session_id, now=T0)  # with TOTP: fine
    rig.service.factors.remove_totp(user.session_id, now=T0)
    with rig.engine.connect() as conn:
        assert rig.service.core.factors.recovery_codes_left(conn, user.user_id) == 0
    later = T0 + timedelta(minutes=1)
    result = rig.service.sign_in.sign_in_password(PATIENT, PASSWORD, now=later)
    assert isinstance(result, SignedIn), "codes left as the only factor"
    assert not isinstance(result, SecondFactorRequired)
    with pytest.raises(NoSecondFactor):
        rig.service.factors.generate_recovery_codes(result.session_id, now=later)


# -- lock-out without denial of service (device cookies) --------------------------------------

ATTACKER = "203.0.113.66"
HOME = "198.51.100.20"
WRONG = "not the password, again!"


@pytest.fixture
def redis_prefix() -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running at 127.0.0.1:6379 (CI starts it)")
    prefix = f"secretum-test:{secrets.token_hex(8)}:"
    yield client, prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["db", "redis"])
def counted(request: pytest.FixtureRequest, engine: Engine, vault_engine: Engine) -> IdentityRig:
    """An identity service whose brute-force counters are in the database or in Redis."""
    limiter: RateLimiter
    if request.param == "redis":
        client, prefix = request.getfixturevalue("redis_prefix")
        limiter = RedisRateLimiter(client, prefix)
    else:
        limiter = DbRateLimiter(engine)
    return make_identity(engine, vault_engine, limiter=limiter)


ADMIN_CODES: list[str] = []


def _trusted_patient(rig: IdentityRig) -> tuple[str, str]:
    """A patient who signed in once from home: (their user id, the device cookie they got)."""
    admin = bootstrap_admin(rig.service, T0)
    ADMIN_CODES[:] = admin.recovery_codes or []
    user_id = invite_user(rig.service, admin.session_id, PATIENT, Role.PATIENT, T0)
    signed = rig.service.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0, address=HOME)
    assert isinstance(signed, SignedIn) and signed.device_cookie
    return user_id, signed.device_cookie


def _index(rig: IdentityRig, email: str) -> str:
    return rig.service.core.accounts.email_index(email).hex()


def _hammer(rig: IdentityRig, when: datetime, email: str = PATIENT, n: int = 12) -> datetime:
    """``n`` wrong passwords from the attacker's address without a device cookie (each past the
    progressive delay); the time after the last one."""
    for _ in range(n):
        with pytest.raises((InvalidCredentials, Throttled)):
            rig.service.sign_in.sign_in_password(email, WRONG, now=when, address=ATTACKER)
        when += timedelta(seconds=70)
    return when


def test_an_attacker_cannot_lock_out_a_trusted_device(counted: IdentityRig) -> None:
    """Before device cookies, the attacker's 10th failure locked the account for everyone."""
    svc = counted.service
    user_id, cookie = _trusted_patient(counted)
    when = _hammer(counted, T0 + timedelta(minutes=1))
    with pytest.raises(Locked):  # untrusted attempts are locked: guessing stays limited
        svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=when, address=ATTACKER)
    with pytest.raises(Locked):  # even from another untrusted address, with the password
        svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=when, address=HOME)
    home = svc.sign_in.sign_in_password(
        PATIENT, PASSWORD, now=when, address=HOME, device_cookie=cookie
    )
    assert isinstance(home, SignedIn) and home.session.user_id == user_id
    assert home.device_cookie and home.device_cookie != cookie  # renewed at each success
    with pytest.raises(Locked):  # the user's success did not unlock the attacker
        svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=when, address=ATTACKER)
    with counted.engine.connect() as conn:  # the user is told their account is under attack
        assert NoticeKind.ACCOUNT_LOCKED in [n.kind for n in list_notices(conn, user_id)]


def test_a_forged_or_altered_device_cookie_is_untrusted(counted: IdentityRig) -> None:
    svc = counted.service
    _user_id, cookie = _trusted_patient(counted)
    when = _hammer(counted, T0 + timedelta(minutes=1))
    version, issued, nonce, tag = cookie.split(".")
    flipped = tag[:-2] + ("A" if tag[-2] != "A" else "B") + tag[-1]
    forged = [
        f"{version}.{issued}.{nonce}.{flipped}",  # tag altered
        f"{version}.{int(issued) + 60}.{nonce}.{tag}",  # issue time moved
        f"{version}.{issued}.{'A' * len(nonce)}.{tag}",  # nonce replaced
        f"v2.{issued}.{nonce}.{tag}",
        "garbage",
        "~".join(["x"] * 500),
        "",
    ]
    for value in forged:
        with pytest.raises(Locked):
            svc.sign_in.sign_in_password(
                PATIENT, PASSWORD, now=when, address=HOME, device_cookie=value
            )
    account_key = "acct:" + svc.core.accounts.email_index(PATIENT).hex()
    old = svc.core.devices.issue(account_key, when - timedelta(days=401), bytes(16))
    with pytest.raises(Locked):  # a genuine token, but past its lifetime
        svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=when, address=HOME, device_cookie=old)
    other_key = DeviceCookies(bytes(32)).issue(account_key, when, bytes(16))
    with pytest.raises(Locked):  # well formed, signed with another key
        svc.sign_in.sign_in_password(
            PATIENT, PASSWORD, now=when, address=HOME, device_cookie=other_key
        )
    good = svc.sign_in.sign_in_password(
        PATIENT, PASSWORD, now=when, address=HOME, device_cookie=cookie
    )
    assert isinstance(good, SignedIn)


def test_a_device_cookie_of_another_account_gives_nothing(counted: IdentityRig) -> None:
    """The attacker signs in to their own account, then uses that cookie on the victim's."""
    svc = counted.service
    _user_id, _cookie = _trusted_patient(counted)
    pending = svc.sign_in.sign_in_password(ADMIN_EMAIL, PASSWORD, now=T0)
    assert isinstance(pending, SecondFactorRequired)
    admin = svc.sign_in.complete_sign_in_recovery_code(pending.ticket, ADMIN_CODES[0], now=T0)
    invite_user(svc, admin.session_id, "mallory@example.org", Role.PATIENT, T0)
    own = svc.sign_in.sign_in_password("mallory@example.org", PASSWORD, now=T0, address=ATTACKER)
    assert isinstance(own, SignedIn) and own.device_cookie
    when = T0 + timedelta(minutes=1)
    for _ in range(12):
        with pytest.raises((InvalidCredentials, Throttled)):
            svc.sign_in.sign_in_password(
                PATIENT, WRONG, now=when, address=ATTACKER, device_cookie=own.device_cookie
            )
        when += timedelta(seconds=70)
    with pytest.raises(Locked):  # counted (and locked) as untrusted, not on Mallory's device
        svc.sign_in.sign_in_password(
            PATIENT, PASSWORD, now=when, address=ATTACKER, device_cookie=own.device_cookie
        )
    mine = svc.sign_in.sign_in_password(
        "mallory@example.org", PASSWORD, now=when, device_cookie=own.device_cookie
    )
    assert isinstance(mine, SignedIn)  # her own device is untouched by those failures


def test_a_throttled_address_does_not_block_a_trusted_device_behind_it(
    counted: IdentityRig,
) -> None:
    """A guesser behind the same NAT as the user sprays passwords over many e-mails."""
    svc = counted.service
    _user_id, cookie = _trusted_patient(counted)
    when = T0 + timedelta(minutes=1)
    for i in range(40):
        with pytest.raises((InvalidCredentials, Throttled)):
            svc.sign_in.sign_in_password(
                f"victim{i}@example.org", WRONG, now=when, address=ATTACKER
            )
        when += timedelta(seconds=301)  # past each progressive delay (at most 5 min)
    with pytest.raises(Locked):  # the address is locked for untrusted sign-ins
        svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=when, address=ATTACKER)
    home = svc.sign_in.sign_in_password(
        PATIENT, PASSWORD, now=when, address=ATTACKER, device_cookie=cookie
    )
    assert isinstance(home, SignedIn)


def test_failures_on_a_trusted_device_lock_that_device_only(counted: IdentityRig) -> None:
    """Someone at the user's unlocked computer guesses: the device locks, and then counts as
    untrusted; the account's other browsers are not locked by it."""
    svc = counted.service
    _user_id, cookie = _trusted_patient(counted)
    when = T0 + timedelta(minutes=1)
    for _ in range(10):
        with pytest.raises((InvalidCredentials, Throttled)):
            svc.sign_in.sign_in_password(
                PATIENT, WRONG, now=when, address=HOME, device_cookie=cookie
            )
        when += timedelta(seconds=70)
    device_key = svc.core.devices.trusted_key(cookie, "acct:" + _index(counted, PATIENT), when)
    assert device_key is not None and counted.limiter.check([device_key], when).locked
    elsewhere = svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=when, address=ATTACKER)
    assert isinstance(elsewhere, SignedIn)  # the untrusted bucket was not touched
    for _ in range(10):  # the locked device is now just another untrusted browser
        with pytest.raises((InvalidCredentials, Throttled)):
            svc.sign_in.sign_in_password(
                PATIENT, WRONG, now=when, address=HOME, device_cookie=cookie
            )
        when += timedelta(seconds=70)
    with pytest.raises(Locked):
        svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=when, address=ATTACKER)


def test_second_factor_step_of_a_trusted_device_survives_the_lock(counted: IdentityRig) -> None:
    """A practitioner with TOTP: the attacker locks the untrusted bucket with wrong codes
    after a stolen password; the practitioner's device still completes both steps."""
    svc = counted.service
    admin = bootstrap_admin(svc, T0)
    invite_user(
        svc, admin.session_id, DOC, Role.PRACTITIONER, T0, specialty="radiology", rpps="10000000009"
    )
    first = svc.sign_in.sign_in_password(DOC, PASSWORD, now=T0, address=HOME)
    assert isinstance(first, SignedIn) and first.session.enrolment_only
    assert not first.device_cookie  # an enrolment-only session proved no factor yet
    doctor = enrol_totp(svc, first.session_id, T0)
    secret = doctor.totp_secret or ""
    when = T0 + timedelta(minutes=1)
    pending = svc.sign_in.sign_in_password(DOC, PASSWORD, now=when, address=HOME)
    assert isinstance(pending, SecondFactorRequired)
    done = svc.sign_in.complete_sign_in_totp(
        pending.ticket, totp_code(secret, time_step(when)), now=when, address=HOME
    )
    cookie = done.device_cookie
    assert cookie
    when += timedelta(minutes=2)
    stolen = svc.sign_in.sign_in_password(DOC, PASSWORD, now=when, address=ATTACKER)
    assert isinstance(stolen, SecondFactorRequired)
    for i in range(10):
        with pytest.raises((InvalidCode, Throttled)):
            svc.sign_in.complete_sign_in_totp(stolen.ticket, f"{i:06d}", now=when, address=ATTACKER)
        when += timedelta(seconds=25)
    with pytest.raises(Locked):
        svc.sign_in.sign_in_password(DOC, PASSWORD, now=when, address=ATTACKER)
    pending = svc.sign_in.sign_in_password(
        DOC, PASSWORD, now=when, address=HOME, device_cookie=cookie
    )
    assert isinstance(pending, SecondFactorRequired)
    code = totp_code(secret, time_step(when))
    signed = svc.sign_in.complete_sign_in_totp(
        pending.ticket, code, now=when, address=HOME, device_cookie=cookie
    )
    assert isinstance(signed, SignedIn) and signed.device_cookie
    with pytest.raises(Locked):
        svc.sign_in.sign_in_password(DOC, PASSWORD, now=when, address=ATTACKER)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=0, max_value=3))
def test_no_made_up_device_cookie_is_trusted(cookie: str, where: int) -> None:
    """Whatever the attacker sends (alone or beside a genuine token of another account), no
    key is trusted for the victim's account."""
    devices = DeviceCookies(bytes(range(32)))
    now = T0
    genuine = devices.issue("acct:" + "11" * 32, now, bytes(16))
    parts = [cookie, genuine, cookie + genuine, genuine + "~" + cookie]
    assert devices.trusted_key(parts[where], "acct:" + "22" * 32, now) is None
    assert devices.trusted_key(genuine, "acct:" + "11" * 32, now) is not None


# -- a paper consent cannot silently override the patient's withdrawal ------------------------

TR = Purpose.TELERADIOLOGY
STEPPED_UP = Actor("d1", Role.PRACTITIONER, strong_auth_at=T0)


@pytest.fixture
def consents(engine: Engine, tmp_path: Path) -> ConsentService:
    audit = AuditLog(engine, Ed25519PrivateKey.generate(), tmp_path / "w.log")
    service = ConsentService(engine, audit, PolicyGuard())
    with engine.begin() as conn:
        care.start(conn, patient_id="p1", practitioner_id="d1", basis=care.CareBasis.APPOINTMENT,
                   now=T0 - timedelta(days=30))  # fmt: skip
    return service


def _online(service: ConsentService, change: str, at: datetime) -> None:
    ctx = RequestContext(Actor("p1", Role.PATIENT), Purpose.PATIENT_REQUEST, at)
    common: dict[str, Any] = {
        "patient_id": "p1",
        "purpose": TR,
        "method": ConsentMethod.WEB_CHECKBOX,
    }
    if change == "grant":
        text = service.texts.current(TR, "fr").sha256
        service.grant(ctx, text_sha256=text, **common)
    else:
        service.withdraw(ctx, **common)


def _paper(service: ConsentService, at: datetime, **kw: Any) -> Any:
    text = service.texts.current(TR, "fr").sha256
    return service.grant(
        RequestContext(replace(STEPPED_UP, strong_auth_at=at), Purpose.PATIENT_REQUEST, at),
        patient_id="p1",
        purpose=TR,
        text_sha256=text,
        method=ConsentMethod.PAPER_SCANNED,
        **kw,
    )


def test_a_paper_consent_needs_its_form(engine: Engine, consents: ConsentService) -> None:
    """Before the fix, a practitioner recorded a "paper" consent with no form at all."""
    with pytest.raises(PaperFormRequired):
        _paper(consents, T0)
    with engine.connect() as conn:
        assert consent_store.history(conn, "p1") == []


def test_a_form_signed_before_the_withdrawal_is_refused(
    engine: Engine, consents: ConsentService
) -> None:
    """The patient withdrew online at 10:00; seconds later a practitioner records a paper
    consent. A form dated that day or before never overrides the withdrawal."""
    withdrawn_at = T0 + timedelta(hours=1)
    _online(consents, "grant", T0 - timedelta(days=10))
    _online(consents, "withdraw", withdrawn_at)
    seconds_later = withdrawn_at + timedelta(seconds=20)
    for signed in (withdrawn_at.date(), withdrawn_at.date() - timedelta(days=3)):
        with pytest.raises(PaperFormPredatesWithdrawal):
            _paper(consents, seconds_later, paper_form=PaperForm(signed))
    with pytest.raises(PaperFormDate):  # and never from the future
        _paper(consents, seconds_later, paper_form=PaperForm(T0.date() + timedelta(days=1)))
    with engine.connect() as conn:
        assert consent_store.active_consents(conn, "p1", seconds_later, purpose=TR) == []
    next_day = withdrawn_at + timedelta(days=1)
    # a form signed after the withdrawal is a new decision
    record = _paper(consents, next_day, paper_form=PaperForm(next_day.date()))
    assert consents.paper_form(record.consent_id) == (next_day.date(), None)
    consents.attach_paper_form(
        RequestContext(
            replace(STEPPED_UP, strong_auth_at=next_day), Purpose.PATIENT_REQUEST, next_day
        ),
        consent_id=record.consent_id,
        document_id="doc-1",
    )
    with pytest.raises(ValueError, match="stored already"):  # named once, never replaced
        consents.attach_paper_form(
            RequestContext(
                replace(STEPPED_UP, strong_auth_at=next_day), Purpose.PATIENT_REQUEST, next_day
            ),
            consent_id=record.consent_id,
            document_id="doc-2",
        )
    assert consents.paper_form(record.consent_id) == (next_day.date(), "doc-1")
    with engine.connect() as conn:
        kinds = [n.kind for n in list_notices(conn, "p1")]
    assert kinds == [NoticeKind.CONSENT_CHANGED]  # the patient is told


def _paper_post(world: WebWorld, pid: str, **fields: Any) -> Any:
    world.step_up("gp")
    files = fields.pop("files", {"form_file": ("form.pdf", io.BytesIO(PDF), "application/pdf")})
    data = {"purpose": "teleradiology", "change": "grant", **fields}
    return world.client("gp", html=True).post(
        f"/practice/patients/{pid}/consents", data=data, files=files
    )


def test_paper_consent_through_the_pages(tmp_path: Path) -> None:
    """The practitioner's form: the scan and its date are required; a form dated on the day of
    the online withdrawal is refused; a later one is stored encrypted as the consent's
    evidence, and the patient gets a notice and an e-mail that names no health data."""
    world = clinic(tmp_path)
    pid = world.users["own"].user_id
    patient = world.client("own", html=True)
    done = patient.post("/me/consents/withdraw", data={"purpose": "teleradiology"})
    assert done.status_code == 303
    today = world.clock.now.date().isoformat()
    assert _paper_post(world, pid, signed_on=today, files={}).status_code == 400
    assert _paper_post(world, pid, signed_on="").status_code == 400
    text_file = {"form_file": ("form.txt", io.BytesIO(b"I agree"), "text/plain")}
    assert _paper_post(world, pid, signed_on=today, files=text_file).status_code == 415
    fake_pdf = {"form_file": ("form.pdf", io.BytesIO(b"not a pdf at all"), "application/pdf")}
    assert _paper_post(world, pid, signed_on=today, files=fake_pdf).status_code == 415
    world.clock.advance(seconds=30)
    refused = _paper_post(world, pid, signed_on=today)
    assert refused.status_code == 409 and "le retrait prévaut" in unescape(refused.text)
    services = world.services
    with world.platform.engine.connect() as conn:
        assert consent_store.active_consents(conn, pid, world.clock.now, purpose=TR) == []
    outbox = world.platform.settings.outbox_dir
    assert not list(outbox.glob("*.eml"))
    world.clock.advance(days=1)
    world.sign_in("gp")  # yesterday's session is gone
    granted = _paper_post(world, pid, signed_on=world.clock.now.date().isoformat())
    assert granted.status_code == 303, granted.text
    with world.platform.engine.connect() as conn:
        [consent] = consent_store.active_consents(conn, pid, world.clock.now, purpose=TR)
        form = services.consent.paper_form(consent.consent_id)
        kinds = [n.kind for n in list_notices(conn, pid)]
    assert form is not None and form[0] == world.clock.now.date() and form[1]
    with services.documents.open_document(
        RequestContext(world.users["gp"].actor, TR, world.clock.now), form[1]
    ) as content:
        assert content.content_type == "application/pdf" and content.reader.read() == PDF
    blobs = [p.read_bytes() for p in world.platform.settings.blob_dir.rglob("*") if p.is_file()]
    assert blobs and not any(b"fictitious test document" in b for b in blobs)  # encrypted
    assert NoticeKind.CONSENT_CHANGED in kinds
    [mail] = [message_from_bytes(p.read_bytes()) for p in outbox.glob("*.eml")]
    assert mail["To"] == world.users["own"].email
    body = mail.get_payload(decode=True).decode("utf-8").lower()  # type: ignore[union-attr]
    assert "consentement" in body and "consent was recorded" in body
    for secret in ("radiolog", "gaston", "généraliste", *SECRETS["own"]):
        assert secret.lower() not in body
