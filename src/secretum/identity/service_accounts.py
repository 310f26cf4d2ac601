"""Account use cases: first-admin set-up, invitations, patient self-registration; one's
profile and password (status changes are :mod:`.service_admin`'s).

* **Set-up**: while no administrator exists, :meth:`create_setup_token` makes a one-time token
  (the server prints it at first start; a new one retires the previous); :meth:`complete_setup`
  spends it to create the first administrator. Once an administrator exists both refuse with
  :class:`SetupClosed`.
* **Invitations**: an administrator creates an account in status ``invited`` with a one-time
  token (stored as SHA-256) that expires (default 7 days); :meth:`accept_invitation` sets the
  password and activates the account. Unknown, expired and used tokens are refused with
  ``token-invalid``, ``invitation-expired`` and ``invitation-used``.
* **Self-registration** (setting ``allow_patient_self_registration``): :meth:`register_patient`
  creates an invited patient account and a confirmation token that the web layer e-mails; an
  e-mail already registered gives no token, and the same answer to the caller, so the form
  does not reveal which addresses have accounts.

Audit: ``SECURITY_ALERT`` 110129 (set-up token), 110136 "Security Roles Changed" (an account is
created with a role), 110137 "User Security Attributes Changed" (status, password).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from secretum.access.model import ACCOUNT_ROLES, Role
from secretum.audit.model import Outcome
from secretum.identity.accounts import AccountRow, TokenRow
from secretum.identity.errors import (
    EmailUnavailable,
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    InvitationExpired,
    InvitationUsed,
    NotFound,
    RegistrationClosed,
    SessionExpired,
    SetupClosed,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
)
from secretum.identity.model import (
    Account,
    AccountStatus,
    PersonalData,
    Profile,
    Session,
    utc,
    validate_display_name,
    validate_email,
    validate_rpps,
    validate_specialty,
)
from secretum.identity.passwords import check_strength
from secretum.identity.service_base import (
    ALERT,
    ATTRS_CHANGED,
    ROLE_GRANTED,
    SETUP,
    IdentityCore,
    Who,
)

SETUP_TOKEN = "setup"  # noqa: S105 (a token kind, not a secret)
INVITATION = "invitation"
REGISTRATION = "registration"
_SYSTEM = Who("system", "system")


@dataclass(frozen=True)
class Invitation:
    """Build the link from ``token`` and send it to the invitee; it works once, until
    ``expires_at``. ``token`` is None for a self-registration whose e-mail has an account
    (tell that address so by e-mail, and show the caller the same page)."""

    user_id: str | None
    token: str | None
    expires_at: datetime
    #: where to send the link (the address given, or the invited account's)
    email: str | None = None

    def __repr__(self) -> str:
        return f"Invitation(user_id={self.user_id}, expires_at={self.expires_at.isoformat()})"


class Accounts:
    """First-admin set-up, invitations, patient self-registration; one's profile and password."""

    def __init__(self, core: IdentityCore) -> None:
        self.core = core

    # -- first administrator ----------------------------------------------------------------

    def create_setup_token(self, conn: Connection | None, now: datetime) -> str:
        """A one-time token to create the first administrator (only while none exists).
        ``conn``: the caller's transaction, or None for one of our own."""
        now = utc(now)
        if conn is None:
            with self.core.write() as own:
                return self.create_setup_token(own, now)
        if self.core.accounts.admin_exists(conn):
            raise SetupClosed("an administrator exists: sign in instead")
        token = self.core.token()
        self.core.accounts.retire_tokens(conn, SETUP_TOKEN, now)
        self.core.accounts.add_token(
            conn,
            token,
            kind=SETUP_TOKEN,
            now=now,
            expires_at=now + self.core.settings.setup_token_ttl,
        )
        self.core.record(conn, now, SETUP, _SYSTEM)
        return token

    def complete_setup(
        self,
        token: str,
        *,
        email: str,
        display_name: str,
        password: str,
        now: datetime,
        address: str | None = None,
    ) -> str:
        """Create the first administrator with the set-up token; returns their user id.
        Raises SetupClosed, TokenInvalid/TokenExpired/TokenUsed, WeakPassword, InvalidInput."""
        now = utc(now)
        with self.core.failures_audited(now, ROLE_GRANTED, Who.of(None), address=address):
            personal = PersonalData(validate_display_name(display_name), validate_email(email))
            with self.core.read() as conn:
                if self.core.accounts.admin_exists(conn):
                    raise SetupClosed("an administrator exists: sign in instead")
                self._valid_token(conn, token, (SETUP_TOKEN,), now)
            check_strength(password, (personal.email, personal.display_name))
            password_hash = self.core.hasher.hash(password)
            user_id = self.core.new_user_id()
            with self.core.write() as conn:
                if self.core.accounts.admin_exists(conn) or not self.core.accounts.use_token(
                    conn, token, now
                ):
                    raise SetupClosed("the set-up was completed meanwhile")
                self._create(
                    conn,
                    user_id,
                    Role.ADMIN,
                    AccountStatus.ACTIVE,
                    personal,
                    now,
                    password_hash=password_hash,
                )
                self.core.record(
                    conn,
                    now,
                    ROLE_GRANTED,
                    Who(user_id, str(Role.ADMIN)),
                    resource=("Account", user_id),
                    address=address,
                )
        return user_id

    def check_setup_link(self, token: str, *, now: datetime) -> None:
        """Raise what :meth:`complete_setup` would for this link alone (SetupClosed,
        TokenInvalid/TokenExpired/TokenUsed), so that a dead link is said so before anyone
        fills in the form. Changes nothing."""
        with self.core.read() as conn:
            if self.core.accounts.admin_exists(conn):
                raise SetupClosed("an administrator exists: sign in instead")
            self._valid_token(conn, token, (SETUP_TOKEN,), utc(now))

    def check_invitation_link(self, token: str, *, now: datetime) -> None:
        """Raise what :meth:`accept_invitation` would for this link alone (TokenInvalid,
        InvitationExpired, InvitationUsed). Changes nothing."""
        with self.core.read() as conn:
            found = self._valid_token(conn, token, (INVITATION, REGISTRATION), utc(now))
            row = self.core.accounts.by_id(conn, found.user_id or "")
        if row is None or row.account.status is not AccountStatus.INVITED:
            raise InvitationUsed("this account is active already: sign in")

    def _valid_token(
        self, conn: Connection, token: str, kinds: tuple[str, ...], now: datetime
    ) -> TokenRow:
        found = self.core.accounts.find_token(conn, token, kinds)
        invitation = INVITATION in kinds
        if found is None:
            raise TokenInvalid("this link is not valid")
        if found.used_at is not None:
            raise (InvitationUsed if invitation else TokenUsed)("this link was used already")
        if found.expires_at <= now:
            raise (InvitationExpired if invitation else TokenExpired)("this link expired")
        return found

    def _create(
        self,
        conn: Connection,
        user_id: str,
        role: Role,
        status: AccountStatus,
        personal: PersonalData,
        now: datetime,
        *,
        specialty: str | None = None,
        password_hash: str | None = None,
    ) -> Account:
        if self.core.accounts.by_email(conn, personal.email) is not None:
            raise EmailUnavailable("an account with this e-mail exists")
        return self.core.accounts.create(
            conn,
            user_id=user_id,
            role=role,
            status=status,
            personal=personal,
            user_handle=self.core.rng(32),
            now=now,
            specialty=specialty,
            password_hash=password_hash,
        )

    # -- invitations ------------------------------------------------------------------------

    def invite(
        self,
        session_id: str,
        *,
        email: str,
        role: Role,
        display_name: str,
        now: datetime,
        specialty: str | None = None,
        rpps: str | None = None,
        address: str | None = None,
    ) -> Invitation:
        """An administrator invites someone. Practitioners need a specialty and an RPPS
        number; other roles have neither. Raises Forbidden, StepUpRequired, InvalidInput,
        EmailUnavailable."""
        now = utc(now)
        admin = self.core.admin_session(session_id, now)
        with self.core.failures_audited(now, ROLE_GRANTED, Who.of(admin), address=address):
            role = Role(role)
            if role not in ACCOUNT_ROLES:
                raise InvalidInput("role", "an imaging node is registered, not invited")
            if role is Role.PRACTITIONER:
                if specialty is None or rpps is None:
                    raise InvalidInput(
                        "rpps", "a practitioner needs a specialty and an RPPS number"
                    )
                specialty, rpps = validate_specialty(specialty), validate_rpps(rpps)
            elif specialty is not None or rpps is not None:
                raise InvalidInput("specialty", "only practitioners have a specialty and RPPS")
            personal = PersonalData(
                validate_display_name(display_name), validate_email(email), rpps
            )
            user_id = self.core.new_user_id()
            token = self.core.token()
            expires_at = now + self.core.settings.invitation_ttl
            with self.core.write() as conn:
                self._create(
                    conn, user_id, role, AccountStatus.INVITED, personal, now, specialty=specialty
                )
                self.core.accounts.add_token(
                    conn,
                    token,
                    kind=INVITATION,
                    now=now,
                    expires_at=expires_at,
                    user_id=user_id,
                    created_by=admin.user_id,
                )
                self.core.record(
                    conn,
                    now,
                    ROLE_GRANTED,
                    Who.of(admin),
                    resource=("Account", user_id),
                    address=address,
                )
        return Invitation(user_id, token, expires_at, personal.email)

    def reinvite(
        self, session_id: str, user_id: str, *, now: datetime, address: str | None = None
    ) -> Invitation:
        """A new invitation link for an account still ``invited`` (the old link expired)."""
        now = utc(now)
        admin = self.core.admin_session(session_id, now)
        with self.core.failures_audited(now, ROLE_GRANTED, Who.of(admin), address=address):
            token = self.core.token()
            expires_at = now + self.core.settings.invitation_ttl
            with self.core.write() as conn:
                row = self.core.accounts.by_id(conn, user_id)
                if row is None or row.account.status is not AccountStatus.INVITED:
                    raise NotFound("no invited account with this id")
                email = self.core.accounts.open_personal(row).email
                self.core.accounts.add_token(
                    conn,
                    token,
                    kind=INVITATION,
                    now=now,
                    expires_at=expires_at,
                    user_id=user_id,
                    created_by=admin.user_id,
                )
                self.core.record(
                    conn,
                    now,
                    ROLE_GRANTED,
                    Who.of(admin),
                    resource=("Account", user_id),
                    address=address,
                )
        return Invitation(user_id, token, expires_at, email)

    def register_patient(
        self, *, email: str, display_name: str, now: datetime, address: str | None = None
    ) -> Invitation:
        """Self-registration of a patient (if the setting allows it): mail the token as a
        confirmation link; :meth:`accept_invitation` completes it."""
        now = utc(now)
        with self.core.failures_audited(now, ROLE_GRANTED, Who.of(None), address=address):
            if not self.core.settings.allow_patient_self_registration:
                raise RegistrationClosed("patients are invited by their practice here")
            personal = PersonalData(validate_display_name(display_name), validate_email(email))
            user_id = self.core.new_user_id()
            token = self.core.token()
            expires_at = now + self.core.settings.invitation_ttl
            with self.core.write() as conn:
                if self.core.accounts.by_email(conn, personal.email) is not None:
                    self.core.record(
                        conn,
                        now,
                        ROLE_GRANTED,
                        Who.of(None),
                        outcome=Outcome.MINOR_FAILURE,
                        address=address,
                    )
                    return Invitation(None, None, expires_at, personal.email)
                self._create(conn, user_id, Role.PATIENT, AccountStatus.INVITED, personal, now)
                self.core.accounts.add_token(
                    conn, token, kind=REGISTRATION, now=now, expires_at=expires_at, user_id=user_id
                )
                self.core.record(
                    conn,
                    now,
                    ROLE_GRANTED,
                    Who(user_id, str(Role.PATIENT)),
                    resource=("Account", user_id),
                    address=address,
                )
        return Invitation(user_id, token, expires_at, personal.email)

    def accept_invitation(
        self, token: str, *, password: str, now: datetime, address: str | None = None
    ) -> str:
        """Set the password of an invited account and activate it; returns the user id (the
        user then signs in). Raises TokenInvalid, InvitationExpired, InvitationUsed,
        WeakPassword."""
        now = utc(now)
        with self.core.failures_audited(now, ATTRS_CHANGED, Who.of(None), address=address):
            with self.core.read() as conn:
                found = self._valid_token(conn, token, (INVITATION, REGISTRATION), now)
                row = self.core.accounts.by_id(conn, found.user_id or "")
            if row is None or row.account.status is not AccountStatus.INVITED:
                raise InvitationUsed("this account is active already: sign in")
            personal = self.core.accounts.open_personal(row)
            check_strength(password, (personal.email, personal.display_name))
            password_hash = self.core.hasher.hash(password)
            with self.core.write() as conn:
                if not self.core.accounts.use_token(conn, token, now):
                    raise InvitationUsed("this link was used already")
                self.core.accounts.update(
                    conn, row.user_id, now, password_hash=password_hash, status=AccountStatus.ACTIVE
                )
                self.core.record(
                    conn,
                    now,
                    ATTRS_CHANGED,
                    Who.of(row),
                    resource=("Account", row.user_id),
                    address=address,
                )
        return row.user_id

    # -- one's profile and password ----------------------------------------------------------

    def get_profile(self, session_id: str, *, now: datetime, user_id: str | None = None) -> Profile:
        """The session user's own profile, or (administrators) a staff account's. A patient's
        name and address are not for administrators: that someone is a patient here is
        already health data (Forbidden)."""
        now = utc(now)
        session = self.core.session(session_id, now)
        other = user_id is not None and user_id != session.user_id
        if other:
            self.core.admin_session(session_id, now)
        with self.core.read() as conn:
            row = self.core.accounts.by_id(conn, user_id or session.user_id)
        if row is None:
            raise NotFound("no such account")
        if other and row.role is Role.PATIENT:
            # refused, and audited like every refused attempt at a patient's data: a Security
            # Alert (minor failure) naming the administrator and the account asked for
            self.core.record_failure(now, ALERT, Who.of(session), resource=("Account", row.user_id))
            raise Forbidden("administrators do not read patients' personal data")
        return Profile(row.account, self.core.accounts.open_personal(row))

    def change_password(
        self,
        session_id: str,
        *,
        current: str,
        new: str,
        now: datetime,
        address: str | None = None,
    ) -> None:
        """Change one's password (the current one is required); other sessions end."""
        now = utc(now)
        session = self.core.session(session_id, now)
        with self.core.failures_audited(now, ATTRS_CHANGED, Who.of(session), address=address):
            row = self._row(session)
            if not self.core.hasher.verify(row.password_hash, current):
                raise InvalidCredentials()
            personal = self.core.accounts.open_personal(row)
            check_strength(new, (personal.email, personal.display_name))
            password_hash = self.core.hasher.hash(new)
            with self.core.write() as conn:
                self.core.accounts.update(conn, row.user_id, now, password_hash=password_hash)
                self.core.record(
                    conn,
                    now,
                    ATTRS_CHANGED,
                    Who.of(session),
                    resource=("Account", row.user_id),
                    address=address,
                )
        self.core.sessions.revoke_user(row.user_id, keep_ref=session.ref)

    def _row(self, session: Session) -> AccountRow:
        with self.core.read() as conn:
            row = self.core.accounts.by_id(conn, session.user_id)
        if row is None:
            raise SessionExpired()
        return row
