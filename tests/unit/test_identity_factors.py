"""TOTP matching (±1 step), recovery codes, RPPS numbers, MFA and step-up rules."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from secretum.access.model import Actor, Role
from secretum.identity.errors import InvalidInput, MfaEnrolmentRequired
from secretum.identity.factors import (
    match_step,
    new_recovery_codes,
    new_totp_secret,
    normalise_recovery_code,
    provisioning_uri,
    recovery_hash,
    time_step,
    totp_code,
)
from secretum.identity.model import (
    IdentitySettings,
    Session,
    luhn_ok,
    mfa_required,
    requires_step_up,
    validate_email,
    validate_rpps,
)

NOW = datetime(2030, 3, 1, 10, 0, 15, tzinfo=UTC)
SECRET = new_totp_secret(os.urandom)


def test_totp_secret_is_160_bits_and_matches_pyotp() -> None:
    assert len(SECRET) == 32  # base32 of 20 bytes
    assert totp_code(SECRET, time_step(NOW)) == pyotp.TOTP(SECRET).at(NOW)


def test_totp_current_code_matches_its_step() -> None:
    step = time_step(NOW)
    assert match_step(SECRET, pyotp.TOTP(SECRET).at(NOW), NOW) == step


@pytest.mark.parametrize("offset", [-1, 1])
def test_totp_one_step_either_side_is_accepted(offset: int) -> None:
    step = time_step(NOW) + offset
    assert match_step(SECRET, totp_code(SECRET, step), NOW) == step


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_totp_outside_the_window_is_refused(offset: int) -> None:
    code = totp_code(SECRET, time_step(NOW) + offset)
    # unless it happens to equal a code inside the window (1 in 10^6 per step)
    inside = {totp_code(SECRET, time_step(NOW) + d) for d in (-1, 0, 1)}
    if code not in inside:
        assert match_step(SECRET, code, NOW) is None


def test_totp_wrong_or_malformed_code_is_refused() -> None:
    inside = {totp_code(SECRET, time_step(NOW) + d) for d in (-1, 0, 1)}
    wrong = next(c for c in ("000000", "111111", "222222") if c not in inside)
    assert match_step(SECRET, wrong, NOW) is None
    assert match_step(SECRET, "12345", NOW) is None
    assert match_step(SECRET, "abcdef", NOW) is None
    code = totp_code(SECRET, time_step(NOW))
    assert match_step(SECRET, f"{code[:3]} {code[3:]}", NOW) == time_step(NOW)


def test_provisioning_uri_is_an_otpauth_uri() -> None:
    uri = provisioning_uri(SECRET, "alice@example.org", "Secretum")
    assert uri.startswith("otpauth://totp/Secretum:alice%40example.org?secret=" + SECRET)
    assert "issuer=Secretum" in uri


def test_recovery_codes_are_ten_distinct_80_bit_codes() -> None:
    codes = new_recovery_codes(os.urandom, 10)
    assert len(set(codes)) == 10
    for code in codes:
        assert len(normalise_recovery_code(code)) == 16  # 16 base32 chars = 80 bits
        assert code.count("-") == 3


def test_recovery_hash_is_salted_and_forgiving_on_format() -> None:
    code = new_recovery_codes(os.urandom, 1)[0]
    salt = os.urandom(16)
    assert recovery_hash(salt, code) == recovery_hash(salt, code.lower().replace("-", " "))
    assert recovery_hash(salt, code) != recovery_hash(os.urandom(16), code)


def test_luhn() -> None:
    assert luhn_ok("79927398713")
    assert not luhn_ok("79927398710")


def test_rpps_numbers() -> None:
    assert validate_rpps("1000 0000 009") == "10000000009"
    for bad in ("10000000008", "1000000000", "100000000091", "1000000000A"):
        with pytest.raises(InvalidInput) as refused:
            validate_rpps(bad)
        assert refused.value.field == "rpps" and refused.value.code == "invalid-input"


def test_email_shape() -> None:
    assert validate_email(" alice@example.org ") == "alice@example.org"
    for bad in ("alice", "alice@", "a b@example.org", "@example.org"):
        with pytest.raises(InvalidInput):
            validate_email(bad)


def test_mfa_is_required_for_staff_and_for_patients_by_setting() -> None:
    default = IdentitySettings()
    assert mfa_required(Role.PRACTITIONER, default)
    assert mfa_required(Role.ADMIN, default)
    assert mfa_required(Role.DPO, default)
    assert not mfa_required(Role.PATIENT, default)
    assert mfa_required(Role.PATIENT, IdentitySettings(mfa_required_for_patients=True))


def test_step_up_window_is_five_minutes() -> None:
    def actor(strong: datetime | None) -> Actor:
        return Actor("u1", Role.PRACTITIONER, strong_auth_at=strong)

    assert requires_step_up(actor(None), NOW)
    assert not requires_step_up(actor(NOW - timedelta(minutes=4, seconds=59)), NOW)
    assert not requires_step_up(actor(NOW - timedelta(minutes=5)), NOW)
    assert requires_step_up(actor(NOW - timedelta(minutes=5, seconds=1)), NOW)
    assert requires_step_up(actor(NOW + timedelta(minutes=2)), NOW)  # from the future


def test_enrolment_only_session_gives_no_actor() -> None:
    session = Session("r", "u1", Role.ADMIN, NOW, NOW, NOW, None, "csrf", enrolment_only=True)
    with pytest.raises(MfaEnrolmentRequired):
        session.to_actor()
    full = Session("r", "u1", Role.PRACTITIONER, NOW, NOW, NOW, NOW, "csrf", specialty="radiology")
    assert full.to_actor() == Actor("u1", Role.PRACTITIONER, NOW, "radiology")
