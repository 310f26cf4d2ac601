"""Sign-in use cases: password (+ TOTP, recovery code or security key), passkey, sign-out.

Audit: every call writes one entry (``USER_AUTHENTICATION``/Login or Logout), success or
failure; a sign-in with a second factor therefore writes two (the password step, then the
factor step, whose resource names the WebAuthn credential when one is used). A failure that
locks an account or blocks a cloned credential is written as a ``SECURITY_ALERT`` instead.
Failures never say whether the e-mail has an account: unknown e-mail and wrong password both
cost one Argon2 verification and raise :class:`InvalidCredentials`.

Brute force (:mod:`.devices`): every step takes the browser's ``device_cookie``. With a valid
device cookie of the account, failures count against that device only; without one they count
in the account's untrusted bucket and the address's, which lock only untrusted attempts. So
an attacker's ten wrong passwords never lock out a browser that signed in before. A completed
sign-in (second factor included where there is one) returns a renewed ``device_cookie``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection
from webauthn.helpers.structs import UserVerificationRequirement

from secretum.identity import webauthn as wa
from secretum.identity.accounts import AccountRow
from secretum.identity.devices import NONCE_BYTES
from secretum.identity.errors import (
    AccountErased,
    AccountInactive,
    AuthError,
    ChallengeExpired,
    InvalidCode,
    InvalidCredentials,
    MfaUnavailable,
    TotpReplayed,
    UnknownCredential,
    WebAuthnRefused,
)
from secretum.identity.factor_store import StoredCredential
from secretum.identity.factors import match_step
from secretum.identity.model import (
    AccountStatus,
    CredentialKind,
    NewSession,
    Session,
    mfa_required,
    utc,
)
from secretum.identity.service_base import (
    LOGIN,
    IdentityCore,
    WebAuthnStart,
    Who,
)
from secretum.identity.service_webauthn import Ceremonies
from secretum.notices.store import NoticeKind, notify

SIGN_IN = "sign-in"  # ceremony kind of a pending sign-in (password proved, factor awaited)
WA_SECOND = "webauthn-2fa"
WA_PASSKEY = "webauthn-passkey"


@dataclass(frozen=True)
class SignedIn:
    """A completed sign-in. Set ``session_id`` and ``device_id`` as cookies;
    ``session.enrolment_only`` means the user must now enrol a second factor."""

    session_id: str
    session: Session
    device_id: str
    new_device: bool
    #: the device cookie to set (``""``: leave it as it is; see :mod:`.devices`)
    device_cookie: str = ""

    def __repr__(self) -> str:
        return f"SignedIn({self.session!r}, new_device={self.new_device})"


@dataclass(frozen=True)
class SecondFactorRequired:
    """The password was right; complete with one of ``methods`` ("security-key", "totp",
    "recovery-code") and ``ticket`` before ``expires_at``."""

    ticket: str
    methods: tuple[str, ...]
    expires_at: datetime

    def __repr__(self) -> str:
        return f"SecondFactorRequired(methods={self.methods})"


def inactive(status: AccountStatus) -> AccountInactive | AccountErased:
    """Why an account that is not active cannot sign in."""
    return AccountErased() if status is AccountStatus.ERASED else AccountInactive()


class SignIn:
    """Sign-in: password, then a second factor (TOTP, recovery code, security key), or a
    passkey; device cookies spare a known browser the brute-force limits of strangers."""

    def __init__(self, core: IdentityCore, ceremonies: Ceremonies) -> None:
        self.core = core
        self.ceremonies = ceremonies

    # -- password ---------------------------------------------------------------------------

    def sign_in_password(
        self,
        email: str,
        password: str,
        *,
        now: datetime,
        address: str | None = None,
        device_id: str | None = None,
        device_cookie: str | None = None,
    ) -> SignedIn | SecondFactorRequired:
        """First step of a sign-in. Raises InvalidCredentials, Throttled, Locked,
        AccountInactive."""
        now = utc(now)
        account_key = "acct:" + self.core.accounts.email_index(email).hex()
        keys, device_key = self.core.attempt_keys(account_key, address, device_cookie, now)
        self.core.check_limits(keys, now, Who.of(None), address)
        with self.core.read() as conn:
            row = self.core.accounts.by_email(conn, email)
        if not self.core.hasher.verify(None if row is None else row.password_hash, password):
            raise self.core.refuse(
                InvalidCredentials(), now, account=row, keys=keys, address=address
            )
        assert row is not None and row.password_hash is not None
        if row.account.status is not AccountStatus.ACTIVE:
            refusal = inactive(row.account.status)
            raise self.core.refuse(refusal, now, account=row, keys=keys, address=address)
        rehash = (
            self.core.hasher.hash(password)
            if self.core.hasher.needs_rehash(row.password_hash)
            else None
        )
        with self.core.read() as conn:
            methods = self._methods(conn, row.user_id)
            enrolled_before = self.core.factors.has_factor_history(conn, row.user_id)
        if not methods and enrolled_before:  # every factor blocked or gone: no silent downgrade
            raise self.core.refuse(MfaUnavailable(), now, account=row, keys=keys, address=address)
        if not methods:
            enrol = mfa_required(row.role, self.core.settings)
            return self._finish(
                row,
                now,
                address,
                device_id,
                strong=False,
                enrolment_only=enrol,
                rehash=rehash,
                device=(device_cookie, device_key),
            )
        ticket = self.core.token()
        expires_at = now + self.core.settings.pending_sign_in_ttl
        with self.core.write() as conn:
            self.core.factors.open_ceremony(
                conn, ticket, kind=SIGN_IN, expires_at=expires_at, user_id=row.user_id
            )
            if rehash is not None:
                self.core.accounts.update(conn, row.user_id, now, password_hash=rehash)
            self.core.record(
                conn, now, LOGIN, Who.of(row), resource=("Account", row.user_id), address=address
            )
        return SecondFactorRequired(ticket, methods, expires_at)

    def _methods(self, conn: Connection, user_id: str) -> tuple[str, ...]:
        methods = []
        if any(c.blocked_at is None for c in self.core.factors.credentials_of(conn, user_id)):
            methods.append("security-key")
        state = self.core.factors.totp(conn, user_id)
        if state is not None and state.secret is not None:
            methods.append("totp")
        if self.core.factors.recovery_codes_left(conn, user_id):
            methods.append("recovery-code")
        return tuple(methods)

    def _pending(
        self, ticket: str, now: datetime, address: str | None, device_cookie: str | None
    ) -> tuple[AccountRow, list[str], str | None]:
        """The account of a pending sign-in, its limiter keys and trusted device key."""
        with self.core.read() as conn:
            pending = self.core.factors.peek_ceremony(conn, ticket, SIGN_IN, now)
            row = None if pending is None else self.core.accounts.by_id(conn, pending.user_id or "")
        if row is None:
            self.core.record_failure(now, LOGIN, Who.of(None), address=address)
            raise ChallengeExpired("the sign-in expired: enter your password again")
        keys, device_key = self.core.attempt_keys(row.limit_key, address, device_cookie, now)
        self.core.check_limits(keys, now, Who.of(row), address)
        return row, keys, device_key

    def complete_sign_in_totp(
        self,
        ticket: str,
        code: str,
        *,
        now: datetime,
        address: str | None = None,
        device_id: str | None = None,
        device_cookie: str | None = None,
    ) -> SignedIn:
        """Second step with an authenticator-app code. Raises InvalidCode, TotpReplayed,
        ChallengeExpired, Throttled, Locked."""
        now = utc(now)
        row, keys, device_key = self._pending(ticket, now, address, device_cookie)
        try:
            with self.core.read() as conn:
                state = self.core.factors.totp(conn, row.user_id)
            secret = None if state is None else state.secret
            step = None if secret is None else match_step(secret, code, now)
            if step is None:
                raise InvalidCode()
            return self._finish(
                row,
                now,
                address,
                device_id,
                strong=True,
                ticket=ticket,
                totp_step=step,
                device=(device_cookie, device_key),
            )
        except AuthError as exc:
            raise self.core.refuse(exc, now, account=row, keys=keys, address=address) from None

    def complete_sign_in_recovery_code(
        self,
        ticket: str,
        code: str,
        *,
        now: datetime,
        address: str | None = None,
        device_id: str | None = None,
        device_cookie: str | None = None,
    ) -> SignedIn:
        """Second step with a single-use recovery code. Raises InvalidCode, ..."""
        now = utc(now)
        row, keys, device_key = self._pending(ticket, now, address, device_cookie)
        try:
            return self._finish(
                row,
                now,
                address,
                device_id,
                strong=True,
                ticket=ticket,
                recovery_code=code,
                device=(device_cookie, device_key),
            )
        except AuthError as exc:
            raise self.core.refuse(exc, now, account=row, keys=keys, address=address) from None

    def second_factor_options(self, ticket: str, *, now: datetime) -> WebAuthnStart:
        """WebAuthn request options for the security-key step of a pending sign-in."""
        now = utc(now)
        with self.core.read() as conn:
            pending = self.core.factors.peek_ceremony(conn, ticket, SIGN_IN, now)
        if pending is None or pending.user_id is None:
            raise ChallengeExpired("the sign-in expired: enter your password again")
        return self.ceremonies.start(
            WA_SECOND, pending.user_id, now, self.core.webauthn.security_key_user_verification
        )

    def complete_sign_in_security_key(
        self,
        ticket: str,
        ceremony_id: str,
        credential: wa.CredentialJSON,
        *,
        now: datetime,
        address: str | None = None,
        device_id: str | None = None,
        device_cookie: str | None = None,
    ) -> SignedIn:
        """Second step with a WebAuthn assertion (security key or passkey)."""
        now = utc(now)
        row, keys, device_key = self._pending(ticket, now, address, device_cookie)
        try:
            challenge = self.ceremonies.take_challenge(ceremony_id, WA_SECOND, now, row.user_id)
            cred, assertion = self.ceremonies.verify(
                credential,
                challenge,
                row,
                require_uv=self.core.webauthn.security_key_user_verification
                is UserVerificationRequirement.REQUIRED,
            )
            return self._finish(
                row,
                now,
                address,
                device_id,
                strong=True,
                ticket=ticket,
                credential=(cred, assertion),
                device=(device_cookie, device_key),
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

    # -- passkeys ---------------------------------------------------------------------------

    def begin_passkey_sign_in(self, *, now: datetime) -> WebAuthnStart:
        """Options for a passwordless sign-in with a discoverable credential (UV required)."""
        return self.ceremonies.start(
            WA_PASSKEY, None, utc(now), UserVerificationRequirement.REQUIRED
        )

    def complete_passkey_sign_in(
        self,
        ceremony_id: str,
        credential: wa.CredentialJSON,
        *,
        now: datetime,
        address: str | None = None,
        device_id: str | None = None,
        device_cookie: str | None = None,
    ) -> SignedIn:
        """Passwordless sign-in. Raises ChallengeExpired, UnknownCredential, WebAuthnRefused,
        UserVerificationRequired, CredentialBlocked, AccountInactive, Throttled, Locked.

        The address is checked once the account is known, so that a trusted device behind a
        throttled address still signs in; an unknown credential is checked (and counted)
        against the address alone."""
        now = utc(now)
        keys = self.core.limit_keys(None, address)
        row: AccountRow | None = None
        device_key: str | None = None
        try:
            challenge = self.ceremonies.take_challenge(ceremony_id, WA_PASSKEY, now, None)
            parsed = wa.parse_assertion(credential)
            with self.core.read() as conn:
                cred = self.core.factors.credential(conn, wa.credential_ref(parsed.raw_id))
                row = None if cred is None else self.core.accounts.by_id(conn, cred.user_id)
            if cred is None or row is None:
                self.core.check_limits(keys, now, Who.of(None), address)
                raise UnknownCredential()
            keys, device_key = self.core.attempt_keys(row.limit_key, address, device_cookie, now)
            self.core.check_limits(keys, now, Who.of(row), address)
            if cred.kind is not CredentialKind.PASSKEY:
                raise WebAuthnRefused("this credential is a second factor, not a passkey")
            handle = parsed.response.user_handle
            if handle is None or handle != row.user_handle:
                raise WebAuthnRefused("the user handle does not match the credential")
            cred, assertion = self.ceremonies.verify(parsed, challenge, row, require_uv=True)
            if row.account.status is not AccountStatus.ACTIVE:
                raise inactive(row.account.status)
            return self._finish(
                row,
                now,
                address,
                device_id,
                strong=True,
                credential=(cred, assertion),
                device=(device_cookie, device_key),
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

    # -- the last step of every sign-in -----------------------------------------------------

    def _finish(
        self,
        row: AccountRow,
        now: datetime,
        address: str | None,
        device_id: str | None,
        *,
        strong: bool,
        enrolment_only: bool = False,
        rehash: str | None = None,
        ticket: str | None = None,
        totp_step: int | None = None,
        recovery_code: str | None = None,
        credential: tuple[StoredCredential, wa.Assertion] | None = None,
        device: tuple[str | None, str | None] = (None, None),
    ) -> SignedIn:
        """Complete a sign-in. ``device`` is the browser's device cookie and, if it was
        trusted for this account, its limiter key: that key is reset (a success from a trusted
        device leaves the untrusted bucket as the attacker left it), else the account's."""
        device_id = device_id or self.core.token()
        device_ref = self.core.accounts.device_ref(device_id)
        resource = ("Account", row.user_id)
        with self.core.write() as conn:
            if (
                ticket is not None
                and self.core.factors.take_ceremony(conn, ticket, SIGN_IN, now) is None
            ):
                raise ChallengeExpired("the sign-in expired: enter your password again")
            if totp_step is not None and not self.core.factors.spend_totp_step(
                conn, row.user_id, totp_step
            ):
                raise TotpReplayed()
            if recovery_code is not None and not self.core.factors.spend_recovery_code(
                conn, row.user_id, recovery_code, now
            ):
                raise InvalidCode()
            if credential is not None:
                cred, assertion = credential
                if not self.core.factors.record_use(
                    conn, cred, assertion.new_sign_count, assertion.backed_up, now
                ):
                    raise WebAuthnRefused("the credential was used concurrently; try again")
                resource = ("Credential", cred.ref)
            if rehash is not None:
                self.core.accounts.update(conn, row.user_id, now, password_hash=rehash)
            known = self.core.accounts.has_devices(conn, row.user_id)
            new_device = self.core.accounts.remember_device(conn, row.user_id, device_ref, now)
            if new_device and known:
                params = {"device": device_ref[:16]}
                if address is not None:
                    params["address"] = address
                notify(conn, row.user_id, NoticeKind.NEW_DEVICE_SIGN_IN, now, **params)
            self.core.accounts.update(conn, row.user_id, now, last_sign_in_at=now)
            self.core.record(conn, now, LOGIN, Who.of(row), resource=resource, address=address)
        grant = self.core.grant(row, now if strong else None, device_ref, enrolment_only)
        created: NewSession = self.core.sessions.create(grant, now)
        cookie, device_key = device
        self.core.limiter.reset(device_key or row.limit_key)
        renewed = ""
        if not enrolment_only:  # the password and every enrolled factor were proved
            token = self.core.devices.issue(row.limit_key, now, self.core.rng(NONCE_BYTES))
            renewed = self.core.devices.renewed(cookie, token, row.limit_key, now)
        return SignedIn(created.session_id, created.session, device_id, new_device, renewed)
