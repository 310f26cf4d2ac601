"""WebAuthn steps shared by sign-in, second factor and step-up: start a ceremony (challenge
stored server-side, keyed by a random ceremony id, expiring), spend it (single use, committed
even when the response is then refused), verify an assertion against the stored credential.
"""

from __future__ import annotations

from datetime import datetime

from webauthn.helpers.structs import AuthenticationCredential, UserVerificationRequirement

from secretum.identity import webauthn as wa
from secretum.identity.accounts import AccountRow
from secretum.identity.errors import (
    ChallengeExpired,
    CredentialBlocked,
    IdentityError,
    UnknownCredential,
)
from secretum.identity.factor_store import StoredCredential
from secretum.identity.service_base import IdentityCore, WebAuthnStart, _CounterRegressed


class Ceremonies:
    """The WebAuthn steps of sign-in, second factor and step-up (see the module docstring)."""

    def __init__(self, core: IdentityCore) -> None:
        self.core = core

    def start(
        self, kind: str, user_id: str | None, now: datetime, uv: UserVerificationRequirement
    ) -> WebAuthnStart:
        challenge = self.core.rng(wa.CHALLENGE_BYTES)
        ceremony_id = self.core.token()
        with self.core.write() as conn:
            allow = (
                []
                if user_id is None
                else [
                    c.credential_id
                    for c in self.core.factors.credentials_of(conn, user_id)
                    if c.blocked_at is None
                ]
            )
            self.core.factors.open_ceremony(
                conn,
                ceremony_id,
                kind=kind,
                user_id=user_id,
                challenge=challenge,
                expires_at=now + self.core.webauthn.challenge_ttl,
            )
        options = wa.authentication_options(
            self.core.webauthn, challenge=challenge, allow=allow, user_verification=uv
        )
        return WebAuthnStart(ceremony_id, options)

    def take_challenge(
        self, ceremony_id: str, kind: str, now: datetime, user_id: str | None
    ) -> bytes:
        """Spend the ceremony's challenge (committed at once: a failed try spends it too)."""
        with self.core.write() as conn:
            ceremony = self.core.factors.take_ceremony(conn, ceremony_id, kind, now)
        if ceremony is None or ceremony.challenge is None or ceremony.user_id != user_id:
            raise ChallengeExpired("the WebAuthn challenge is unknown, used or expired")
        return ceremony.challenge

    def verify(
        self,
        credential: wa.CredentialJSON | AuthenticationCredential,
        challenge: bytes,
        row: AccountRow,
        *,
        require_uv: bool,
    ) -> tuple[StoredCredential, wa.Assertion]:
        parsed = (
            credential
            if isinstance(credential, AuthenticationCredential)
            else wa.parse_assertion(credential)
        )
        with self.core.read() as conn:
            cred = self.core.factors.credential(conn, wa.credential_ref(parsed.raw_id))
        if cred is None or cred.user_id != row.user_id:
            raise UnknownCredential()
        if cred.blocked_at is not None:
            raise CredentialBlocked("this credential is blocked")
        assertion = wa.verify_assertion(
            self.core.webauthn,
            credential=parsed,
            challenge=challenge,
            public_key=cred.public_key,
            stored_sign_count=cred.sign_count,
            require_user_verification=require_uv,
        )
        if assertion.counter_regressed:
            raise _CounterRegressed(cred)
        return cred, assertion

    @staticmethod
    def credential_resource(credential: object) -> tuple[str, str] | None:
        try:
            parsed = wa.parse_assertion(credential)  # type: ignore[arg-type]
        except IdentityError:
            return None
        return ("Credential", wa.credential_ref(parsed.raw_id))
