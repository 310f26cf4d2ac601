"""Second factors that are plain computations: TOTP (RFC 6238) and recovery codes.

TOTP: HMAC-SHA1, 6 digits, 30-second steps (what every authenticator app reads from the QR
code), a 160-bit random secret (RFC 4226 §4 recommends 160 bits). A code is accepted for the
current step and one step either side (±30 s of clock drift); :func:`match_step` says which
step matched, and the store accepts a step only if it is later than the last one used, so each
code works once and an older code can never follow a newer one.

Recovery codes: 80 random bits each, shown once as ``XXXX-XXXX-XXXX-XXXX`` (base32), stored as
HMAC-SHA256 under a random per-user salt: at 80 bits an offline search of a leaked hash is out
of reach, so a slow hash is not needed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime

import pyotp

TOTP_PERIOD = 30
TOTP_DIGITS = 6
TOTP_SECRET_BYTES = 20
RECOVERY_CODE_BYTES = 10
RECOVERY_SALT_BYTES = 16

Rng = Callable[[int], bytes]


def new_totp_secret(rng: Rng) -> str:
    """A fresh base32 TOTP secret (160 bits)."""
    return base64.b32encode(rng(TOTP_SECRET_BYTES)).decode("ascii")


def provisioning_uri(secret: str, account_name: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from a QR code."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
        name=account_name, issuer_name=issuer
    )


def time_step(now: datetime) -> int:
    """RFC 6238 time step T = floor(unix time / 30)."""
    return int(now.timestamp()) // TOTP_PERIOD


def totp_code(secret: str, step: int) -> str:
    """The code of ``secret`` at time step ``step``."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).generate_otp(step)


def match_step(secret: str, code: str, now: datetime, window: int = 1) -> int | None:
    """The time step (within ±``window`` of now) whose code is ``code``, else None.

    Every candidate is compared in constant time, so timing does not tell which step matched.
    """
    code = "".join(code.split())
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    current = time_step(now)
    found = None
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(totp_code(secret, step), code):
            found = step
    return found


def new_recovery_codes(rng: Rng, count: int = 10) -> list[str]:
    """``count`` fresh recovery codes, formatted for reading."""
    codes = []
    for _ in range(count):
        raw = base64.b32encode(rng(RECOVERY_CODE_BYTES)).decode("ascii")
        codes.append("-".join(raw[i : i + 4] for i in range(0, len(raw), 4)))
    return codes


def normalise_recovery_code(code: str) -> str:
    """Upper case, without spaces and dashes (people type them every which way)."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


def recovery_hash(salt: bytes, code: str) -> bytes:
    """HMAC-SHA256 of the normalised code under the user's salt."""
    return hmac.new(
        salt, normalise_recovery_code(code).encode("ascii", "replace"), hashlib.sha256
    ).digest()
