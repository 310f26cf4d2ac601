"""MFA life cycle: a blocked or removed factor never silently downgrades a sign-in to the
password alone; administrators reset MFA. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from identity_authenticator import (
    PASSWORD,
    IdentityRig,
    SoftAuthenticator,
    at,
    bootstrap_admin,
    invite_user,
    make_identity,
)
from secretum.access.model import Role
from secretum.identity.errors import CredentialBlocked, InvalidInput, MfaUnavailable
from secretum.identity.model import CredentialKind
from secretum.identity.service_signin import SecondFactorRequired, SignedIn

T0 = at("2030-03-01T09:00:00")
DOC = "doc@example.org"
PATIENT = "patient@example.org"


@pytest.fixture
def rig(engine: Engine, vault_engine: Engine) -> IdentityRig:
    return make_identity(engine, vault_engine)


def _enrol_key(rig: IdentityRig, session_id: str, auth: SoftAuthenticator, kind: CredentialKind):  # type: ignore[no-untyped-def]
    start = rig.service.factors.begin_credential_registration(session_id, kind, now=T0)
    return rig.service.factors.complete_credential_registration(
        session_id, start.ceremony_id, auth.create(start.options_json), name="key", now=T0
    )


def _block(rig: IdentityRig, auth: SoftAuthenticator, email: str) -> None:
    """Make the only credential of ``email`` look cloned (counter backwards)."""
    for count, error in ((5, None), (2, CredentialBlocked)):
        pending = rig.service.sign_in.sign_in_password(email, PASSWORD, now=T0)
        assert isinstance(pending, SecondFactorRequired)
        start = rig.service.sign_in.second_factor_options(pending.ticket, now=T0)
        assertion = auth.get(start.options_json, sign_count=count)
        if error is None:
            rig.service.sign_in.complete_sign_in_security_key(
                pending.ticket, start.ceremony_id, assertion, now=T0
            )
        else:
            with pytest.raises(error):
                rig.service.sign_in.complete_sign_in_security_key(
                    pending.ticket, start.ceremony_id, assertion, now=T0
                )


def test_blocked_factor_leaves_recovery_codes_then_needs_an_admin(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    doc_id = invite_user(
        svc, admin.session_id, DOC, Role.PRACTITIONER, T0, specialty="radiology", rpps="10000000009"
    )
    enrolment = svc.sign_in.sign_in_password(DOC, PASSWORD, now=T0)
    assert isinstance(enrolment, SignedIn)
    key = SoftAuthenticator()
    codes = _enrol_key(rig, enrolment.session_id, key, CredentialKind.SECURITY_KEY).recovery_codes
    assert codes
    _block(rig, key, DOC)
    pending = svc.sign_in.sign_in_password(DOC, PASSWORD, now=T0)
    assert isinstance(pending, SecondFactorRequired) and pending.methods == ("recovery-code",)
    for code in codes:  # use them all up
        pending = svc.sign_in.sign_in_password(DOC, PASSWORD, now=T0)
        assert isinstance(pending, SecondFactorRequired)
        svc.sign_in.complete_sign_in_recovery_code(pending.ticket, code, now=T0)
    with pytest.raises(MfaUnavailable) as refused:  # never the password alone
        svc.sign_in.sign_in_password(DOC, PASSWORD, now=T0)
    assert refused.value.code == "mfa-unavailable"
    svc.admin.reset_mfa(admin.session_id, doc_id, now=T0)
    again = svc.sign_in.sign_in_password(DOC, PASSWORD, now=T0)
    assert isinstance(again, SignedIn) and again.session.enrolment_only


def test_the_last_factor_of_a_practitioner_cannot_be_removed(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    invite_user(
        svc, admin.session_id, DOC, Role.PRACTITIONER, T0, specialty="radiology", rpps="10000000009"
    )
    enrolment = svc.sign_in.sign_in_password(DOC, PASSWORD, now=T0)
    assert isinstance(enrolment, SignedIn)
    enrolled = _enrol_key(
        rig, enrolment.session_id, SoftAuthenticator(), CredentialKind.SECURITY_KEY
    )
    assert enrolled.session and enrolled.credential
    session_id = enrolled.session.session_id
    with pytest.raises(InvalidInput) as refused:
        svc.factors.revoke_credential(session_id, enrolled.credential.ref, now=T0)
    assert refused.value.field == "factor"
    assert len(svc.factors.list_credentials(session_id, now=T0)) == 1
    second = _enrol_key(rig, session_id, SoftAuthenticator(), CredentialKind.SECURITY_KEY)
    assert second.session is None  # not the first factor: the session stays as it is
    svc.factors.revoke_credential(session_id, enrolled.credential.ref, now=T0)


def test_a_patient_may_go_back_to_the_password_alone(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    invite_user(svc, admin.session_id, PATIENT, Role.PATIENT, T0)
    signed = svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0)
    assert isinstance(signed, SignedIn)
    enrolled = _enrol_key(rig, signed.session_id, SoftAuthenticator(), CredentialKind.PASSKEY)
    assert enrolled.session and enrolled.credential
    pending = svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0)
    assert isinstance(pending, SecondFactorRequired)  # an enrolled factor is always asked for
    svc.factors.revoke_credential(enrolled.session.session_id, enrolled.credential.ref, now=T0)
    later = T0 + timedelta(minutes=1)
    assert isinstance(svc.sign_in.sign_in_password(PATIENT, PASSWORD, now=later), SignedIn)
