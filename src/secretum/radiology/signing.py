"""The WebAuthn side of report signing (W3C WebAuthn Level 2 §7.2, through py_webauthn).

The signer's credentials are the identity context's (passkeys and security keys); this context
reaches them through the :class:`SignerKeys` port (wired in :mod:`secretum.services`). The
relying party is the platform's (:class:`RelyingParty`: RP id and allowed origins).

:func:`check_signature` is the verification of a stored signature, used right after signing and
whenever it is verified later (``secretum report verify``): every check is made and named, so a
failure says which one.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.engine import Connection
from webauthn import (
    generate_authentication_options,
    options_to_json,
    verify_authentication_response,
)
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorAssertionResponse,
    PublicKeyCredentialDescriptor,
    UserVerificationRequirement,
)

from secretum.radiology.canonical import StoredSignature


@dataclass(frozen=True)
class RelyingParty:
    rp_id: str
    origins: tuple[str, ...]
    timeout_ms: int = 120_000


@dataclass(frozen=True)
class SignerKey:
    """A registered WebAuthn credential of a practitioner (COSE public key)."""

    credential_id: bytes
    user_id: str
    public_key: bytes
    sign_count: int
    blocked: bool


class SignerKeys(Protocol):
    """The signers' credentials (the identity context's WebAuthn credentials)."""

    def keys_of(self, user_id: str) -> list[SignerKey]: ...

    def key(self, credential_id: bytes) -> SignerKey | None: ...

    def record_use(self, conn: Connection, key: SignerKey, sign_count: int, now: datetime) -> bool:
        """Store the new counter in the caller's transaction (False if it moved meanwhile)."""
        ...


def signing_options(rp: RelyingParty, challenge: bytes, keys: list[SignerKey]) -> str:
    """``PublicKeyCredentialRequestOptions`` (JSON) for ``navigator.credentials.get``: the
    challenge is the content hash, only the signer's credentials, user verification required."""
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=challenge,
        timeout=rp.timeout_ms,
        allow_credentials=[
            PublicKeyCredentialDescriptor(id=k.credential_id) for k in keys if not k.blocked
        ],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options_to_json(options)


@dataclass(frozen=True)
class SignatureCheck:
    """Each check of a stored signature (True: passed)."""

    content_matches: bool  # the report's canonical hash is the signed contentSha256
    challenge_matches: bool  # clientDataJSON.challenge is that hash, type webauthn.get
    origin_ok: bool  # clientDataJSON.origin is one of the platform's origins
    rp_ok: bool  # authenticatorData.rpIdHash is SHA-256 of the platform's RP id
    credential_known: bool  # the credential is registered to the signer
    signature_valid: bool  # the assertion verifies with the credential's public key (UV set)
    version_matches: bool  # the signed-version extension is this version

    @property
    def valid(self) -> bool:
        return all(vars(self).values())

    def failures(self) -> list[str]:
        return [name for name, ok in vars(self).items() if not ok]


def _b64url(data: bytes) -> str:
    return bytes_to_base64url(data)


def credential_json(sig: StoredSignature) -> AuthenticationCredential:
    return AuthenticationCredential(
        id=_b64url(sig.credential_id),
        raw_id=sig.credential_id,
        response=AuthenticatorAssertionResponse(
            client_data_json=sig.client_data_json,
            authenticator_data=sig.authenticator_data,
            signature=sig.signature,
            user_handle=sig.user_handle,
        ),
    )


def check_signature(
    rp: RelyingParty,
    sig: StoredSignature,
    *,
    content_sha256: bytes,
    key: SignerKey | None,
    version_matches: bool,
) -> tuple[SignatureCheck, int | None]:
    """Verify ``sig`` (see :class:`SignatureCheck`); also the authenticator's new counter."""
    try:
        client = json.loads(sig.client_data_json)
    except ValueError:
        client = {}
    if not isinstance(client, dict):
        client = {}
    expected = _b64url(content_sha256)
    challenge_ok = client.get("type") == "webauthn.get" and client.get("challenge") == expected
    origin_ok = client.get("origin") in rp.origins and sig.origin == client.get("origin")
    rp_hash = hashlib.sha256(rp.rp_id.encode()).digest()
    rp_ok = sig.authenticator_data[:32] == rp_hash and sig.rp_id == rp.rp_id
    known = (
        key is not None and key.user_id == sig.signer_id and key.credential_id == sig.credential_id
    )
    valid, count = False, None
    if key is not None:
        try:
            verified = verify_authentication_response(
                credential=credential_json(sig),
                expected_challenge=content_sha256,
                expected_rp_id=rp.rp_id,
                expected_origin=list(rp.origins),
                credential_public_key=key.public_key,
                credential_current_sign_count=0,
                require_user_verification=True,
            )
            valid, count = True, verified.new_sign_count
        except (WebAuthnException, ValueError, KeyError, TypeError):
            valid = False
    check = SignatureCheck(
        content_matches=sig.content_sha256 == content_sha256,
        challenge_matches=challenge_ok,
        origin_ok=origin_ok,
        rp_ok=rp_ok,
        credential_known=known,
        signature_valid=valid,
        version_matches=version_matches,
    )
    return check, count


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
