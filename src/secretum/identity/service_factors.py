"""Second-factor use cases: WebAuthn credentials (register, list, rename, revoke), TOTP
(set up with a QR code, confirm, remove), recovery codes, and step-up.

Managing factors is a sensitive act: it needs a fresh second factor (step-up), except in an
enrolment-only session (MFA required, nothing enrolled yet) and, for an account with no second
factor at all, within the step-up window after the password or passkey was proved. Enrolling
the first factor also issues the recovery codes (shown once) and rotates the session with
``strong_auth_at`` = now (the factor was just proved), which also ends an enrolment-only session.

Audit: ``SECURITY_ALERT`` / 110137 "User Security Attributes Changed" (C/U/D) for changes,
``USER_AUTHENTICATION`` / Login for a step-up; one entry per call, success or failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from secretum.identity import webauthn as wa
from secretum.identity.errors import (
    AuthError,
    ChallengeExpired,
    InvalidCode,
    InvalidInput,
    NoSecondFactor,
    NotFound,
    WebAuthnRefused,
)
from secretum.identity.factors import match_step, new_totp_secret, provisioning_uri
from secretum.identity.model import (
    CredentialInfo,
    CredentialKind,
    NewSession,
    Session,
    mfa_required,
    utc,
)
from secretum.identity.service_base import (
    ATTRS_CHANGED,
    ATTRS_CREATED,
    ATTRS_DELETED,
    IdentityCore,
    WebAuthnStart,
    Who,
)
from secretum.identity.service_webauthn import Ceremonies

MAX_CREDENTIALS = 20
WA_REGISTER = "webauthn-register:"


def _credential_name(name: str) -> str:
    text = " ".join(name.split())
    if not 1 <= len(text) <= 64 or not text.isprintable():
        raise InvalidInput("name", "1 to 64 printable characters")
    return text


@dataclass(frozen=True)
class Enrolled:
    """A factor was enrolled. ``recovery_codes`` (first factor only) must be shown once;
    ``session`` is the rotated session (first factor, or end of an enrolment-only session):
    set its id as the new cookie, the old id is dead."""

    recovery_codes: list[str] | None
    session: NewSession | None
    credential: CredentialInfo | None = None

    def __repr__(self) -> str:
        return f"Enrolled(credential={self.credential!r}, new_session={self.session is not None})"


@dataclass(frozen=True)
class TotpSetup:
    """Show ``uri`` as a QR code (and ``secret`` for manual entry), then confirm a code."""

    secret: str
    uri: str

    def __repr__(self) -> str:
        return "TotpSetup(<secret>)"


class Factors:
    """Second factors of a signed-in user: WebAuthn credentials, TOTP, recovery codes."""

    def __init__(self, core: IdentityCore, ceremonies: Ceremonies) -> None:
        self.core = core
        self.ceremonies = ceremonies

    # -- WebAuthn credentials ---------------------------------------------------------------

    def begin_credential_registration(
        self, session_id: str, kind: CredentialKind, *, now: datetime
    ) -> WebAuthnStart:
        """Creation options for a new passkey or security key of the session's user."""
        now = utc(now)
        _session, row = self.core.fresh_session(session_id, now)
        personal = self.core.accounts.open_personal(row)
        challenge = self.core.rng(wa.CHALLENGE_BYTES)
        ceremony_id = self.core.token()
        with self.core.write() as conn:
            existing = self.core.factors.credentials_of(conn, row.user_id)
            if len(existing) >= MAX_CREDENTIALS:
                raise InvalidInput("credential", f"at most {MAX_CREDENTIALS} credentials")
            self.core.factors.open_ceremony(
                conn,
                ceremony_id,
                kind=WA_REGISTER + str(kind),
                user_id=row.user_id,
                challenge=challenge,
                expires_at=now + self.core.webauthn.challenge_ttl,
            )
        options = wa.registration_options(
            self.core.webauthn,
            kind=kind,
            challenge=challenge,
            user_handle=row.user_handle,
            user_name=personal.email,
            display_name=personal.display_name,
            exclude=[c.credential_id for c in existing],
        )
        return WebAuthnStart(ceremony_id, options)

    def complete_credential_registration(
        self,
        session_id: str,
        ceremony_id: str,
        credential: wa.CredentialJSON,
        *,
        name: str,
        now: datetime,
        address: str | None = None,
    ) -> Enrolled:
        """Verify the new credential's attestation and store it under ``name``. Raises
        ChallengeExpired, WebAuthnRefused, UserVerificationRequired (passkeys), InvalidInput."""
        now = utc(now)
        session, row = self.core.fresh_session(session_id, now)
        with self.core.failures_audited(now, ATTRS_CREATED, Who.of(session), address=address):
            name = _credential_name(name)
            kind, challenge = self._take_registration(ceremony_id, row.user_id, now)
            verified = wa.verify_registration(
                self.core.webauthn, kind=kind, credential=credential, challenge=challenge
            )
            ref = wa.credential_ref(verified.credential_id)
            with self.core.write() as conn:
                if self.core.factors.credential(conn, ref) is not None:
                    raise WebAuthnRefused("this credential is registered already")
                first = not self.core.has_factor(conn, row.user_id)
                self.core.factors.add_credential(
                    conn,
                    ref=ref,
                    credential_id=verified.credential_id,
                    user_id=row.user_id,
                    kind=kind,
                    name=name,
                    public_key=verified.credential_public_key,
                    sign_count=verified.sign_count,
                    aaguid=verified.aaguid,
                    backed_up=verified.credential_backed_up,
                    now=now,
                )
                codes = self._first_codes(conn, row.user_id, now) if first else None
                self.core.record(
                    conn,
                    now,
                    ATTRS_CREATED,
                    Who.of(session),
                    resource=("Credential", ref),
                    address=address,
                )
            info = next(c for c in self.list_credentials(session_id, now=now) if c.ref == ref)
        return Enrolled(codes, self._after_enrolment(session_id, session, now, first), info)

    def _take_registration(
        self, ceremony_id: str, user_id: str, now: datetime
    ) -> tuple[CredentialKind, bytes]:
        for kind in CredentialKind:
            try:
                return kind, self.ceremonies.take_challenge(
                    ceremony_id, WA_REGISTER + str(kind), now, user_id
                )
            except AuthError:
                continue
        raise ChallengeExpired("the registration challenge is unknown, used or expired")

    def _first_codes(self, conn: Connection, user_id: str, now: datetime) -> list[str] | None:
        if self.core.factors.recovery_codes_left(conn, user_id):
            return None
        return self.core.factors.replace_recovery_codes(
            conn, user_id, self.core.rng, now, self.core.settings.recovery_code_count
        )

    def _after_enrolment(
        self, session_id: str, session: Session, now: datetime, first: bool
    ) -> NewSession | None:
        """Enrolling the first factor proved it: the session becomes strong (rotated)."""
        if not (first or session.enrolment_only):
            return None
        return self.core.rotate(session_id, now, strong=True)

    def list_credentials(self, session_id: str, *, now: datetime) -> list[CredentialInfo]:
        """The session user's WebAuthn credentials, oldest first."""
        session = self.core.session(session_id, utc(now))
        with self.core.read() as conn:
            return self.core.factors.list_credentials(conn, session.user_id)

    def rename_credential(
        self, session_id: str, ref: str, name: str, *, now: datetime, address: str | None = None
    ) -> None:
        now = utc(now)
        session = self.core.session(session_id, now)
        who = Who.of(session)
        with self.core.failures_audited(now, ATTRS_CHANGED, who, address=address):
            name = _credential_name(name)
            with self.core.write() as conn:
                if not self.core.factors.rename_credential(conn, session.user_id, ref, name):
                    raise NotFound("no such credential")
                self.core.record(
                    conn, now, ATTRS_CHANGED, who, resource=("Credential", ref), address=address
                )

    def revoke_credential(
        self, session_id: str, ref: str, *, now: datetime, address: str | None = None
    ) -> None:
        """Delete a credential (step-up required)."""
        now = utc(now)
        session = self.core.session(session_id, now)
        who = Who.of(session)
        with self.core.failures_audited(now, ATTRS_DELETED, who, address=address):
            self.core.fresh_session(session_id, now)
            with self.core.write() as conn:
                if not self.core.factors.delete_credential(conn, session.user_id, ref):
                    raise NotFound("no such credential")
                self._after_removal(conn, session)
                self.core.record(
                    conn, now, ATTRS_DELETED, who, resource=("Credential", ref), address=address
                )

    def _after_removal(self, conn: Connection, session: Session) -> None:
        """After a factor is removed: keep one where MFA is required; where it is not and none
        is left, forget the rest (codes, blocked credentials) so the password alone works.
        Recovery codes are thus never left as the only factor of an account."""
        if self.core.has_factor(conn, session.user_id):
            return
        if mfa_required(session.role, self.core.settings):
            raise InvalidInput("factor", "enrol another second factor before removing the last")
        self.core.factors.reset(conn, session.user_id)

    # -- TOTP -------------------------------------------------------------------------------

    def begin_totp_setup(self, session_id: str, *, now: datetime) -> TotpSetup:
        """A new secret, waiting for :meth:`confirm_totp` (any confirmed one stays in use)."""
        now = utc(now)
        _session, row = self.core.fresh_session(session_id, now)
        secret = new_totp_secret(self.core.rng)
        with self.core.write() as conn:
            self.core.factors.set_pending_totp(conn, row.user_id, secret, now)
        email = self.core.accounts.open_personal(row).email
        return TotpSetup(secret, provisioning_uri(secret, email, self.core.settings.totp_issuer))

    def confirm_totp(
        self, session_id: str, code: str, *, now: datetime, address: str | None = None
    ) -> Enrolled:
        """Make the pending secret active once a code from the app matches it."""
        now = utc(now)
        session, row = self.core.fresh_session(session_id, now)
        with self.core.failures_audited(now, ATTRS_CREATED, Who.of(session), address=address):
            with self.core.read() as conn:
                state = self.core.factors.totp(conn, row.user_id)
            pending = None if state is None else state.pending
            step = None if pending is None else match_step(pending, code, now)
            if pending is None or step is None:
                raise InvalidCode("the code does not match the new secret")
            with self.core.write() as conn:
                first = not self.core.has_factor(conn, row.user_id)
                self.core.factors.confirm_totp(conn, row.user_id, pending, step, now)
                codes = self._first_codes(conn, row.user_id, now) if first else None
                self.core.record(
                    conn,
                    now,
                    ATTRS_CREATED,
                    Who.of(session),
                    resource=("Account", row.user_id),
                    address=address,
                )
        return Enrolled(codes, self._after_enrolment(session_id, session, now, first))

    def remove_totp(self, session_id: str, *, now: datetime, address: str | None = None) -> None:
        """Stop using TOTP (step-up required)."""
        now = utc(now)
        session = self.core.session(session_id, now)
        with self.core.failures_audited(now, ATTRS_DELETED, Who.of(session), address=address):
            self.core.fresh_session(session_id, now)
            with self.core.write() as conn:
                if not self.core.factors.remove_totp(conn, session.user_id):
                    raise NotFound("TOTP is not set up")
                self._after_removal(conn, session)
                self.core.record(
                    conn,
                    now,
                    ATTRS_DELETED,
                    Who.of(session),
                    resource=("Account", session.user_id),
                    address=address,
                )

    # -- recovery codes ---------------------------------------------------------------------

    def generate_recovery_codes(
        self, session_id: str, *, now: datetime, address: str | None = None
    ) -> list[str]:
        """A new set of recovery codes (the old ones stop working); show them once.

        Refused (:class:`NoSecondFactor`) unless a real second factor (an unblocked WebAuthn
        credential or a confirmed TOTP secret) is enrolled: recovery codes are a way back when
        that factor is lost, never a factor of their own. Otherwise an account without MFA
        could make codes its only factor, and :meth:`sign_in_password` would then demand one
        of them at every sign-in (and refuse the account once they are used up or lost).
        Removing the last real factor forgets the codes too (:meth:`_after_removal`).
        """
        now = utc(now)
        session = self.core.session(session_id, now)
        with self.core.failures_audited(now, ATTRS_CHANGED, Who.of(session), address=address):
            session, row = self.core.fresh_session(session_id, now)
            with self.core.write() as conn:
                if not self.core.has_factor(conn, row.user_id):
                    raise NoSecondFactor("recovery codes need a real second factor first")
                codes = self.core.factors.replace_recovery_codes(
                    conn, row.user_id, self.core.rng, now, self.core.settings.recovery_code_count
                )
                self.core.record(
                    conn,
                    now,
                    ATTRS_CHANGED,
                    Who.of(session),
                    resource=("Account", row.user_id),
                    address=address,
                )
        return codes
