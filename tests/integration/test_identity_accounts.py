"""Accounts: first-admin set-up, invitations, self-registration, sealed personal data,
administration, one audit entry per call. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from identity_authenticator import (
    ADMIN_EMAIL,
    PASSWORD,
    IdentityRig,
    at,
    audit_rows,
    bootstrap_admin,
    enrol_totp,
    make_identity,
)
from secretum.access.model import Role
from secretum.identity.errors import (
    AccountInactive,
    EmailUnavailable,
    Forbidden,
    InvalidInput,
    InvitationExpired,
    InvitationUsed,
    MfaEnrolmentRequired,
    RegistrationClosed,
    SessionExpired,
    SetupClosed,
    StepUpRequired,
    TokenInvalid,
    TokenUsed,
    WeakPassword,
)
from secretum.identity.factors import time_step, totp_code
from secretum.identity.model import AccountStatus, IdentitySettings
from secretum.identity.passwords import FAST_ARGON2
from secretum.identity.service_signin import SecondFactorRequired, SignedIn

T0 = at("2030-03-01T09:00:00")
RPPS = "10000000009"
DOC_EMAIL = "dr.house@example.org"


@pytest.fixture
def rig(engine: Engine, vault_engine: Engine) -> IdentityRig:
    return make_identity(engine, vault_engine)


def test_setup_token_is_single_use_and_closed_once_an_admin_exists(rig: IdentityRig) -> None:
    svc = rig.service
    token = svc.accounts.create_setup_token(None, T0)
    with pytest.raises(WeakPassword):  # a refused attempt does not spend the token
        svc.accounts.complete_setup(
            token, email=ADMIN_EMAIL, display_name="Ada", password="admin", now=T0
        )
    user_id = svc.accounts.complete_setup(
        token, email=ADMIN_EMAIL, display_name="Ada Admin", password=PASSWORD, now=T0
    )
    assert re.fullmatch(r"[0-9a-f]{32}", user_id)
    with pytest.raises(SetupClosed) as again:
        svc.accounts.complete_setup(
            token, email="b@example.org", display_name="B", password=PASSWORD, now=T0
        )
    assert again.value.code == "setup-closed"
    with pytest.raises(SetupClosed):
        svc.accounts.create_setup_token(None, T0)
    with rig.engine.connect() as conn, pytest.raises(SetupClosed):
        svc.accounts.create_setup_token(conn, T0)


def test_setup_tokens_expire_and_a_new_one_retires_the_old(rig: IdentityRig) -> None:
    svc = rig.service
    old = svc.accounts.create_setup_token(None, T0)
    new = svc.accounts.create_setup_token(None, T0)
    with pytest.raises(TokenUsed):
        svc.accounts.complete_setup(
            old, email=ADMIN_EMAIL, display_name="A", password=PASSWORD, now=T0
        )
    with pytest.raises(TokenInvalid) as expired:
        svc.accounts.complete_setup(
            new, email=ADMIN_EMAIL, display_name="A", password=PASSWORD, now=T0 + timedelta(days=2)
        )
    assert expired.value.code == "token-expired"
    with pytest.raises(TokenInvalid) as unknown:
        svc.accounts.complete_setup(
            "nope", email=ADMIN_EMAIL, display_name="A", password=PASSWORD, now=T0
        )
    assert unknown.value.code == "token-invalid"


def _invite_doctor(rig: IdentityRig, admin_session: str, now=T0):  # type: ignore[no-untyped-def]
    return rig.service.accounts.invite(
        admin_session,
        email=DOC_EMAIL,
        role=Role.PRACTITIONER,
        display_name="Gregory House",
        specialty="general-practice",
        rpps=RPPS,
        now=now,
    )


def test_invitation_accepted_once_then_practitioner_must_enrol(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    invitation = _invite_doctor(rig, admin.session_id)
    assert invitation.token and invitation.expires_at == T0 + timedelta(days=7)
    with pytest.raises(WeakPassword) as weak:
        svc.accounts.accept_invitation(invitation.token, password="gregoryhouse", now=T0)
    assert weak.value.feedback
    user_id = svc.accounts.accept_invitation(invitation.token, password=PASSWORD, now=T0)
    assert user_id == invitation.user_id
    with pytest.raises(InvitationUsed) as used:
        svc.accounts.accept_invitation(invitation.token, password=PASSWORD, now=T0)
    assert used.value.code == "invitation-used"
    signed = svc.sign_in.sign_in_password(
        DOC_EMAIL.upper(), PASSWORD, now=T0
    )  # blind index normalises
    assert isinstance(signed, SignedIn) and signed.session.enrolment_only
    assert signed.session.specialty == "general-practice"
    profile = svc.accounts.get_profile(signed.session_id, now=T0)
    assert profile.personal.rpps == RPPS and profile.personal.email == DOC_EMAIL


def test_expired_invitation_is_refused_and_can_be_renewed(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    invitation = _invite_doctor(rig, admin.session_id)
    assert invitation.token and invitation.user_id
    later = T0 + timedelta(days=7)
    with pytest.raises(InvitationExpired) as expired:
        svc.accounts.accept_invitation(invitation.token, password=PASSWORD, now=later)
    assert expired.value.code == "invitation-expired"
    with pytest.raises(TokenInvalid):
        svc.accounts.accept_invitation("made-up-token", password=PASSWORD, now=T0)
    assert svc.sessions.resolve(admin.session_id, now=later) is None  # a week later: signed out
    pending = svc.sign_in.sign_in_password(ADMIN_EMAIL, PASSWORD, now=later)
    assert isinstance(pending, SecondFactorRequired) and "totp" in pending.methods
    code = totp_code(admin.totp_secret or "", time_step(later))
    again = svc.sign_in.complete_sign_in_totp(pending.ticket, code, now=later)
    renewed = svc.accounts.reinvite(again.session_id, invitation.user_id, now=later)
    assert renewed.token
    assert (
        svc.accounts.accept_invitation(renewed.token, password=PASSWORD, now=later)
        == invitation.user_id
    )


def test_invitation_input_is_validated(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    with pytest.raises(InvalidInput) as bad_rpps:
        svc.accounts.invite(
            admin.session_id,
            email=DOC_EMAIL,
            role=Role.PRACTITIONER,
            display_name="G",
            specialty="radiology",
            rpps="10000000008",
            now=T0,
        )
    assert bad_rpps.value.field == "rpps"
    with pytest.raises(InvalidInput):
        svc.accounts.invite(
            admin.session_id, email=DOC_EMAIL, role=Role.PRACTITIONER, display_name="G", now=T0
        )
    with pytest.raises(InvalidInput):
        svc.accounts.invite(
            admin.session_id,
            email="p@example.org",
            role=Role.PATIENT,
            display_name="P",
            specialty="radiology",
            now=T0,
        )
    with pytest.raises(EmailUnavailable):
        svc.accounts.invite(
            admin.session_id, email=ADMIN_EMAIL, role=Role.DPO, display_name="D", now=T0
        )


def test_personal_data_is_sealed_and_found_by_blind_index(rig: IdentityRig) -> None:
    admin = bootstrap_admin(rig.service, T0)
    _invite_doctor(rig, admin.session_id)
    with rig.engine.connect() as conn:
        dump = repr(conn.execute(text("SELECT * FROM identity_accounts")).all())
        tokens = repr(conn.execute(text("SELECT * FROM identity_tokens")).all())
    for clear in (DOC_EMAIL, "Gregory", "House", RPPS, ADMIN_EMAIL, "Ada"):
        assert clear not in dump
        assert clear.encode().hex() not in dump
    assert "invitation" in tokens


def test_only_admins_with_a_fresh_factor_invite(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    later = T0 + timedelta(minutes=6)
    with pytest.raises(StepUpRequired) as stale:
        _invite_doctor(rig, admin.session_id, later)
    assert stale.value.code == "step-up-required"
    fresh = svc.step_up.step_up_totp(
        admin.session_id, totp_code(admin.totp_secret or "", time_step(later)), now=later
    )
    assert (
        svc.sessions.resolve(admin.session_id, now=later) is None
    )  # rotated at the privilege change
    invitation = _invite_doctor(rig, fresh.session_id, later)
    assert invitation.token
    svc.accounts.accept_invitation(invitation.token, password=PASSWORD, now=later)
    doctor = svc.sign_in.sign_in_password(DOC_EMAIL, PASSWORD, now=later)
    assert isinstance(doctor, SignedIn)
    with pytest.raises(MfaEnrolmentRequired):  # enrolment-only session: no actor yet
        svc.admin.list_accounts(doctor.session_id, now=later, role=None)
    enrolled = enrol_totp(svc, doctor.session_id, later)
    with pytest.raises(Forbidden) as forbidden:
        svc.admin.list_accounts(enrolled.session_id, now=later, role=None)
    assert forbidden.value.code == "forbidden"
    with pytest.raises(SessionExpired):
        _invite_doctor(rig, "no-such-session", later)


def test_self_registration_is_a_setting(engine: Engine, vault_engine: Engine) -> None:
    closed = make_identity(engine, vault_engine).service
    with pytest.raises(RegistrationClosed) as refused:
        closed.accounts.register_patient(email="pat@example.org", display_name="Pat", now=T0)
    assert refused.value.code == "registration-closed"
    settings = IdentitySettings(argon2=FAST_ARGON2, allow_patient_self_registration=True)
    svc = make_identity(engine, vault_engine, settings=settings).service
    registration = svc.accounts.register_patient(
        email="pat@example.org", display_name="Pat Doe", now=T0
    )
    assert registration.token and registration.user_id
    again = svc.accounts.register_patient(email="PAT@example.org", display_name="Other", now=T0)
    assert again.token is None and again.user_id is None  # no second account, no leak
    patient_id = svc.accounts.accept_invitation(registration.token, password=PASSWORD, now=T0)
    signed = svc.sign_in.sign_in_password("pat@example.org", PASSWORD, now=T0)
    assert isinstance(signed, SignedIn)
    assert not signed.session.enrolment_only  # patients: MFA optional by default
    actor = svc.sessions.actor(signed.session_id, now=T0)
    assert actor is not None and actor.role is Role.PATIENT and actor.user_id == patient_id


def test_locking_an_account_ends_its_sessions(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    invitation = _invite_doctor(rig, admin.session_id)
    assert invitation.token and invitation.user_id
    svc.accounts.accept_invitation(invitation.token, password=PASSWORD, now=T0)
    doctor = svc.sign_in.sign_in_password(DOC_EMAIL, PASSWORD, now=T0)
    assert isinstance(doctor, SignedIn)
    svc.admin.set_account_status(admin.session_id, invitation.user_id, AccountStatus.LOCKED, now=T0)
    assert svc.sessions.resolve(doctor.session_id, now=T0) is None
    with pytest.raises(AccountInactive):
        svc.sign_in.sign_in_password(DOC_EMAIL, PASSWORD, now=T0)
    with pytest.raises(Forbidden):
        svc.admin.set_account_status(
            admin.session_id, admin.user_id, AccountStatus.DISABLED, now=T0
        )
    svc.admin.set_account_status(admin.session_id, invitation.user_id, AccountStatus.ACTIVE, now=T0)
    assert isinstance(svc.sign_in.sign_in_password(DOC_EMAIL, PASSWORD, now=T0), SignedIn)
    accounts = svc.admin.list_accounts(admin.session_id, now=T0, role=Role.PRACTITIONER)
    assert [a.user_id for a in accounts] == [invitation.user_id]


def test_each_call_writes_one_audit_entry_with_ids_only(rig: IdentityRig) -> None:
    svc = rig.service
    token = svc.accounts.create_setup_token(None, T0)
    assert [(r["event_type"], r["subtype"]) for r in audit_rows(rig.engine)] == [
        ("110113", "110129")
    ]
    with pytest.raises(WeakPassword):
        svc.accounts.complete_setup(
            token, email=ADMIN_EMAIL, display_name="A", password="x", now=T0
        )
    rows = audit_rows(rig.engine)
    assert len(rows) == 2 and rows[-1]["outcome"] == 4
    admin_id = svc.accounts.complete_setup(
        token, email=ADMIN_EMAIL, display_name="Ada", password=PASSWORD, now=T0
    )
    rows = audit_rows(rig.engine)
    assert len(rows) == 3
    last = rows[-1]
    assert (last["event_type"], last["subtype"], last["action"], last["outcome"]) == (
        "110113",
        "110136",
        "C",
        0,
    )
    assert last["actor_id"] == admin_id and last["resource_id"] == admin_id
    signed = svc.sign_in.sign_in_password(ADMIN_EMAIL, PASSWORD, now=T0, address="203.0.113.9")
    assert isinstance(signed, SignedIn)
    rows = audit_rows(rig.engine)
    assert len(rows) == 4
    assert (rows[-1]["event_type"], rows[-1]["subtype"], rows[-1]["source_address"]) == (
        "110114",
        "110122",
        "203.0.113.9",
    )
    assert ADMIN_EMAIL not in repr(rows)
    svc.sessions.sign_out(signed.session_id, now=T0)
    rows = audit_rows(rig.engine)
    assert len(rows) == 5 and rows[-1]["subtype"] == "110123"


def test_administrators_read_staff_profiles_but_never_a_patients(rig: IdentityRig) -> None:
    svc = rig.service
    admin = bootstrap_admin(svc, T0)
    doctor = _invite_doctor(rig, admin.session_id)
    patient = svc.accounts.invite(
        admin.session_id,
        email="patient@example.org",
        role=Role.PATIENT,
        display_name="Paula Patient",
        now=T0,
    )
    assert doctor.user_id and patient.user_id
    staff = svc.accounts.get_profile(admin.session_id, now=T0, user_id=doctor.user_id)
    assert staff.personal.email == DOC_EMAIL
    before = len(audit_rows(rig.engine))
    with pytest.raises(Forbidden):
        svc.accounts.get_profile(admin.session_id, now=T0, user_id=patient.user_id)
    [refused] = audit_rows(rig.engine)[before:]  # the refused attempt is audited, ids only
    assert (refused["outcome"], refused["actor_id"]) == (4, admin.user_id)
    assert refused["resource_id"] == patient.user_id
