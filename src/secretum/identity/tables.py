"""Tables of the identity context (main database, migration branch ``identity``).

Nothing here is readable personal data: names, e-mails, RPPS numbers, credential names and TOTP
secrets are sealed with the account's own data key; e-mails are found by blind index; session
ids, invitation and set-up tokens, ceremony ids, device ids and recovery codes are stored as
hashes only, so a copy of the database gives no live secret.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from secretum.storage.db import metadata


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always gives back an aware UTC datetime (SQLite
    stores none of the zone) and only accepts aware ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise ValueError("identity times must be timezone-aware datetimes")
        when = value.astimezone(UTC)
        return when.replace(tzinfo=None) if dialect.name == "sqlite" else when

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        when: datetime = value
        if when.tzinfo is None:
            return when.replace(tzinfo=UTC)
        return when.astimezone(UTC)


def _time(name: str, nullable: bool = False) -> Column[datetime]:
    return Column(name, UtcDateTime(), nullable=nullable)


accounts = Table(
    "identity_accounts",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    #: BlindIndex("email", e-mail)
    Column("email_index", LargeBinary(32), nullable=False, unique=True),
    #: WebAuthn user handle (random, no personal data)
    Column("user_handle", LargeBinary(32), nullable=False, unique=True),
    #: sealed JSON {display_name, email, rpps}
    Column("personal", LargeBinary, nullable=False),
    Column("specialty", String(64), nullable=True),
    Column("password_hash", String(255), nullable=True),
    _time("created_at"),
    _time("updated_at"),
    _time("last_sign_in_at", nullable=True),
    #: tag of the row (secretum.storage.integrity): missing or wrong means tampered
    Column("row_mac", LargeBinary(32), nullable=True),
)

#: One-time tokens: first-admin set-up, invitations, self-registration confirmations.
tokens = Table(
    "identity_tokens",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("user_id", String(64), nullable=True, index=True),
    Column("created_by", String(64), nullable=True),
    _time("created_at"),
    _time("expires_at"),
    _time("used_at", nullable=True),
)

#: Short-lived server-side state of a ceremony: WebAuthn challenges, pending sign-ins.
ceremonies = Table(
    "identity_ceremonies",
    metadata,
    Column("ceremony_hash", LargeBinary(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("user_id", String(64), nullable=True),
    Column("challenge", LargeBinary(64), nullable=True),
    _time("expires_at"),
)

webauthn_credentials = Table(
    "identity_webauthn_credentials",
    metadata,
    #: SHA-256 (hex) of the credential id
    Column("credential_ref", String(64), primary_key=True),
    Column("credential_id", LargeBinary(1023), nullable=False),
    Column("user_id", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    #: sealed name the user gave it
    Column("name", LargeBinary, nullable=False),
    #: COSE public key
    Column("public_key", LargeBinary, nullable=False),
    Column("sign_count", BigInteger, nullable=False),
    Column("aaguid", String(36), nullable=False),
    Column("backed_up", Boolean, nullable=False),
    _time("created_at"),
    _time("last_used_at", nullable=True),
    _time("blocked_at", nullable=True),
)

totp_secrets = Table(
    "identity_totp",
    metadata,
    Column("user_id", String(64), primary_key=True),
    #: sealed base32 secret in use (None until a first confirmation)
    Column("secret", LargeBinary, nullable=True),
    _time("confirmed_at", nullable=True),
    #: last RFC 6238 time step accepted: a code of this step or an earlier one is refused
    Column("last_step", BigInteger, nullable=True),
    #: sealed secret being set up, waiting for its first code
    Column("pending", LargeBinary, nullable=True),
    _time("pending_at", nullable=True),
)

recovery_codes = Table(
    "identity_recovery_codes",
    metadata,
    Column("user_id", String(64), nullable=False),
    #: HMAC-SHA256(salt, normalised code)
    Column("code_hash", LargeBinary(32), nullable=False),
    Column("salt", LargeBinary(16), nullable=False),
    _time("created_at"),
    _time("used_at", nullable=True),
    PrimaryKeyConstraint("user_id", "code_hash"),
)

sessions = Table(
    "identity_sessions",
    metadata,
    #: SHA-256 (hex) of the session id: the id itself is never stored
    Column("ref", String(64), primary_key=True),
    Column("user_id", String(64), nullable=False, index=True),
    Column("role", String(16), nullable=False),
    Column("specialty", String(64), nullable=True),
    _time("created_at"),
    _time("auth_at"),
    _time("last_seen_at"),
    _time("strong_auth_at", nullable=True),
    Column("csrf_token", String(64), nullable=False),
    Column("device_ref", String(64), nullable=True),
    Column("enrolment_only", Boolean, nullable=False),
)

#: Devices (SHA-256 of the device id cookie) a user signed in from: a new one gets a notice.
devices = Table(
    "identity_devices",
    metadata,
    Column("user_id", String(64), nullable=False),
    Column("device_ref", String(64), nullable=False),
    _time("first_seen_at"),
    _time("last_seen_at"),
    PrimaryKeyConstraint("user_id", "device_ref"),
)

#: Brute-force counters of the database rate limiter (one row per account or address key).
rate_limits = Table(
    "identity_rate_limits",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("failures", Integer, nullable=False),
    _time("last_failure_at", nullable=True),
    _time("locked_until", nullable=True),
)
