"""WebAuthn ceremonies (W3C Web Authentication Level 2) on top of py_webauthn.

Two uses of a credential:

* **passkey**: discoverable (resident key required) and user verification REQUIRED, so one
  gesture proves possession and the PIN or biometrics: a passwordless sign-in, and MFA by itself;
* **security key**: second factor after a password (user verification discouraged by default).

The relying party id and the allowed origins come from :class:`WebAuthnConfig`; py_webauthn
checks the client data's origin (§7.1 step 9, §7.2 step 13) and the RP id hash (§7.1 step 13,
§7.2 step 15). Two checks are done here rather than by the library, *after* the signature is
verified, so that a forged response can neither block a credential nor be told apart:

* user verification (§7.2 step 17) → :class:`UserVerificationRequired`;
* the signature counter (§7.2 step 21): a new count that is not greater than the stored one,
  when either is non-zero, means a cloned authenticator → the caller blocks the credential.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import parse_authentication_credential_json
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidJSONStructure,
    InvalidRegistrationResponse,
    WebAuthnException,
)
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn.registration.verify_registration_response import VerifiedRegistration

from secretum.identity.errors import UserVerificationRequired, WebAuthnRefused
from secretum.identity.model import CredentialKind

CHALLENGE_BYTES = 32
CredentialJSON = str | dict[str, Any]


@dataclass(frozen=True)
class WebAuthnConfig:
    """The relying party: ``rp_id`` is the registrable domain (e.g. ``secretum.example.org``);
    ``origins`` the exact origins the browser may report (e.g. ``https://secretum.example.org``).
    """

    rp_id: str
    rp_name: str
    origins: tuple[str, ...]
    challenge_ttl: timedelta = timedelta(minutes=5)
    timeout_ms: int = 120_000
    security_key_user_verification: UserVerificationRequirement = (
        UserVerificationRequirement.DISCOURAGED
    )

    def __post_init__(self) -> None:
        if not self.rp_id or not self.origins:
            raise ValueError("WebAuthn needs an RP id and at least one allowed origin")
        if isinstance(self.origins, str):
            raise TypeError("origins is a tuple of origins, not one string")


def credential_ref(credential_id: bytes) -> str:
    """SHA-256 (hex) of a credential id: its key in the store and in the audit."""
    return hashlib.sha256(credential_id).hexdigest()


def registration_options(
    config: WebAuthnConfig,
    *,
    kind: CredentialKind,
    challenge: bytes,
    user_handle: bytes,
    user_name: str,
    display_name: str,
    exclude: Sequence[bytes] = (),
) -> str:
    """``PublicKeyCredentialCreationOptions`` as JSON for ``navigator.credentials.create``."""
    if kind is CredentialKind.PASSKEY:
        selection = AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
    else:
        selection = AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=config.security_key_user_verification,
        )
    options = generate_registration_options(
        rp_id=config.rp_id,
        rp_name=config.rp_name,
        user_id=user_handle,
        user_name=user_name,
        user_display_name=display_name,
        challenge=challenge,
        timeout=config.timeout_ms,
        authenticator_selection=selection,
        exclude_credentials=[PublicKeyCredentialDescriptor(id=cid) for cid in exclude],
    )
    return options_to_json(options)


def verify_registration(
    config: WebAuthnConfig, *, kind: CredentialKind, credential: CredentialJSON, challenge: bytes
) -> VerifiedRegistration:
    """Check a ``navigator.credentials.create`` response (§7.1); passkeys need UV."""
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=config.rp_id,
            expected_origin=list(config.origins),
            require_user_verification=False,
        )
    except (InvalidRegistrationResponse, InvalidJSONStructure, WebAuthnException) as exc:
        raise WebAuthnRefused(f"registration refused: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise WebAuthnRefused(f"registration malformed: {type(exc).__name__}") from None
    if kind is CredentialKind.PASSKEY and not verified.user_verified:
        raise UserVerificationRequired("a passkey must verify the user")
    return verified


def authentication_options(
    config: WebAuthnConfig,
    *,
    challenge: bytes,
    allow: Sequence[bytes],
    user_verification: UserVerificationRequirement,
) -> str:
    """``PublicKeyCredentialRequestOptions`` as JSON for ``navigator.credentials.get``; an
    empty ``allow`` asks for a discoverable credential (passkey sign-in)."""
    options = generate_authentication_options(
        rp_id=config.rp_id,
        challenge=challenge,
        timeout=config.timeout_ms,
        allow_credentials=[PublicKeyCredentialDescriptor(id=cid) for cid in allow],
        user_verification=user_verification,
    )
    return options_to_json(options)


def parse_assertion(credential: CredentialJSON) -> AuthenticationCredential:
    """Parse a ``navigator.credentials.get`` response (to find the credential first)."""
    try:
        if isinstance(credential, str):
            credential = json.loads(credential)
        return parse_authentication_credential_json(credential)
    except (WebAuthnException, ValueError, TypeError) as exc:
        raise WebAuthnRefused(f"assertion malformed: {type(exc).__name__}") from None


@dataclass(frozen=True)
class Assertion:
    """A verified assertion: the counter verdict is for the caller to act on."""

    new_sign_count: int
    user_verified: bool
    counter_regressed: bool
    backed_up: bool


def verify_assertion(
    config: WebAuthnConfig,
    *,
    credential: AuthenticationCredential,
    challenge: bytes,
    public_key: bytes,
    stored_sign_count: int,
    require_user_verification: bool,
) -> Assertion:
    """Check a ``navigator.credentials.get`` response (§7.2) against a stored credential."""
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=config.rp_id,
            expected_origin=list(config.origins),
            credential_public_key=public_key,
            credential_current_sign_count=0,  # compared below, after the signature
            require_user_verification=False,
        )
    except (InvalidAuthenticationResponse, WebAuthnException) as exc:
        raise WebAuthnRefused(f"assertion refused: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise WebAuthnRefused(f"assertion malformed: {type(exc).__name__}") from None
    if require_user_verification and not verified.user_verified:
        raise UserVerificationRequired("this sign-in needs user verification (PIN, biometrics)")
    new = verified.new_sign_count
    regressed = (new > 0 or stored_sign_count > 0) and new <= stored_sign_count
    return Assertion(new, verified.user_verified, regressed, verified.credential_backed_up)
