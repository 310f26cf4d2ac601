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

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from identity_authenticator import (
    PASSWORD,
    IdentityRig,
    at,
    bootstrap_admin,
    enrol_totp,
    invite_user,
    make_identity,
)
from secretum.identity.errors import NoSecondFactor
from secretum.identity.service_signin import SecondFactorRequired, SignedIn
from secretum.policy.model import Role

T0 = at("2030-03-01T09:00:00")
PATIENT = "patient@example.org"


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
