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

import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import redis
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
from secretum.policy.model import Role

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
    signed = rig.service.sign_in_password(PATIENT, PASSWORD, now=T0)
    assert isinstance(signed, SignedIn) and not signed.session.enrolment_only
    return signed


# -- recovery codes are never the only factor -------------------------------------------------


def test_recovery_codes_without_a_real_factor_are_refused(rig: IdentityRig) -> None:
    """Before the fix the patient got ten codes, and the next sign-in demanded one of them."""
    signed = _patient(rig)
    with pytest.raises(NoSecondFactor):
        rig.service.generate_recovery_codes(signed.session_id, now=T0)
    later = T0 + timedelta(minutes=1)
    assert isinstance(rig.service.sign_in_password(PATIENT, PASSWORD, now=later), SignedIn)


def test_removing_the_last_real_factor_revokes_the_recovery_codes(rig: IdentityRig) -> None:
    signed = _patient(rig)
    user = enrol_totp(rig.service, signed.session_id, T0)
    assert user.recovery_codes
    assert rig.service.generate_recovery_codes(user.session_id, now=T0)  # with TOTP: fine
    rig.service.remove_totp(user.session_id, now=T0)
    with rig.engine.connect() as conn:
        assert rig.service.factors.recovery_codes_left(conn, user.user_id) == 0
    later = T0 + timedelta(minutes=1)
    result = rig.service.sign_in_password(PATIENT, PASSWORD, now=later)
    assert isinstance(result, SignedIn), "codes left as the only factor"
    assert not isinstance(result, SecondFactorRequired)
    with pytest.raises(NoSecondFactor):
        rig.service.generate_recovery_codes(result.session_id, now=later)


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
    signed = rig.service.sign_in_password(PATIENT, PASSWORD, now=T0, address=HOME)
    assert isinstance(signed, SignedIn) and signed.device_cookie
    return user_id, signed.device_cookie


def _index(rig: IdentityRig, email: str) -> str:
    return rig.service.accounts.email_index(email).hex()


def _hammer(rig: IdentityRig, when: datetime, email: str = PATIENT, n: int = 12) -> datetime:
    """``n`` wrong passwords from the attacker's address without a device cookie (each past the
    progressive delay); the time after the last one."""
    for _ in range(n):
        with pytest.raises((InvalidCredentials, Throttled)):
            rig.service.sign_in_password(email, WRONG, now=when, address=ATTACKER)
        when += timedelta(seconds=70)
    return when


def test_an_attacker_cannot_lock_out_a_trusted_device(counted: IdentityRig) -> None:
    """Before device cookies, the attacker's 10th failure locked the account for everyone."""
    svc = counted.service
    user_id, cookie = _trusted_patient(counted)
    when = _hammer(counted, T0 + timedelta(minutes=1))
    with pytest.raises(Locked):  # untrusted attempts are locked: guessing stays limited
        svc.sign_in_password(PATIENT, PASSWORD, now=when, address=ATTACKER)
    with pytest.raises(Locked):  # even from another untrusted address, with the password
        svc.sign_in_password(PATIENT, PASSWORD, now=when, address=HOME)
    home = svc.sign_in_password(PATIENT, PASSWORD, now=when, address=HOME, device_cookie=cookie)
    assert isinstance(home, SignedIn) and home.session.user_id == user_id
    assert home.device_cookie and home.device_cookie != cookie  # renewed at each success
    with pytest.raises(Locked):  # the user's success did not unlock the attacker
        svc.sign_in_password(PATIENT, PASSWORD, now=when, address=ATTACKER)
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
            svc.sign_in_password(PATIENT, PASSWORD, now=when, address=HOME, device_cookie=value)
    account_key = "acct:" + svc.accounts.email_index(PATIENT).hex()
    old = svc.devices.issue(account_key, when - timedelta(days=401), bytes(16))
    with pytest.raises(Locked):  # a genuine token, but past its lifetime
        svc.sign_in_password(PATIENT, PASSWORD, now=when, address=HOME, device_cookie=old)
    other_key = DeviceCookies(bytes(32)).issue(account_key, when, bytes(16))
    with pytest.raises(Locked):  # well formed, signed with another key
        svc.sign_in_password(PATIENT, PASSWORD, now=when, address=HOME, device_cookie=other_key)
    good = svc.sign_in_password(PATIENT, PASSWORD, now=when, address=HOME, device_cookie=cookie)
    assert isinstance(good, SignedIn)


def test_a_device_cookie_of_another_account_gives_nothing(counted: IdentityRig) -> None:
    """The attacker signs in to their own account, then uses that cookie on the victim's."""
    svc = counted.service
    _user_id, _cookie = _trusted_patient(counted)
    pending = svc.sign_in_password(ADMIN_EMAIL, PASSWORD, now=T0)
    assert isinstance(pending, SecondFactorRequired)
    admin = svc.complete_sign_in_recovery_code(pending.ticket, ADMIN_CODES[0], now=T0)
    invite_user(svc, admin.session_id, "mallory@example.org", Role.PATIENT, T0)
    own = svc.sign_in_password("mallory@example.org", PASSWORD, now=T0, address=ATTACKER)
    assert isinstance(own, SignedIn) and own.device_cookie
    when = T0 + timedelta(minutes=1)
    for _ in range(12):
        with pytest.raises((InvalidCredentials, Throttled)):
            svc.sign_in_password(
                PATIENT, WRONG, now=when, address=ATTACKER, device_cookie=own.device_cookie
            )
        when += timedelta(seconds=70)
    with pytest.raises(Locked):  # counted (and locked) as untrusted, not on Mallory's device
        svc.sign_in_password(
            PATIENT, PASSWORD, now=when, address=ATTACKER, device_cookie=own.device_cookie
        )
    mine = svc.sign_in_password(
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
            svc.sign_in_password(f"victim{i}@example.org", WRONG, now=when, address=ATTACKER)
        when += timedelta(seconds=301)  # past each progressive delay (at most 5 min)
    with pytest.raises(Locked):  # the address is locked for untrusted sign-ins
        svc.sign_in_password(PATIENT, PASSWORD, now=when, address=ATTACKER)
    home = svc.sign_in_password(PATIENT, PASSWORD, now=when, address=ATTACKER, device_cookie=cookie)
    assert isinstance(home, SignedIn)


def test_failures_on_a_trusted_device_lock_that_device_only(counted: IdentityRig) -> None:
    """Someone at the user's unlocked computer guesses: the device locks, and then counts as
    untrusted; the account's other browsers are not locked by it."""
    svc = counted.service
    _user_id, cookie = _trusted_patient(counted)
    when = T0 + timedelta(minutes=1)
    for _ in range(10):
        with pytest.raises((InvalidCredentials, Throttled)):
            svc.sign_in_password(PATIENT, WRONG, now=when, address=HOME, device_cookie=cookie)
        when += timedelta(seconds=70)
    device_key = svc.devices.trusted_key(cookie, "acct:" + _index(counted, PATIENT), when)
    assert device_key is not None and counted.limiter.check([device_key], when).locked
    elsewhere = svc.sign_in_password(PATIENT, PASSWORD, now=when, address=ATTACKER)
    assert isinstance(elsewhere, SignedIn)  # the untrusted bucket was not touched
    for _ in range(10):  # the locked device is now just another untrusted browser
        with pytest.raises((InvalidCredentials, Throttled)):
            svc.sign_in_password(PATIENT, WRONG, now=when, address=HOME, device_cookie=cookie)
        when += timedelta(seconds=70)
    with pytest.raises(Locked):
        svc.sign_in_password(PATIENT, PASSWORD, now=when, address=ATTACKER)


def test_second_factor_step_of_a_trusted_device_survives_the_lock(counted: IdentityRig) -> None:
    """A practitioner with TOTP: the attacker locks the untrusted bucket with wrong codes
    after a stolen password; the practitioner's device still completes both steps."""
    svc = counted.service
    admin = bootstrap_admin(svc, T0)
    invite_user(
        svc, admin.session_id, DOC, Role.PRACTITIONER, T0, specialty="radiology", rpps="10000000009"
    )
    first = svc.sign_in_password(DOC, PASSWORD, now=T0, address=HOME)
    assert isinstance(first, SignedIn) and first.session.enrolment_only
    assert not first.device_cookie  # an enrolment-only session proved no factor yet
    doctor = enrol_totp(svc, first.session_id, T0)
    secret = doctor.totp_secret or ""
    when = T0 + timedelta(minutes=1)
    pending = svc.sign_in_password(DOC, PASSWORD, now=when, address=HOME)
    assert isinstance(pending, SecondFactorRequired)
    done = svc.complete_sign_in_totp(
        pending.ticket, totp_code(secret, time_step(when)), now=when, address=HOME
    )
    cookie = done.device_cookie
    assert cookie
    when += timedelta(minutes=2)
    stolen = svc.sign_in_password(DOC, PASSWORD, now=when, address=ATTACKER)
    assert isinstance(stolen, SecondFactorRequired)
    for i in range(10):
        with pytest.raises((InvalidCode, Throttled)):
            svc.complete_sign_in_totp(stolen.ticket, f"{i:06d}", now=when, address=ATTACKER)
        when += timedelta(seconds=25)
    with pytest.raises(Locked):
        svc.sign_in_password(DOC, PASSWORD, now=when, address=ATTACKER)
    pending = svc.sign_in_password(DOC, PASSWORD, now=when, address=HOME, device_cookie=cookie)
    assert isinstance(pending, SecondFactorRequired)
    code = totp_code(secret, time_step(when))
    signed = svc.complete_sign_in_totp(
        pending.ticket, code, now=when, address=HOME, device_cookie=cookie
    )
    assert isinstance(signed, SignedIn) and signed.device_cookie
    with pytest.raises(Locked):
        svc.sign_in_password(DOC, PASSWORD, now=when, address=ATTACKER)


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
