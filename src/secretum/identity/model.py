"""Plain objects of the identity context: accounts, sessions, credentials, settings; the MFA
and step-up rules. No I/O here.

A patient account's ``user_id`` *is* its FHIR Patient id (the records context files the
patient's data under it), so it is a FHIR id: 32 lower-case hex characters, random.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from secretum.access.model import Actor, Role
from secretum.identity.errors import InvalidInput, MfaEnrolmentRequired
from secretum.identity.passwords import Argon2Params

#: Sensitive acts need a second factor proved within this window (``Actor.strong_auth_at``).
STEP_UP_WINDOW = timedelta(minutes=5)


class AccountStatus(StrEnum):
    INVITED = "invited"  # created by an invitation or a self-registration, not yet accepted
    ACTIVE = "active"
    LOCKED = "locked"  # locked by an administrator (not the temporary brute-force lock)
    DISABLED = "disabled"
    #: a patient whose data were erased (key shredded): closed for good, nothing to read
    ERASED = "erased"


class CredentialKind(StrEnum):
    #: discoverable credential, user verification required: signs in without a password
    PASSKEY = "passkey"
    #: second factor after a password (user verification discouraged)
    SECURITY_KEY = "security-key"


#: Common specialty codes (the pattern below accepts others, e.g. "nephrology").
SPECIALTIES = frozenset(
    {
        "general-practice",
        "radiology",
        "cardiology",
        "dermatology",
        "endocrinology",
        "gynecology",
        "neurology",
        "ophthalmology",
        "pediatrics",
        "psychiatry",
        "pulmonology",
        "nursing",
        "midwifery",
        "pharmacy",
        #: an interpreter: a staff account a patient may accept into a call (no care role)
        "interpreter",
    }
)
_SPECIALTY = re.compile(r"[a-z][a-z\-]{1,63}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,63}")
_RPPS = re.compile(r"[0-9]{11}")


def utc(now: datetime) -> datetime:
    """``now`` in UTC; naive datetimes are refused (a time without a zone is a bug)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("times must be timezone-aware")
    return now.astimezone(UTC)


def luhn_ok(digits: str) -> bool:
    """Luhn (mod 10) check over a string of digits, check digit last."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def validate_rpps(value: str) -> str:
    """An RPPS number (French national register of health professionals): 11 digits whose
    last is a Luhn check digit. Spaces are ignored."""
    digits = "".join(value.split())
    if not _RPPS.fullmatch(digits) or not luhn_ok(digits):
        raise InvalidInput("rpps", "an RPPS number is 11 digits with a valid Luhn check digit")
    return digits


def validate_specialty(value: str) -> str:
    if not _SPECIALTY.fullmatch(value):
        raise InvalidInput("specialty", "a specialty code such as general-practice, radiology")
    return value


def validate_email(value: str) -> str:
    text = value.strip()
    if len(text) > 254 or not _EMAIL.fullmatch(text):
        raise InvalidInput("email", "an e-mail address such as name@example.org")
    return text


def validate_display_name(value: str) -> str:
    text = " ".join(value.split())
    if not 1 <= len(text) <= 200 or not text.isprintable():
        raise InvalidInput("display_name", "1 to 200 printable characters")
    return text


@dataclass(frozen=True)
class PersonalData:
    """What is sealed with the account's own data key (owner id = user id)."""

    display_name: str
    email: str
    rpps: str | None = None

    def __repr__(self) -> str:  # personal data never reaches a log through a repr
        return "PersonalData(<sealed>)"


@dataclass(frozen=True)
class Account:
    user_id: str
    role: Role
    status: AccountStatus
    specialty: str | None
    created_at: datetime
    last_sign_in_at: datetime | None = None


@dataclass(frozen=True)
class Profile:
    """An account with its personal data opened (for the account itself and administrators)."""

    account: Account
    personal: PersonalData


@dataclass(frozen=True)
class Session:
    """A server-side session. ``ref`` is the SHA-256 (hex) of the secret session id: it names
    the session in lists and revocations, and cannot be used to act as it."""

    ref: str
    user_id: str
    role: Role
    created_at: datetime
    #: when the user last proved their password or passkey (a new session each time)
    auth_at: datetime
    last_seen_at: datetime
    strong_auth_at: datetime | None
    csrf_token: str
    #: SHA-256 (hex) of the device id cookie, if any
    device_ref: str | None = None
    specialty: str | None = None
    #: MFA is required and not set up yet: the session may only enrol a second factor
    enrolment_only: bool = False

    def to_actor(self) -> Actor:
        """The :class:`Actor` for the policy; refused while only enrolment is allowed."""
        if self.enrolment_only:
            raise MfaEnrolmentRequired("enrol a second factor first")
        return Actor(self.user_id, self.role, self.strong_auth_at, self.specialty)

    def __repr__(self) -> str:
        return f"Session(ref={self.ref[:8]}…, user={self.user_id}, role={self.role})"


@dataclass(frozen=True)
class NewSession:
    """A session just created or rotated: ``session_id`` is the secret for the cookie."""

    session_id: str
    session: Session

    def __repr__(self) -> str:
        return f"NewSession({self.session!r})"


@dataclass(frozen=True)
class CredentialInfo:
    """A WebAuthn credential as the user sees it in a list."""

    ref: str  # SHA-256 (hex) of the credential id
    kind: CredentialKind
    name: str
    created_at: datetime
    last_used_at: datetime | None
    blocked_at: datetime | None
    backed_up: bool


@dataclass(frozen=True)
class IdentitySettings:
    """What an operator may tune. The bootstrap maps :class:`secretum.config.Settings` here."""

    allow_patient_self_registration: bool = False
    mfa_required_for_patients: bool = False
    invitation_ttl: timedelta = timedelta(days=7)
    setup_token_ttl: timedelta = timedelta(hours=24)
    #: how long a pending sign-in waits for its second factor
    pending_sign_in_ttl: timedelta = timedelta(minutes=5)
    step_up_window: timedelta = STEP_UP_WINDOW
    argon2: Argon2Params = field(default_factory=Argon2Params)
    totp_issuer: str = "Secretum"
    recovery_code_count: int = 10


MFA_ROLES = frozenset({Role.PRACTITIONER, Role.ADMIN, Role.DPO})


def mfa_required(role: Role, settings: IdentitySettings) -> bool:
    """MFA is required for practitioners, administrators and DPOs; for patients by setting."""
    return role in MFA_ROLES or (role is Role.PATIENT and settings.mfa_required_for_patients)


def requires_step_up(actor: Actor, now: datetime, window: timedelta = STEP_UP_WINDOW) -> bool:
    """True when a sensitive act needs a fresh second factor first: ``strong_auth_at`` is
    missing, older than ``window``, or (clock trouble) in the future."""
    if actor.strong_auth_at is None:
        return True
    age = utc(now) - utc(actor.strong_auth_at)
    return not timedelta(0) <= age <= window
