"""Hostile tests of the password step-up (issue 9, section 4, item 1).

A patient without a second factor (MFA optional for patients) could never export or erase
their record: signing in again with the password never sets ``strong_auth_at``. They now
step up with the password. The attacker's side: the password step-up must never be a way
around a factor (an account with a factor, one whose factors were removed, one whose role
must have MFA, an enrolment-only session), and guessing the password through it is limited
and audited like any other failed step-up.

On SQLite and PostgreSQL (``engine`` fixture).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from identity_authenticator import (
    PASSWORD,
    IdentityRig,
    SoftAuthenticator,
    at,
    audit_rows,
    bootstrap_admin,
    enrol_totp,
    invite_user,
    make_identity,
)
from secretum.access.model import Role
from secretum.identity.errors import (
    CredentialBlocked,
    InvalidCredentials,
    Locked,
    StepUpRequired,
    Throttled,
)
from secretum.identity.model import CredentialKind, IdentitySettings, requires_step_up
from secretum.identity.passwords import FAST_ARGON2
from secretum.identity.service_signin import SignedIn

T0 = at("2030-03-01T09:00:00")
PATIENT = "patient@example.org"
WRONG = "not the password, again!"


@pytest.fixture
def rig(engine: Engine, vault_engine: Engine) -> IdentityRig:
    return make_identity(engine, vault_engine)


def _patient(rig: IdentityRig) -> SignedIn:
    admin = bootstrap_admin(rig.service, T0)
    invite_user(rig.service, admin.session_id, PATIENT, Role.PATIENT, T0)
    signed = rig.service.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0)
    assert isinstance(signed, SignedIn) and signed.session.strong_auth_at is None
    return signed


def test_a_patient_without_a_factor_steps_up_with_the_password(rig: IdentityRig) -> None:
    """Before the fix no call could make this session strong (the export looped)."""
    signed = _patient(rig)
    assert rig.service.step_up.password_step_up_allowed(signed.session_id, now=T0)
    before = len(audit_rows(rig.engine))
    rotated = rig.service.step_up.step_up_password(signed.session_id, PASSWORD, now=T0)
    assert rotated.session_id != signed.session_id  # a privilege change rotates the id
    assert rig.service.sessions.resolve(signed.session_id, now=T0) is None
    session = rig.service.sessions.resolve(rotated.session_id, now=T0)
    assert session is not None and session.strong_auth_at == T0
    rows = audit_rows(rig.engine)[before:]
    assert [(r["subtype"], r["outcome"]) for r in rows] == [("110122", 0)]  # DICOM Login
    assert rows[0]["actor_id"] == session.user_id


def test_wrong_passwords_are_audited_and_locked_out(rig: IdentityRig) -> None:
    signed = _patient(rig)
    before = len(audit_rows(rig.engine))
    refused = 0
    with pytest.raises((Locked, Throttled)):
        for i in range(30):
            try:
                rig.service.step_up.step_up_password(
                    signed.session_id, WRONG, now=T0 + timedelta(seconds=i)
                )
            except InvalidCredentials:
                refused += 1
    assert 3 <= refused < 30
    failures = [r for r in audit_rows(rig.engine)[before:] if r["outcome"] != 0]
    assert len(failures) >= refused  # every wrong password left an entry
    session = rig.service.sessions.resolve(signed.session_id, now=T0 + timedelta(seconds=31))
    assert session is not None and session.strong_auth_at is None  # never strengthened


def test_an_account_with_a_factor_cannot_use_its_password_instead(rig: IdentityRig) -> None:
    signed = _patient(rig)
    user = enrol_totp(rig.service, signed.session_id, T0)
    later = T0 + timedelta(minutes=10)
    assert not rig.service.step_up.password_step_up_allowed(user.session_id, now=later)
    with pytest.raises(StepUpRequired):
        rig.service.step_up.step_up_password(user.session_id, PASSWORD, now=later)
    session = rig.service.sessions.resolve(user.session_id, now=later)
    assert session is not None and requires_step_up(session.to_actor(), later)
    assert audit_rows(rig.engine)[-1]["outcome"] != 0  # the refused attempt is on record


def test_a_blocked_passkey_is_no_downgrade_to_the_password(rig: IdentityRig) -> None:
    """A cloned passkey gets blocked (counter regression): the account has no usable factor
    left, but it had one; the password must not stand in for it (as at sign-in, which then
    refuses with "mfa-unavailable"). A factor the patient *removed* themselves, after a
    step-up, leaves a password-only account, like one that never had a factor."""
    signed = _patient(rig)
    auth = SoftAuthenticator()
    start = rig.service.factors.begin_credential_registration(
        signed.session_id, CredentialKind.PASSKEY, now=T0
    )
    enrolled = rig.service.factors.complete_credential_registration(
        signed.session_id, start.ceremony_id, auth.create(start.options_json), name="x", now=T0
    )
    assert enrolled.session is not None
    session_id = enrolled.session.session_id
    for count in (5, 3):  # the clone lags behind: the credential is blocked
        begin = rig.service.sign_in.begin_passkey_sign_in(now=T0)
        with contextlib.suppress(CredentialBlocked):
            rig.service.sign_in.complete_passkey_sign_in(
                begin.ceremony_id, auth.get(begin.options_json, sign_count=count), now=T0
            )
    [listed] = rig.service.factors.list_credentials(session_id, now=T0)
    assert listed.blocked_at is not None
    later = T0 + timedelta(minutes=10)
    assert not rig.service.step_up.password_step_up_allowed(session_id, now=later)
    with pytest.raises(StepUpRequired):
        rig.service.step_up.step_up_password(session_id, PASSWORD, now=later)


def test_a_role_that_must_have_mfa_never_steps_up_with_a_password(
    engine: Engine, vault_engine: Engine
) -> None:
    strict = IdentitySettings(argon2=FAST_ARGON2, mfa_required_for_patients=True)
    rig = make_identity(engine, vault_engine, settings=strict)
    admin = bootstrap_admin(rig.service, T0)
    invite_user(rig.service, admin.session_id, PATIENT, Role.PATIENT, T0)
    signed = rig.service.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0)
    assert isinstance(signed, SignedIn) and signed.session.enrolment_only
    with pytest.raises(StepUpRequired):  # would otherwise lift the enrolment-only session
        rig.service.step_up.step_up_password(signed.session_id, PASSWORD, now=T0)
    session = rig.service.sessions.resolve(signed.session_id, now=T0)
    assert session is not None and session.enrolment_only and session.strong_auth_at is None
    with pytest.raises(StepUpRequired):  # an administrator (with TOTP) neither
        rig.service.step_up.step_up_password(admin.session_id, PASSWORD, now=T0)
