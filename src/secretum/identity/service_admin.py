"""Administration and profile use cases: lock, disable or re-activate accounts, list them
(administrators, with a fresh second factor); read one's profile; change one's password.
Audit: ``SECURITY_ALERT`` / 110137 "User Security Attributes Changed"."""

from __future__ import annotations

from datetime import datetime

from secretum.access.model import Role
from secretum.identity.accounts import AccountRow
from secretum.identity.errors import (
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    SessionExpired,
)
from secretum.identity.model import Account, AccountStatus, Profile, Session, utc
from secretum.identity.passwords import check_strength
from secretum.identity.service_accounts import AccountOps
from secretum.identity.service_base import ATTRS_CHANGED, ATTRS_DELETED, Who


class AdminOps(AccountOps):
    # -- administration and profile ---------------------------------------------------------

    def set_account_status(
        self,
        session_id: str,
        user_id: str,
        status: AccountStatus,
        *,
        now: datetime,
        address: str | None = None,
    ) -> None:
        """Lock, disable or re-activate an account (administrators). Locking or disabling
        ends the account's sessions; re-activating also clears a brute-force lock."""
        now = utc(now)
        admin = self._admin(session_id, now)
        status = AccountStatus(status)
        with self._failures_audited(now, ATTRS_CHANGED, Who.of(admin), address=address):
            if user_id == admin.user_id:
                raise Forbidden("administrators do not change their own status")
            if status is AccountStatus.INVITED:
                raise InvalidInput("status", "an account becomes invited only by an invitation")
            if status is AccountStatus.ERASED:
                raise InvalidInput("status", "an account is erased only by the patient's erasure")
            with self._write() as conn:
                row = self.accounts.by_id(conn, user_id)
                if row is None:
                    raise NotFound("no such account")
                if row.account.status is AccountStatus.INVITED and status is AccountStatus.ACTIVE:
                    raise InvalidInput("status", "the invitee activates the account")
                if row.account.status is AccountStatus.ERASED:
                    raise InvalidInput("status", "an erased account stays closed")
                self.accounts.update(conn, user_id, now, status=status)
                self._audit(
                    conn,
                    now,
                    ATTRS_CHANGED,
                    Who.of(admin),
                    resource=("Account", user_id),
                    address=address,
                )
        if status is AccountStatus.ACTIVE:
            self.limiter.reset(row.limit_key)
        else:
            self.sessions.revoke_user(user_id)

    def close_erased(self, user_id: str, *, now: datetime, who: Who) -> bool:
        """Close the account of a patient whose data were just erased (key shredded, by
        ``who``): status ERASED for good, every session ended, audited. False when there is
        no such account (a patient record without an account)."""
        now = utc(now)
        with self._write() as conn:
            if self.accounts.by_id(conn, user_id) is None:
                return False
            self.accounts.update(conn, user_id, now, status=AccountStatus.ERASED)
            self._audit(conn, now, ATTRS_CHANGED, who, resource=("Account", user_id))
        self.sessions.revoke_user(user_id)
        return True

    def reset_mfa(
        self, session_id: str, user_id: str, *, now: datetime, address: str | None = None
    ) -> None:
        """Forget every second factor of an account (lost or blocked authenticators) and end
        its sessions; at the next sign-in the user enrols again (administrators, after
        checking the user's identity out of band)."""
        now = utc(now)
        admin = self._admin(session_id, now)
        with self._failures_audited(now, ATTRS_DELETED, Who.of(admin), address=address):
            if user_id == admin.user_id:
                raise Forbidden("another administrator resets your MFA")
            with self._write() as conn:
                if self.accounts.by_id(conn, user_id) is None:
                    raise NotFound("no such account")
                self.factors.reset(conn, user_id)
                self._audit(
                    conn,
                    now,
                    ATTRS_DELETED,
                    Who.of(admin),
                    resource=("Account", user_id),
                    address=address,
                )
        self.sessions.revoke_user(user_id)

    def list_accounts(
        self, session_id: str, *, now: datetime, role: Role | None = None
    ) -> list[Account]:
        """Accounts without personal data (administrators)."""
        self._admin(session_id, utc(now))
        with self._read() as conn:
            return [row.account for row in self.accounts.list(conn, role)]

    def get_profile(self, session_id: str, *, now: datetime, user_id: str | None = None) -> Profile:
        """The session user's own profile, or (administrators) a staff account's. A patient's
        name and address are not for administrators: that someone is a patient here is
        already health data (Forbidden)."""
        now = utc(now)
        session = self._session(session_id, now)
        other = user_id is not None and user_id != session.user_id
        if other:
            self._admin(session_id, now)
        with self._read() as conn:
            row = self.accounts.by_id(conn, user_id or session.user_id)
        if row is None:
            raise NotFound("no such account")
        if other and row.role is Role.PATIENT:
            raise Forbidden("administrators do not read patients' personal data")
        return Profile(row.account, self.accounts.open_personal(row))

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
        session = self._session(session_id, now)
        with self._failures_audited(now, ATTRS_CHANGED, Who.of(session), address=address):
            row = self._row(session)
            if not self.hasher.verify(row.password_hash, current):
                raise InvalidCredentials()
            personal = self.accounts.open_personal(row)
            check_strength(new, (personal.email, personal.display_name))
            password_hash = self.hasher.hash(new)
            with self._write() as conn:
                self.accounts.update(conn, row.user_id, now, password_hash=password_hash)
                self._audit(
                    conn,
                    now,
                    ATTRS_CHANGED,
                    Who.of(session),
                    resource=("Account", row.user_id),
                    address=address,
                )
        self.sessions.revoke_user(row.user_id, keep_ref=session.ref)

    def _row(self, session: Session) -> AccountRow:
        with self._read() as conn:
            row = self.accounts.by_id(conn, session.user_id)
        if row is None:
            raise SessionExpired()
        return row
