"""WebAuthn with a software authenticator: passkeys (passwordless, UV required), security
keys (second factor), step-up; origin, RP id, challenge, counter and UV checks.
On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from webauthn.helpers import base64url_to_bytes

from identity_authenticator import (
    ORIGIN,
    PASSWORD,
    IdentityRig,
    SoftAuthenticator,
    at,
    audit_rows,
    b64,
    bootstrap_admin,
    invite_user,
    make_identity,
)
from secretum.access.model import Role
from secretum.identity.errors import (
    ChallengeExpired,
    CredentialBlocked,
    NotFound,
    StepUpRequired,
    UnknownCredential,
    UserVerificationRequired,
    WebAuthnRefused,
)
from secretum.identity.model import CredentialKind
from secretum.identity.service_signin import SecondFactorRequired, SignedIn
from secretum.notices.store import NoticeKind, list_notices

T0 = at("2030-03-01T09:00:00")
PATIENT = "patient@example.org"
DOC = "doc@example.org"


@pytest.fixture
def rig(engine: Engine, vault_engine: Engine) -> IdentityRig:
    return make_identity(engine, vault_engine, origins=(ORIGIN, "https://app.secretum.test"))


@pytest.fixture
def patient(rig: IdentityRig) -> tuple[str, str]:
    """(user id, session id) of a patient signed in with a password (no factor yet)."""
    admin = bootstrap_admin(rig.service, T0)
    user_id = invite_user(rig.service, admin.session_id, PATIENT, Role.PATIENT, T0)
    signed = rig.service.sign_in.sign_in_password(PATIENT, PASSWORD, now=T0)
    assert isinstance(signed, SignedIn) and not signed.session.enrolment_only
    return user_id, signed.session_id


def _register(
    rig: IdentityRig, session_id: str, auth: SoftAuthenticator, kind=CredentialKind.PASSKEY, **kw
):  # type: ignore[no-untyped-def]
    start = rig.service.factors.begin_credential_registration(session_id, kind, now=T0)
    return rig.service.factors.complete_credential_registration(
        session_id,
        start.ceremony_id,
        auth.create(start.options_json, **kw),
        name="My phone",
        now=T0,
    )


def _first_passkey(rig: IdentityRig, session_id: str, auth: SoftAuthenticator) -> str:
    """Register a first passkey; the id of the (rotated) session."""
    enrolled = _register(rig, session_id, auth)
    assert enrolled.session is not None
    return enrolled.session.session_id


def _passkey_sign_in(rig: IdentityRig, auth: SoftAuthenticator, when=T0, **kw) -> SignedIn:  # type: ignore[no-untyped-def]
    start = rig.service.sign_in.begin_passkey_sign_in(now=when)
    return rig.service.sign_in.complete_passkey_sign_in(
        start.ceremony_id, auth.get(start.options_json, **kw), now=when
    )


def test_passkey_registration_then_passwordless_sign_in(
    rig: IdentityRig, patient: tuple[str, str]
) -> None:
    user_id, session_id = patient
    start = rig.service.factors.begin_credential_registration(
        session_id, CredentialKind.PASSKEY, now=T0
    )
    options = json.loads(start.options_json)
    assert options["rp"]["id"] == "secretum.test"
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert user_id not in start.options_json  # the user handle is random, not the id
    auth = SoftAuthenticator()
    enrolled = rig.service.factors.complete_credential_registration(
        session_id, start.ceremony_id, auth.create(start.options_json), name="  My   phone ", now=T0
    )
    assert enrolled.credential is not None and enrolled.credential.name == "My phone"
    assert enrolled.recovery_codes is not None and len(enrolled.recovery_codes) == 10
    assert enrolled.session is not None
    session_id = enrolled.session.session_id
    listed = rig.service.factors.list_credentials(session_id, now=T0)
    assert [(c.kind, c.name) for c in listed] == [(CredentialKind.PASSKEY, "My phone")]

    sign_in = rig.service.sign_in.begin_passkey_sign_in(now=T0)
    request = json.loads(sign_in.options_json)
    assert request["allowCredentials"] == [] and request["userVerification"] == "required"
    signed = rig.service.sign_in.complete_passkey_sign_in(
        sign_in.ceremony_id, auth.get(sign_in.options_json), now=T0, device_id="dev-1"
    )
    assert signed.session.user_id == user_id and signed.session.strong_auth_at == T0
    last = audit_rows(rig.engine)[-1]
    assert (last["subtype"], last["outcome"], last["resource_type"]) == ("110122", 0, "Credential")
    assert last["resource_id"] == enrolled.credential.ref


def test_several_named_credentials_renamed_and_revoked(
    rig: IdentityRig, patient: tuple[str, str]
) -> None:
    _, session_id = patient
    phone, key = SoftAuthenticator(), SoftAuthenticator()
    first = _register(rig, session_id, phone)
    assert first.session is not None  # the first factor makes the session strong (rotated)
    assert rig.service.sessions.resolve(session_id, now=T0) is None
    session_id = first.session.session_id
    second = _register(rig, session_id, key, CredentialKind.SECURITY_KEY)
    assert second.recovery_codes is None  # only the first factor brings codes
    assert first.credential and second.credential
    rig.service.factors.rename_credential(session_id, second.credential.ref, "Blue key", now=T0)
    names = {c.name for c in rig.service.factors.list_credentials(session_id, now=T0)}
    assert names == {"My phone", "Blue key"}
    later = T0 + timedelta(minutes=6)
    with pytest.raises(StepUpRequired):  # revoking is sensitive
        rig.service.factors.revoke_credential(session_id, first.credential.ref, now=later)
    rig.service.factors.revoke_credential(session_id, first.credential.ref, now=T0)
    with pytest.raises(NotFound):
        rig.service.factors.revoke_credential(session_id, first.credential.ref, now=T0)
    with pytest.raises(UnknownCredential):  # a revoked passkey no longer signs in
        _passkey_sign_in(rig, phone)


def test_assertion_for_another_origin_is_refused(
    rig: IdentityRig, patient: tuple[str, str]
) -> None:
    auth = SoftAuthenticator()
    _register(rig, patient[1], auth)
    with pytest.raises(WebAuthnRefused) as refused:
        _passkey_sign_in(rig, auth, origin="https://evil.example")
    assert refused.value.code == "webauthn-refused" and "origin" in str(refused.value)
    # every configured origin is accepted
    assert (
        _passkey_sign_in(rig, auth, origin="https://app.secretum.test").session.user_id
        == patient[0]
    )


def test_registration_for_another_origin_or_rp_is_refused(
    rig: IdentityRig, patient: tuple[str, str]
) -> None:
    with pytest.raises(WebAuthnRefused):
        _register(rig, patient[1], SoftAuthenticator(), origin="https://evil.example")
    with pytest.raises(WebAuthnRefused):
        _register(rig, patient[1], SoftAuthenticator(), rp_id="evil.example")
    assert rig.service.factors.list_credentials(patient[1], now=T0) == []


def test_assertion_for_another_rp_id_is_refused(rig: IdentityRig, patient: tuple[str, str]) -> None:
    auth = SoftAuthenticator()
    _register(rig, patient[1], auth)
    with pytest.raises(WebAuthnRefused) as refused:
        _passkey_sign_in(rig, auth, rp_id="evil.example")
    assert "RP ID" in str(refused.value)


def test_challenges_are_single_use_and_expire(rig: IdentityRig, patient: tuple[str, str]) -> None:
    auth = SoftAuthenticator()
    _register(rig, patient[1], auth)
    start = rig.service.sign_in.begin_passkey_sign_in(now=T0)
    assertion = auth.get(start.options_json)
    rig.service.sign_in.complete_passkey_sign_in(start.ceremony_id, assertion, now=T0)
    with pytest.raises(ChallengeExpired):  # replaying the same ceremony and assertion
        rig.service.sign_in.complete_passkey_sign_in(start.ceremony_id, assertion, now=T0)
    other = rig.service.sign_in.begin_passkey_sign_in(now=T0)
    with pytest.raises(WebAuthnRefused):  # an assertion of another challenge
        rig.service.sign_in.complete_passkey_sign_in(
            other.ceremony_id, auth.get(start.options_json), now=T0
        )
    late = rig.service.sign_in.begin_passkey_sign_in(now=T0)
    with pytest.raises(ChallengeExpired):
        rig.service.sign_in.complete_passkey_sign_in(
            late.ceremony_id, auth.get(late.options_json), now=T0 + timedelta(minutes=5)
        )
    failed = rig.service.sign_in.begin_passkey_sign_in(
        now=T0
    )  # a failed try spends the challenge too
    with pytest.raises(WebAuthnRefused):
        rig.service.sign_in.complete_passkey_sign_in(
            failed.ceremony_id, auth.get(failed.options_json, origin="https://evil.example"), now=T0
        )
    with pytest.raises(ChallengeExpired):
        rig.service.sign_in.complete_passkey_sign_in(
            failed.ceremony_id, auth.get(failed.options_json), now=T0
        )


def test_counter_going_backwards_blocks_the_credential(
    rig: IdentityRig, patient: tuple[str, str]
) -> None:
    user_id, session_id = patient
    auth = SoftAuthenticator()
    enrolled = _register(rig, session_id, auth)
    assert enrolled.credential is not None and enrolled.session is not None
    ref, session_id = enrolled.credential.ref, enrolled.session.session_id
    _passkey_sign_in(rig, auth, sign_count=5)
    with pytest.raises(CredentialBlocked) as blocked:
        _passkey_sign_in(rig, auth, sign_count=3)  # a clone lagging behind
    assert blocked.value.code == "credential-blocked"
    alert = audit_rows(rig.engine)[-1]
    assert (alert["event_type"], alert["subtype"], alert["outcome"]) == ("110113", "110137", 8)
    assert (alert["resource_type"], alert["resource_id"], alert["actor_id"]) == (
        "Credential",
        ref,
        user_id,
    )
    with rig.engine.connect() as conn:
        notices = list_notices(conn, user_id)
    blocked_notices = [n for n in notices if n.kind is NoticeKind.CREDENTIAL_BLOCKED]
    assert len(blocked_notices) == 1 and blocked_notices[0].params == {"credential": ref}
    [listed] = rig.service.factors.list_credentials(session_id, now=T0)
    assert listed.blocked_at == T0
    with pytest.raises(CredentialBlocked):  # even a "good" counter now
        _passkey_sign_in(rig, auth, sign_count=100)


def test_forged_low_counter_does_not_block(rig: IdentityRig, patient: tuple[str, str]) -> None:
    auth = SoftAuthenticator()
    _register(rig, patient[1], auth)
    _passkey_sign_in(rig, auth, sign_count=5)
    start = rig.service.sign_in.begin_passkey_sign_in(now=T0)
    forged = auth.get(start.options_json, sign_count=1)
    signature = bytearray(base64url_to_bytes(forged["response"]["signature"]))
    signature[-1] ^= 1
    forged["response"]["signature"] = b64(bytes(signature))
    with pytest.raises(WebAuthnRefused):
        rig.service.sign_in.complete_passkey_sign_in(start.ceremony_id, forged, now=T0)
    assert _passkey_sign_in(rig, auth, sign_count=6).session.user_id == patient[0]


def test_authenticators_without_a_counter_keep_working(
    rig: IdentityRig, patient: tuple[str, str]
) -> None:
    auth = SoftAuthenticator()
    _register(rig, patient[1], auth)
    _passkey_sign_in(rig, auth, sign_count=0)
    assert _passkey_sign_in(rig, auth, sign_count=0).session.user_id == patient[0]


def test_unregistered_credential_is_refused(rig: IdentityRig, patient: tuple[str, str]) -> None:
    session_id = _first_passkey(rig, patient[1], SoftAuthenticator())
    stranger = SoftAuthenticator()
    stranger.create(
        rig.service.factors.begin_credential_registration(
            session_id, CredentialKind.PASSKEY, now=T0
        ).options_json
    )
    with pytest.raises(UnknownCredential) as refused:
        _passkey_sign_in(rig, stranger)
    assert refused.value.code == "unknown-credential"


def test_passkey_sign_in_without_user_verification_is_refused(
    rig: IdentityRig, patient: tuple[str, str]
) -> None:
    with pytest.raises(UserVerificationRequired):  # a passkey is not registered without UV
        _register(rig, patient[1], SoftAuthenticator(), user_verified=False)
    auth = SoftAuthenticator()
    _register(rig, patient[1], auth)
    with pytest.raises(UserVerificationRequired) as refused:
        _passkey_sign_in(rig, auth, user_verified=False)
    assert refused.value.code == "user-verification-required"


def test_user_handle_must_match(rig: IdentityRig, patient: tuple[str, str]) -> None:
    auth = SoftAuthenticator()
    _register(rig, patient[1], auth)
    with pytest.raises(WebAuthnRefused):
        _passkey_sign_in(rig, auth, user_handle=b"someone else's handle")


def test_security_key_as_second_factor_for_a_practitioner(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    invite_user(
        svc, admin.session_id, DOC, Role.PRACTITIONER, T0, specialty="radiology", rpps="10000000009"
    )
    enrolment = svc.sign_in.sign_in_password(DOC, PASSWORD, now=T0)
    assert isinstance(enrolment, SignedIn) and enrolment.session.enrolment_only
    key = SoftAuthenticator()
    start = svc.factors.begin_credential_registration(
        enrolment.session_id, CredentialKind.SECURITY_KEY, now=T0
    )
    options = json.loads(start.options_json)
    assert options["authenticatorSelection"]["userVerification"] == "discouraged"
    enrolled = svc.factors.complete_credential_registration(
        enrolment.session_id,
        start.ceremony_id,
        key.create(start.options_json, user_verified=False),
        name="YubiKey",
        now=T0,
    )
    assert enrolled.session is not None and not enrolled.session.session.enrolment_only
    assert svc.sessions.resolve(enrolment.session_id, now=T0) is None  # rotated
    when = T0 + timedelta(minutes=1)
    pending = svc.sign_in.sign_in_password(DOC, PASSWORD, now=when)
    assert isinstance(pending, SecondFactorRequired)
    assert pending.methods == ("security-key", "recovery-code")
    second = svc.sign_in.second_factor_options(pending.ticket, now=when)
    allowed = json.loads(second.options_json)["allowCredentials"]
    assert [base64url_to_bytes(c["id"]) for c in allowed] == list(key.credentials)
    signed = svc.sign_in.complete_sign_in_security_key(
        pending.ticket,
        second.ceremony_id,
        key.get(second.options_json, user_verified=False),
        now=when,
    )
    assert signed.session.strong_auth_at == when and signed.session.specialty == "radiology"
    with pytest.raises(WebAuthnRefused):  # a security key is not a passkey
        _passkey_sign_in(rig, key, when, user_verified=True)
    stranger = SoftAuthenticator()
    stranger.create(start.options_json)
    again = svc.sign_in.sign_in_password(DOC, PASSWORD, now=when)
    assert isinstance(again, SecondFactorRequired)
    options2 = svc.sign_in.second_factor_options(again.ticket, now=when)
    with pytest.raises(UnknownCredential):
        svc.sign_in.complete_sign_in_security_key(
            again.ticket,
            options2.ceremony_id,
            stranger.get(options2.options_json, credential_id=next(iter(stranger.credentials))),
            now=when,
        )


def test_webauthn_step_up_needs_user_verification(
    rig: IdentityRig, patient: tuple[str, str]
) -> None:
    _, session_id = patient
    auth = SoftAuthenticator()
    session_id = _first_passkey(rig, session_id, auth)
    later = T0 + timedelta(minutes=10)
    with pytest.raises(StepUpRequired):
        rig.service.factors.generate_recovery_codes(session_id, now=later)
    start = rig.service.step_up.begin_step_up(session_id, now=later)
    assert json.loads(start.options_json)["userVerification"] == "required"
    with pytest.raises(UserVerificationRequired):
        rig.service.step_up.complete_step_up_webauthn(
            session_id,
            start.ceremony_id,
            auth.get(start.options_json, user_verified=False),
            now=later,
        )
    start = rig.service.step_up.begin_step_up(session_id, now=later)
    stepped = rig.service.step_up.complete_step_up_webauthn(
        session_id, start.ceremony_id, auth.get(start.options_json), now=later
    )
    assert stepped.session.strong_auth_at == later and stepped.session_id != session_id
    assert len(rig.service.factors.generate_recovery_codes(stepped.session_id, now=later)) == 10
