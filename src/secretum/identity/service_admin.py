"""Administration: lock, disable or re-activate accounts, close an erased patient's account,
reset a second factor, list accounts (administrators, with a fresh second factor).
Audit: ``SECURITY_ALERT`` / 110137 "User Security Attributes Changed"."""

from __future__ import annotations

from datetime import datetime

from secretum.access.model import Role
from secretum.identity.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
)
from secretum.identity.model import Account, AccountStatus, utc
from secretum.identity.service_base import ATTRS_CHANGED, ATTRS_DELETED, IdentityCore, Who


class Administration:
    """Administrators manage accounts: status, erasure closing, second-factor reset, listing."""

    def __init__(self, core: IdentityCore) -> None:
        self.core = core

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
        admin = self.core.admin_session(session_id, now)
        status = AccountStatus(status)
        with self.core.failures_audited(now, ATTRS_CHANGED, Who.of(admin), address=address):
            if user_id == admin.user_id:
                raise Forbidden("administrators do not change their own status")
            if status is AccountStatus.INVITED:
                raise InvalidInput("status", "an account becomes invited only by an invitation")
            if status is AccountStatus.ERASED:
                raise InvalidInput("status", "an account is erased only by the patient's erasure")
            with self.core.write() as conn:
                row = self.core.accounts.by_id(conn, user_id)
                if row is None:
                    raise NotFound("no such account")
                if row.account.status is AccountStatus.INVITED and status is AccountStatus.ACTIVE:
                    raise InvalidInput("status", "the invitee activates the account")
                if row.account.status is AccountStatus.ERASED:
                    raise InvalidInput("status", "an erased account stays closed")
                self.core.accounts.update(conn, user_id, now, status=status)
                self.core.record(
                    conn,
                    now,
                    ATTRS_CHANGED,
                    Who.of(admin),
                    resource=("Account", user_id),
                    address=address,
                )
        if status is AccountStatus.ACTIVE:
            self.core.limiter.reset(row.limit_key)
        else:
            self.core.sessions.revoke_user(user_id)

    def close_erased(self, user_id: str, *, now: datetime, who: Who) -> bool:
        """Close the account of a patient whose data were just erased (key shredded, by
        ``who``): status ERASED for good, every session ended, audited. False when there is
        no such account (a patient record without an account)."""
        now = utc(now)
        with self.core.write() as conn:
            if self.core.accounts.by_id(conn, user_id) is None:
                return False
            self.core.accounts.update(conn, user_id, now, status=AccountStatus.ERASED)
            self.core.record(conn, now, ATTRS_CHANGED, who, resource=("Account", user_id))
        self.core.sessions.revoke_user(user_id)
        return True

    def reset_mfa(
        self, session_id: str, user_id: str, *, now: datetime, address: str | None = None
    ) -> None:
        """Forget every second factor of an account (lost or blocked authenticators) and end
        its sessions; at the next sign-in the user enrols again (administrators, after
        checking the user's identity out of band)."""
        now = utc(now)
        admin = self.core.admin_session(session_id, now)
        with self.core.failures_audited(now, ATTRS_DELETED, Who.of(admin), address=address):
            if user_id == admin.user_id:
                raise Forbidden("another administrator resets your MFA")
            with self.core.write() as conn:
                if self.core.accounts.by_id(conn, user_id) is None:
                    raise NotFound("no such account")
                self.core.factors.reset(conn, user_id)
                self.core.record(
                    conn,
                    now,
                    ATTRS_DELETED,
                    Who.of(admin),
                    resource=("Account", user_id),
                    address=address,
                )
        self.core.sessions.revoke_user(user_id)

    def list_accounts(
        self, session_id: str, *, now: datetime, role: Role | None = None
    ) -> list[Account]:
        """Accounts without personal data (administrators)."""
        self.core.admin_session(session_id, utc(now))
        with self.core.read() as conn:
            return [row.account for row in self.core.accounts.list(conn, role)]
