"""Typed errors of the identity context, each with a stable ``code`` for the web layer.

The web layer maps ``code`` to a message and an HTTP status; the text of an error is for logs
and never carries personal data (no e-mail, no name, no password). Sign-in failures say
"invalid-credentials" whatever went wrong (unknown e-mail, wrong password, unknown passkey), so a
caller never learns whether an e-mail address has an account.
"""

from __future__ import annotations

from datetime import datetime


class IdentityError(Exception):
    """Base of every identity error. ``code`` is stable; ``str(error)`` is for logs."""

    code = "identity-error"
    #: a refused attempt of this kind counts towards brute-force limiting
    counts_as_failure = False
    #: set once the failure's audit entry is written (so it is written once)
    audited = False

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.code)


class AuthError(IdentityError):
    """An authentication step was refused."""

    code = "auth-error"
    counts_as_failure = True


class InvalidCredentials(AuthError):
    """Wrong e-mail or password, unknown passkey, bad signature: never says which."""

    code = "invalid-credentials"


class UnknownCredential(AuthError):
    """The WebAuthn credential is not registered (or was revoked)."""

    code = "unknown-credential"


class WebAuthnRefused(AuthError):
    """py_webauthn refused the response: origin, RP id, challenge, signature, flags..."""

    code = "webauthn-refused"


class UserVerificationRequired(AuthError):
    """The authenticator did not verify the user (PIN, biometrics) where it was required."""

    code = "user-verification-required"


class CredentialBlocked(AuthError):
    """The credential's signature counter went backwards: probably cloned; it is blocked."""

    code = "credential-blocked"


class InvalidCode(AuthError):
    """Wrong TOTP or recovery code."""

    code = "invalid-code"


class TotpReplayed(AuthError):
    """This TOTP code (time step) was already used."""

    code = "totp-replayed"


class ChallengeExpired(AuthError):
    """The ceremony (WebAuthn challenge, pending sign-in) is unknown, used or expired."""

    code = "challenge-expired"
    counts_as_failure = False


class Throttled(AuthError):
    """Too many recent failures: retry after ``retry_at`` (progressive delay)."""

    code = "throttled"
    counts_as_failure = False

    def __init__(self, retry_at: datetime, message: str | None = None) -> None:
        super().__init__(message or f"too many attempts; retry after {retry_at.isoformat()}")
        self.retry_at = retry_at


class Locked(Throttled):
    """Temporarily locked after repeated failures, until ``retry_at``."""

    code = "locked"


class AccountInactive(AuthError):
    """The account is locked or disabled by an administrator, or not yet activated."""

    code = "account-inactive"
    counts_as_failure = False


class AccountErased(AuthError):
    """The patient's data were erased at their request (their key shredded): the account is
    closed for good, its personal data can no longer be read."""

    code = "account-erased"
    counts_as_failure = False


class MfaUnavailable(AuthError):
    """The account had second factors and none is usable now (blocked, removed, codes used
    up): an administrator must reset its MFA (:meth:`reset_mfa`)."""

    code = "mfa-unavailable"
    counts_as_failure = False


class SessionExpired(IdentityError):
    """No valid session for this id (unknown, signed out, idle or absolute timeout)."""

    code = "session-expired"


class MfaEnrolmentRequired(IdentityError):
    """This session may only enrol a second factor (MFA is required and none is set up)."""

    code = "mfa-enrolment-required"


class StepUpRequired(IdentityError):
    """A fresh second factor is needed (``strong_auth_at`` older than the step-up window)."""

    code = "step-up-required"


class Forbidden(IdentityError):
    """The actor may not do this (e.g. only administrators invite)."""

    code = "forbidden"


class TokenInvalid(IdentityError):
    """An invitation or set-up token is unknown."""

    code = "token-invalid"


class TokenExpired(TokenInvalid):
    code = "token-expired"


class TokenUsed(TokenInvalid):
    code = "token-used"


class InvitationExpired(TokenExpired):
    """The invitation (or registration confirmation) link expired: ask for a new one."""

    code = "invitation-expired"


class InvitationUsed(TokenUsed):
    """The invitation was accepted already: sign in instead."""

    code = "invitation-used"


class SetupClosed(IdentityError):
    """An administrator exists already: the first-admin set-up is closed."""

    code = "setup-closed"


class RegistrationClosed(IdentityError):
    """Patients may not register themselves on this platform (setting)."""

    code = "registration-closed"


class WeakPassword(IdentityError):
    """The password is too short or too guessable; ``feedback`` lists zxcvbn's advice."""

    code = "weak-password"

    def __init__(self, feedback: tuple[str, ...]) -> None:
        self.feedback = feedback
        super().__init__("password refused: " + " ".join(feedback))


class NoSecondFactor(IdentityError):
    """Recovery codes were asked for by an account with no real second factor (security key,
    passkey or authenticator app): they would become its only factor, and a lost set would
    lock the user out. Enrol a real factor first."""

    code = "no-second-factor"


class InvalidInput(IdentityError):
    """A field is malformed (e-mail, RPPS number, specialty, role, name); ``field`` says which."""

    code = "invalid-input"

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        super().__init__(f"{field}: {rule}")


class EmailUnavailable(IdentityError):
    """An account with this e-mail exists (only said to administrators who invite)."""

    code = "email-unavailable"


class NotFound(IdentityError):
    """No such account, credential or session (of this user)."""

    code = "not-found"
