"""Step-up: a fresh second factor (WebAuthn with user verification, or a TOTP code) refreshes
``strong_auth_at`` for the sensitive acts of the next minutes (see
:func:`secretum.identity.model.requires_step_up`); the session gets a new id, as at every
privilege change. Failures count towards brute-force limits like sign-in failures; one audit
entry (``USER_AUTHENTICATION``/Login) per call.

An account that has no second factor *and may have none* (a patient where the clinic leaves
MFA optional) steps up with its password instead (:meth:`StepUpOps.step_up_password`):
without it such a patient could never export or erase their record, since signing in again
with the password alone never sets ``strong_auth_at``. The password step-up is refused to
every account that has, had, or must have a factor: it must never be a downgrade path."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection
from webauthn.helpers.structs import UserVerificationRequirement

from secretum.identity import webauthn as wa
from secretum.identity.accounts import AccountRow
from secretum.identity.errors import (
    AuthError,
    InvalidCode,
    InvalidCredentials,
    StepUpRequired,
    TotpReplayed,
    WebAuthnRefused,
)
from secretum.identity.factor_store import StoredCredential
from secretum.identity.factors import match_step
from secretum.identity.model import NewSession, Session, mfa_required, utc
from secretum.identity.service_base import LOGIN, IdentityCore, WebAuthnStart, Who
from secretum.identity.service_webauthn import Ceremonies

WA_STEP_UP = "webauthn-step-up"  # ceremony kind


class StepUp:
    """Step-up: prove a second factor again before a sensitive act."""

    def __init__(self, core: IdentityCore, ceremonies: Ceremonies) -> None:
        self.core = core
        self.ceremonies = ceremonies

    # -- step-up ----------------------------------------------------------------------------

    def begin_step_up(self, session_id: str, *, now: datetime) -> WebAuthnStart:
        """WebAuthn options to refresh ``strong_auth_at`` (user verification required)."""
        now = utc(now)
        session = self.core.session(session_id, now)
        return self.ceremonies.start(
            WA_STEP_UP, session.user_id, now, UserVerificationRequirement.REQUIRED
        )

    def complete_step_up_webauthn(
        self,
        session_id: str,
        ceremony_id: str,
        credential: wa.CredentialJSON,
        *,
        now: datetime,
        address: str | None = None,
    ) -> NewSession:
        """A fresh WebAuthn user verification: the session is rotated with
        ``strong_auth_at`` = now (set the new id as the cookie)."""
        now = utc(now)
        session, row = self._step_up_session(session_id, now, address)
        keys = self._step_up_keys(row)
        try:
            challenge = self.ceremonies.take_challenge(ceremony_id, WA_STEP_UP, now, row.user_id)
            cred, assertion = self.ceremonies.verify(credential, challenge, row, require_uv=True)
            return self._stepped_up(
                session_id, session, row, now, address, credential=(cred, assertion)
            )
        except AuthError as exc:
            raise self.core.refuse(
                exc,
                now,
                account=row,
                keys=keys,
                address=address,
                resource=self.ceremonies.credential_resource(credential),
            ) from None

    def step_up_totp(
        self, session_id: str, code: str, *, now: datetime, address: str | None = None
    ) -> NewSession:
        """A fresh TOTP code: the session is rotated with ``strong_auth_at`` = now."""
        now = utc(now)
        session, row = self._step_up_session(session_id, now, address)
        keys = self._step_up_keys(row)
        try:
            with self.core.read() as conn:
                state = self.core.factors.totp(conn, row.user_id)
            secret = None if state is None else state.secret
            step = None if secret is None else match_step(secret, code, now)
            if step is None:
                raise InvalidCode()
            return self._stepped_up(session_id, session, row, now, address, totp_step=step)
        except AuthError as exc:
            raise self.core.refuse(exc, now, account=row, keys=keys, address=address) from None

    def password_step_up_allowed(self, session_id: str, *, now: datetime) -> bool:
        """True when the session's account may step up with its password: no usable second
        factor, none ever enrolled (every factor blocked or removed is not "none": no silent
        downgrade, as at sign-in), and MFA optional for its role."""
        session = self.core.session(session_id, utc(now))
        with self.core.read() as conn:
            row = self.core.accounts.by_id(conn, session.user_id)
            return row is not None and self._password_only(conn, row)

    def _password_only(self, conn: Connection, row: AccountRow) -> bool:
        if mfa_required(row.role, self.core.settings):
            return False
        if self.core.factors.has_factor_history(conn, row.user_id):
            return False
        state = self.core.factors.totp(conn, row.user_id)
        return not self.core.factors.credentials_of(conn, row.user_id) and (
            state is None or state.secret is None
        )

    def step_up_password(
        self, session_id: str, password: str, *, now: datetime, address: str | None = None
    ) -> NewSession:
        """The password again, for an account without a second factor that may have none
        (see :meth:`password_step_up_allowed`): the session is rotated with
        ``strong_auth_at`` = now. Any other account gets :class:`StepUpRequired` (use a
        factor). A wrong password counts in the step-up bucket and is audited as a failed
        login, like a wrong code."""
        now = utc(now)
        session, row = self._step_up_session(session_id, now, address)
        keys = self._step_up_keys(row)
        with self.core.read() as conn:
            allowed = self._password_only(conn, row)
        if not allowed:
            raise self.core.refuse(
                StepUpRequired("this account steps up with its second factor"),
                now,
                account=row,
                keys=keys,
                address=address,
            )
        try:
            if not self.core.hasher.verify(row.password_hash, password):
                raise InvalidCredentials()
            return self._stepped_up(session_id, session, row, now, address)
        except AuthError as exc:
            raise self.core.refuse(exc, now, account=row, keys=keys, address=address) from None

    def _step_up_session(
        self, session_id: str, now: datetime, address: str | None
    ) -> tuple[Session, AccountRow]:
        session = self.core.session(session_id, now)
        with self.core.read() as conn:
            row = self.core.accounts.by_id(conn, session.user_id)
        if row is None:
            raise StepUpRequired("the account is gone")
        self.core.check_limits(self._step_up_keys(row), now, Who.of(row), address)
        return session, row

    def _stepped_up(
        self,
        session_id: str,
        session: Session,
        row: AccountRow,
        now: datetime,
        address: str | None,
        *,
        totp_step: int | None = None,
        credential: tuple[StoredCredential, wa.Assertion] | None = None,
    ) -> NewSession:
        resource = ("Account", row.user_id)
        with self.core.write() as conn:
            if totp_step is not None and not self.core.factors.spend_totp_step(
                conn, row.user_id, totp_step
            ):
                raise TotpReplayed()
            if credential is not None:
                cred, assertion = credential
                if not self.core.factors.record_use(
                    conn, cred, assertion.new_sign_count, assertion.backed_up, now
                ):
                    raise WebAuthnRefused("the credential was used concurrently; try again")
                resource = ("Credential", cred.ref)
            self.core.record(conn, now, LOGIN, Who.of(session), resource=resource, address=address)
        rotated = self.core.rotate(session_id, now, strong=True)
        self.core.limiter.reset(self._step_up_keys(row)[0])
        return rotated

    @staticmethod
    def _step_up_keys(row: AccountRow) -> list[str]:
        """Step-up failures count in a bucket of their own (``stepup:<user id>``): the caller
        holds a session, so neither the sign-in page's untrusted bucket (which anyone can
        lock) nor the address may stop a signed-in user from proving their factor again."""
        return [f"stepup:{row.user_id}"]
