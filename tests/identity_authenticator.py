"""A software WebAuthn authenticator (and a test-sized Identity), for tests.

:class:`SoftAuthenticator` plays the browser and the authenticator of W3C WebAuthn Level 2: it
reads the JSON options the server produced, and answers ``navigator.credentials.create`` with
a "none" attestation (§8.7) and ``navigator.credentials.get`` with an assertion signed by an
EC P-256 key (ES256). Every field a test may want to get wrong can be overridden: the origin,
the RP id (its hash in authenticatorData), the challenge, the flags (UP, UV) and the signature
counter.

authenticatorData (§6.1)::

    rpIdHash (32) | flags (1) | signCount (4, big-endian) | [attestedCredentialData]
    attestedCredentialData = aaguid (16) | credentialIdLength (2) | credentialId | COSE key
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from sqlalchemy.engine import Engine
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, encode_cbor

from secretum.access.model import Role
from secretum.audit.log import AuditLog
from secretum.crypto.blind_index import BlindIndex
from secretum.crypto.kms.fake import FakeKMS
from secretum.identity.factors import time_step, totp_code
from secretum.identity.model import IdentitySettings
from secretum.identity.passwords import FAST_ARGON2
from secretum.identity.ratelimit import MemoryRateLimiter, RateLimiter
from secretum.identity.service import Identity
from secretum.identity.service_signin import SignedIn
from secretum.identity.sessions import DbSessionStore, SessionStore
from secretum.identity.webauthn import WebAuthnConfig
from secretum.keys.keyring import KeyRing

RP_ID = "secretum.test"
ORIGIN = "https://secretum.test"

UP = 0x01
UV = 0x04
BE = 0x08
BS = 0x10
AT = 0x40
AAGUID = bytes(range(16))


def b64(data: bytes) -> str:
    return bytes_to_base64url(data)


@dataclass
class SoftCredential:
    credential_id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0


def cose_key(public: ec.EllipticCurvePublicKey) -> bytes:
    """COSE_Key of an EC2 P-256 key for ES256 (RFC 9053 §7.1.1)."""
    numbers = public.public_numbers()
    return encode_cbor(
        {
            1: 2,  # kty: EC2
            3: -7,  # alg: ES256
            -1: 1,  # crv: P-256
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
    )


def client_data(kind: str, challenge: bytes, origin: str) -> bytes:
    return json.dumps(
        {"type": kind, "challenge": b64(challenge), "origin": origin, "crossOrigin": False},
        separators=(",", ":"),
    ).encode()


@dataclass
class SoftAuthenticator:
    """Holds credentials; ``create`` and ``get`` take the server's options JSON."""

    origin: str = ORIGIN
    credentials: dict[bytes, SoftCredential] = field(default_factory=dict)

    def create(
        self,
        options_json: str,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: bytes | None = None,
        user_verified: bool = True,
        backed_up: bool = False,
    ) -> dict[str, Any]:
        """Answer ``navigator.credentials.create(options)`` with a new credential."""
        options = json.loads(options_json)
        rp = rp_id or options["rp"]["id"]
        credential_id = os.urandom(32)
        key = ec.generate_private_key(ec.SECP256R1())
        user_handle = base64url_to_bytes(options["user"]["id"])
        self.credentials[credential_id] = SoftCredential(credential_id, key, rp, user_handle)
        flags = UP | AT | (UV if user_verified else 0) | ((BE | BS) if backed_up else 0)
        attested = (
            AAGUID
            + struct.pack(">H", len(credential_id))
            + credential_id
            + cose_key(key.public_key())
        )
        auth_data = hashlib.sha256(rp.encode()).digest() + bytes([flags]) + struct.pack(">I", 0)
        attestation = encode_cbor({"fmt": "none", "attStmt": {}, "authData": auth_data + attested})
        data = client_data(
            "webauthn.create",
            challenge or base64url_to_bytes(options["challenge"]),
            origin or self.origin,
        )
        return {
            "id": b64(credential_id),
            "rawId": b64(credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(data),
                "attestationObject": b64(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
        }

    def get(
        self,
        options_json: str,
        *,
        credential_id: bytes | None = None,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: bytes | None = None,
        user_verified: bool = True,
        user_present: bool = True,
        sign_count: int | None = None,
        user_handle: bytes | None = None,
    ) -> dict[str, Any]:
        """Answer ``navigator.credentials.get(options)``: with the allowed credential, or
        (discoverable sign-in) with ``credential_id`` or the only one for the RP."""
        options = json.loads(options_json)
        rp = rp_id or options["rpId"]
        cred = self._pick(options, credential_id)
        if sign_count is None:
            cred.sign_count += 1
            sign_count = cred.sign_count
        flags = (UP if user_present else 0) | (UV if user_verified else 0)
        auth_data = (
            hashlib.sha256(rp.encode()).digest() + bytes([flags]) + struct.pack(">I", sign_count)
        )
        data = client_data(
            "webauthn.get",
            challenge or base64url_to_bytes(options["challenge"]),
            origin or self.origin,
        )
        signature = cred.key.sign(
            auth_data + hashlib.sha256(data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64(cred.credential_id),
            "rawId": b64(cred.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(data),
                "authenticatorData": b64(auth_data),
                "signature": b64(signature),
                "userHandle": b64(user_handle or cred.user_handle),
            },
            "clientExtensionResults": {},
        }

    def _pick(self, options: dict[str, Any], credential_id: bytes | None) -> SoftCredential:
        if credential_id is not None:
            return self.credentials[credential_id]
        allowed = [base64url_to_bytes(c["id"]) for c in options.get("allowCredentials", [])]
        mine = [
            c
            for c in self.credentials.values()
            if (c.credential_id in allowed if allowed else True)
        ]
        if not mine:
            raise LookupError("no credential of this authenticator is allowed")
        return mine[0]


# -- a test-sized Identity -----------------------------------------------------------


@dataclass
class IdentityRig:
    """An :class:`Identity` with its parts, wired for tests (cheap Argon2)."""

    service: Identity
    engine: Engine
    keyring: KeyRing
    blind_index: BlindIndex
    audit: AuditLog
    sessions: SessionStore
    limiter: RateLimiter


def make_identity(
    engine: Engine,
    vault_engine: Engine,
    *,
    settings: IdentitySettings | None = None,
    sessions: SessionStore | None = None,
    limiter: RateLimiter | None = None,
    origins: tuple[str, ...] = (ORIGIN,),
) -> IdentityRig:
    """Keyring on the vault, audit log, DB session store and in-memory limiter by default."""
    keyring = KeyRing(vault_engine, FakeKMS())
    blind_index = BlindIndex(os.urandom(32))
    audit = AuditLog(engine)
    sessions = sessions or DbSessionStore(engine)
    limiter = limiter or MemoryRateLimiter()
    service = Identity.build(
        engine,
        keyring=keyring,
        blind_index=blind_index,
        audit=audit,
        sessions=sessions,
        rate_limiter=limiter,
        webauthn=WebAuthnConfig(RP_ID, "Secretum test", origins),
        settings=settings or IdentitySettings(argon2=FAST_ARGON2),
    )
    return IdentityRig(service, engine, keyring, blind_index, audit, sessions, limiter)


def audit_rows(engine: Engine) -> list[dict[str, Any]]:
    """The audit entries, oldest first (event type, subtype, action, outcome, actor...)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT seq, event_type, subtype, action, outcome, actor_id, actor_role,"
                " resource_type, resource_id, source_address FROM audit_entries ORDER BY seq"
            )
        ).mappings()
        return [dict(r) for r in rows]


def at(text: str) -> datetime:
    """A UTC time from ``"2030-01-01T10:00:00"``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


ADMIN_EMAIL = "admin@secretum.test"
PASSWORD = "violet tractor mumbles under seven lanterns"


@dataclass
class SignedInUser:
    """A signed-in account as tests use it (secrets included: tests only)."""

    user_id: str
    session_id: str
    totp_secret: str | None
    recovery_codes: list[str] | None


def enrol_totp(service: Identity, session_id: str, now: datetime) -> SignedInUser:
    """Set up TOTP in a session (enrolment or fresh), confirming with the current code."""
    setup = service.factors.begin_totp_setup(session_id, now=now)
    enrolled = service.factors.confirm_totp(
        session_id, totp_code(setup.secret, time_step(now)), now=now
    )
    session_id = enrolled.session.session_id if enrolled.session else session_id
    session = service.sessions.resolve(session_id, now=now)
    assert session is not None
    return SignedInUser(session.user_id, session_id, setup.secret, enrolled.recovery_codes)


def bootstrap_admin(service: Identity, now: datetime) -> SignedInUser:
    """First administrator through the set-up token, signed in with TOTP enrolled."""
    token = service.accounts.create_setup_token(None, now)
    service.accounts.complete_setup(
        token, email=ADMIN_EMAIL, display_name="Ada Admin", password=PASSWORD, now=now
    )
    signed = service.sign_in.sign_in_password(ADMIN_EMAIL, PASSWORD, now=now)
    assert isinstance(signed, SignedIn) and signed.session.enrolment_only
    return enrol_totp(service, signed.session_id, now)


def invite_user(
    service: Identity,
    admin_session: str,
    email: str,
    role: Role,
    now: datetime,
    *,
    specialty: str | None = None,
    rpps: str | None = None,
) -> str:
    """Invite and activate an account (password :data:`PASSWORD`); its user id."""
    invitation = service.accounts.invite(
        admin_session,
        email=email,
        role=role,
        display_name="Test User",
        now=now,
        specialty=specialty,
        rpps=rpps,
    )
    assert invitation.token is not None
    return service.accounts.accept_invitation(invitation.token, password=PASSWORD, now=now)
