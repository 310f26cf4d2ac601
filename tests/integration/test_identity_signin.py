"""Sign-in: password, TOTP (replay, window), recovery codes, brute force, sessions, devices.
On SQLite and PostgreSQL; time is a parameter."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from identity_authenticator import (
    PASSWORD,
    IdentityRig,
    SignedInUser,
    at,
    audit_rows,
    bootstrap_admin,
    enrol_totp,
    invite_user,
    make_identity,
)
from secretum.access.model import Role
from secretum.identity.errors import (
    ChallengeExpired,
    InvalidCode,
    InvalidCredentials,
    Locked,
    SessionExpired,
    StepUpRequired,
    Throttled,
    TotpReplayed,
)
from secretum.identity.factors import time_step, totp_code
from secretum.identity.model import IdentitySettings
from secretum.identity.passwords import FAST_ARGON2, Argon2Params
from secretum.identity.service import Identity
from secretum.identity.service_signin import SecondFactorRequired, SignedIn
from secretum.identity.tables import accounts
from secretum.notices.store import NoticeKind, list_notices

T0 = at("2030-03-01T09:00:00")
STEP = timedelta(seconds=30)
DOC = "doc@example.org"
PATIENT = "patient@example.org"


@pytest.fixture
def rig(engine: Engine, vault_engine: Engine) -> IdentityRig:
    return make_identity(engine, vault_engine)


@pytest.fixture
def doctor(rig: IdentityRig) -> SignedInUser:
    """A practitioner with TOTP enrolled at T0 (step of T0 spent)."""
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    invite_user(
        svc, admin.session_id, DOC, Role.PRACTITIONER, T0, specialty="radiology", rpps="10000000009"
    )
    signed = svc.sign_in.sign_in_password(DOC, PASSWORD, now=T0)
    assert isinstance(signed, SignedIn) and signed.session.enrolment_only
    user = enrol_totp(svc, signed.session_id, T0)
    assert user.recovery_codes is not None and len(user.recovery_codes) == 10
    return user


def _pending(rig: IdentityRig, when, **kw) -> SecondFactorRequired:  # type: ignore[no-untyped-def]
    pending = rig.service.sign_in.sign_in_password(DOC, PASSWORD, now=when, **kw)
    assert isinstance(pending, SecondFactorRequired)
    return pending


def test_unknown_email_and_wrong_password_look_the_same(
    rig: IdentityRig, doctor: SignedInUser
) -> None:
    svc = rig.service
    errors = []
    for email, password in ((DOC, "wrong password here"), ("nobody@example.org", PASSWORD)):
        with pytest.raises(InvalidCredentials) as refused:
            svc.sign_in.sign_in_password(email, password, now=T0)
        errors.append((refused.value.code, str(refused.value)))
    assert errors[0] == errors[1] == ("invalid-credentials", "invalid-credentials")


def test_totp_second_factor_replay_and_window(rig: IdentityRig, doctor: SignedInUser) -> None:
    svc = rig.service
    secret = doctor.totp_secret or ""
    when = T0 + 2 * STEP
    pending = _pending(rig, when)
    assert pending.methods == ("totp", "recovery-code")
    with pytest.raises(InvalidCode) as wrong:
        svc.sign_in.complete_sign_in_totp(
            pending.ticket,
            "000000" if totp_code(secret, time_step(when)) != "000000" else "111111",
            now=when,
        )
    assert wrong.value.code == "invalid-code"
    code = totp_code(secret, time_step(when) - 1)  # one step behind: accepted
    signed = svc.sign_in.complete_sign_in_totp(pending.ticket, code, now=when)
    assert signed.session.strong_auth_at == when and not signed.session.enrolment_only
    with pytest.raises(ChallengeExpired):  # the ticket is spent
        svc.sign_in.complete_sign_in_totp(pending.ticket, code, now=when)
    again = _pending(rig, when)
    with pytest.raises(TotpReplayed) as replay:
        svc.sign_in.complete_sign_in_totp(again.ticket, code, now=when)
    assert replay.value.code == "totp-replayed"
    current = totp_code(secret, time_step(when))
    assert svc.sign_in.complete_sign_in_totp(again.ticket, current, now=when)
    older = _pending(rig, when)
    with pytest.raises(TotpReplayed):  # an older code after a newer one is a replay too
        svc.sign_in.complete_sign_in_totp(older.ticket, code, now=when)
    ahead = totp_code(secret, time_step(when) + 1)  # one step ahead: accepted
    assert (
        svc.sign_in.complete_sign_in_totp(older.ticket, ahead, now=when).session_id
        != signed.session_id
    )
    late = _pending(rig, when)
    with pytest.raises(InvalidCode):  # two steps ahead: outside the window
        svc.sign_in.complete_sign_in_totp(
            late.ticket, totp_code(secret, time_step(when) + 3), now=when
        )


def test_pending_sign_in_expires(rig: IdentityRig, doctor: SignedInUser) -> None:
    pending = _pending(rig, T0 + STEP)
    later = T0 + STEP + timedelta(minutes=5)
    with pytest.raises(ChallengeExpired):
        rig.service.sign_in.complete_sign_in_totp(
            pending.ticket, totp_code(doctor.totp_secret or "", time_step(later)), now=later
        )


def test_recovery_code_works_once(rig: IdentityRig, doctor: SignedInUser) -> None:
    svc = rig.service
    codes = doctor.recovery_codes or []
    pending = _pending(rig, T0 + STEP)
    signed = svc.sign_in.complete_sign_in_recovery_code(
        pending.ticket, codes[0].lower(), now=T0 + STEP
    )
    assert signed.session.strong_auth_at == T0 + STEP
    again = _pending(rig, T0 + STEP)
    with pytest.raises(InvalidCode):
        svc.sign_in.complete_sign_in_recovery_code(again.ticket, codes[0], now=T0 + STEP)
    assert svc.sign_in.complete_sign_in_recovery_code(again.ticket, codes[1], now=T0 + STEP)
    # a new set replaces the old one (step-up: the sign-in above is fresh)
    new_codes = svc.factors.generate_recovery_codes(signed.session_id, now=T0 + STEP)
    assert set(new_codes).isdisjoint(codes)
    third = _pending(rig, T0 + STEP)
    with pytest.raises(InvalidCode):
        svc.sign_in.complete_sign_in_recovery_code(third.ticket, codes[2], now=T0 + STEP)


def test_lockout_after_repeated_failures(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    user_id = invite_user(svc, admin.session_id, PATIENT, Role.PATIENT, T0)
    when = T0
    for attempt in range(1, 11):
        with pytest.raises(InvalidCredentials):
            svc.sign_in.sign_in_password(
                PATIENT, "not the password!", now=when, address="192.0.2.10"
            )
        if attempt == 5:  # progressive delay: the 6th attempt must wait 1 s
            with pytest.raises(Throttled) as throttled:
                svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=when)
            assert throttled.value.code == "throttled"
            assert throttled.value.retry_at == when + timedelta(seconds=1)
        when += timedelta(seconds=60)
    with pytest.raises(Locked) as locked:  # even the right password
        svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=when)
    assert locked.value.code == "locked"
    assert locked.value.retry_at == when - timedelta(seconds=60) + timedelta(minutes=15)
    alerts = [
        r for r in audit_rows(rig.engine) if r["event_type"] == "110113" and r["outcome"] == 8
    ]
    assert len(alerts) == 1 and alerts[0]["resource_id"] == user_id
    with rig.engine.connect() as conn:
        kinds = [n.kind for n in list_notices(conn, user_id)]
    assert kinds == [NoticeKind.ACCOUNT_LOCKED]
    unlocked = when - timedelta(seconds=60) + timedelta(minutes=15)
    assert isinstance(svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=unlocked), SignedIn)


def test_unknown_email_is_locked_like_a_known_one(rig: IdentityRig) -> None:
    when = T0
    for _ in range(10):
        with pytest.raises(InvalidCredentials):
            rig.service.sign_in.sign_in_password("ghost@example.org", PASSWORD, now=when)
        when += timedelta(minutes=1)
    with pytest.raises(Locked):
        rig.service.sign_in.sign_in_password("ghost@example.org", PASSWORD, now=when)


def test_totp_guessing_is_limited_too(rig: IdentityRig, doctor: SignedInUser) -> None:
    when = T0 + STEP
    secret = doctor.totp_secret or ""
    pending = _pending(rig, when)
    for attempt in range(10):
        valid = {totp_code(secret, time_step(when) + d) for d in (-1, 0, 1)}
        wrong = next(c for c in (f"{i:06d}" for i in range(attempt, 99)) if c not in valid)
        with pytest.raises(InvalidCode):
            rig.service.sign_in.complete_sign_in_totp(pending.ticket, wrong, now=when)
        when += timedelta(seconds=20)  # past each progressive delay, within the ticket's life
    with pytest.raises(Locked):
        rig.service.sign_in.complete_sign_in_totp(
            pending.ticket, totp_code(secret, time_step(when)), now=when
        )
    with pytest.raises(Locked):
        rig.service.sign_in.sign_in_password(DOC, PASSWORD, now=when)


def test_session_id_changes_at_sign_in_and_at_step_up(
    rig: IdentityRig, doctor: SignedInUser
) -> None:
    svc = rig.service
    secret = doctor.totp_secret or ""
    when = T0 + STEP
    first = svc.sign_in.complete_sign_in_totp(
        _pending(rig, when).ticket, totp_code(secret, time_step(when)), now=when
    )
    when += STEP
    second = svc.sign_in.complete_sign_in_totp(
        _pending(rig, when).ticket, totp_code(secret, time_step(when)), now=when
    )
    assert first.session_id != second.session_id
    later = when + timedelta(minutes=6)
    actor = svc.sessions.actor(second.session_id, now=later)
    assert actor is not None and actor.specialty == "radiology"
    with pytest.raises(StepUpRequired):
        svc.factors.generate_recovery_codes(second.session_id, now=later)
    stepped = svc.step_up.step_up_totp(
        second.session_id, totp_code(secret, time_step(later)), now=later
    )
    assert stepped.session_id != second.session_id
    assert svc.sessions.resolve(second.session_id, now=later) is None
    assert stepped.session.strong_auth_at == later
    assert stepped.session.csrf_token != second.session.csrf_token
    assert len(svc.factors.generate_recovery_codes(stepped.session_id, now=later)) == 10
    with pytest.raises(TotpReplayed):
        svc.step_up.step_up_totp(stepped.session_id, totp_code(secret, time_step(later)), now=later)


def test_idle_and_absolute_timeouts(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    invite_user(svc, admin.session_id, PATIENT, Role.PATIENT, T0)
    signed = svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0)
    assert isinstance(signed, SignedIn)
    assert svc.sessions.resolve(signed.session_id, now=T0 + timedelta(minutes=14)) is not None
    assert (
        svc.sessions.resolve(signed.session_id, now=T0 + timedelta(minutes=29, seconds=1)) is None
    )
    with pytest.raises(SessionExpired):
        svc.sessions.list_sessions(signed.session_id, now=T0 + timedelta(minutes=30))
    kept = svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0)
    assert isinstance(kept, SignedIn)
    when = T0
    while when < T0 + timedelta(hours=11, minutes=50):
        when += timedelta(minutes=10)
        assert svc.sessions.resolve(kept.session_id, now=when) is not None
    assert svc.sessions.resolve(kept.session_id, now=T0 + timedelta(hours=12)) is None


def test_new_device_gets_a_notice(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    user_id = invite_user(svc, admin.session_id, PATIENT, Role.PATIENT, T0)
    first = svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0)
    assert isinstance(first, SignedIn) and first.new_device and first.device_id
    same = svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0, device_id=first.device_id)
    assert isinstance(same, SignedIn) and not same.new_device
    with rig.engine.connect() as conn:
        assert list_notices(conn, user_id) == []  # first device ever: no alarm
    other = svc.sign_in.sign_in_password(
        PATIENT, PASSWORD, now=T0, device_id="other-device", address="198.51.100.4"
    )
    assert isinstance(other, SignedIn) and other.new_device
    with rig.engine.connect() as conn:
        notices = list_notices(conn, user_id)
    assert [n.kind for n in notices] == [NoticeKind.NEW_DEVICE_SIGN_IN]
    assert notices[0].params["address"] == "198.51.100.4"
    assert "other-device" not in repr(notices[0].params)


def test_sign_out_one_and_everywhere(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    invite_user(svc, admin.session_id, PATIENT, Role.PATIENT, T0)
    a, b, c = (svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0) for _ in range(3))
    assert isinstance(a, SignedIn) and isinstance(b, SignedIn) and isinstance(c, SignedIn)
    assert len(svc.sessions.list_sessions(a.session_id, now=T0)) == 3
    assert svc.sessions.revoke_session(a.session_id, b.session.ref, now=T0)
    assert svc.sessions.resolve(b.session_id, now=T0) is None
    assert svc.sessions.sign_out(c.session_id, now=T0)
    assert not svc.sessions.sign_out(c.session_id, now=T0)
    d = svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0)
    assert isinstance(d, SignedIn)
    assert svc.sessions.sign_out_everywhere(a.session_id, now=T0) == 2
    assert (
        svc.sessions.resolve(d.session_id, now=T0) is None
        and svc.sessions.resolve(a.session_id, now=T0) is None
    )


def test_password_is_rehashed_when_parameters_change(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    user_id = invite_user(svc, admin.session_id, PATIENT, Role.PATIENT, T0)

    def stored() -> str:
        with rig.engine.connect() as conn:
            return conn.execute(
                select(accounts.c.password_hash).where(accounts.c.user_id == user_id)
            ).scalar_one()

    before = stored()
    assert "m=8,t=1,p=1" in before
    stronger = IdentitySettings(argon2=Argon2Params(time_cost=2, memory_cost=64, parallelism=1))
    upgraded = Identity.build(
        rig.engine,
        keyring=rig.keyring,
        blind_index=rig.blind_index,
        audit=rig.audit,
        sessions=rig.sessions,
        rate_limiter=rig.limiter,
        webauthn=svc.core.webauthn,
        settings=stronger,
    )
    assert isinstance(upgraded.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0), SignedIn)
    after = stored()
    assert after != before and "m=64,t=2,p=1" in after
    assert isinstance(upgraded.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0), SignedIn)
    assert FAST_ARGON2.memory_cost == 8


def test_mfa_for_patients_is_a_setting(engine: Engine, vault_engine: Engine) -> None:
    rig = make_identity(
        engine,
        vault_engine,
        settings=IdentitySettings(argon2=FAST_ARGON2, mfa_required_for_patients=True),
    )
    admin = bootstrap_admin(rig.service, T0)
    invite_user(rig.service, admin.session_id, PATIENT, Role.PATIENT, T0)
    signed = rig.service.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0)
    assert isinstance(signed, SignedIn) and signed.session.enrolment_only
