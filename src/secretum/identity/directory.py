"""The staff directory: who the people acting on patients' records are, by name.

What the pages show around the guarded use cases: a practitioner's name and specialty beside
the notice "Dr X opened your record", the list of practitioners a patient may invite. Staff
identities are professional (no e-mail, no RPPS here); patients are never listed. A read
model of the identity context, in its own read-only connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from secretum.access.model import Role
from secretum.identity.accounts import AccountStore
from secretum.identity.model import AccountStatus
from secretum.storage.db import reader

STAFF_ROLES = frozenset({Role.PRACTITIONER, Role.DPO, Role.ADMIN})


@dataclass(frozen=True)
class StaffMember:
    """A staff account as patients see it: name, role, specialty (no e-mail, no RPPS)."""

    user_id: str
    role: Role
    display_name: str
    specialty: str | None


class StaffDirectory:
    """Names of staff members, and whether an id is a patient's account."""

    def __init__(self, engine: Engine, accounts: AccountStore) -> None:
        self.reads = reader(engine)
        self.accounts = accounts

    def staff(
        self, ids: Iterable[str] | None = None, *, active_only: bool = False
    ) -> dict[str, StaffMember]:
        """Staff accounts by user id (only ``ids`` if given), to name who did what: a
        practitioner locked or disabled since keeps their name in a patient's access log.
        ``active_only`` for choices (whom to invite). Patients are never listed."""
        wanted = None if ids is None else set(ids)
        statuses = (
            {AccountStatus.ACTIVE}
            if active_only
            else {AccountStatus.ACTIVE, AccountStatus.LOCKED, AccountStatus.DISABLED}
        )
        with self.reads.connect() as conn:
            rows = [
                r
                for r in self.accounts.list(conn)
                if r.role in STAFF_ROLES
                and r.account.status in statuses
                and (wanted is None or r.user_id in wanted)
            ]
        found = {}
        for row in rows:
            personal = self.accounts.open_personal(row)
            found[row.user_id] = StaffMember(
                row.user_id, row.role, personal.display_name, row.account.specialty
            )
        return found

    def practitioners(self) -> list[StaffMember]:
        """Active practitioners, by name (the choices of a patient's invitation form)."""
        found = [m for m in self.staff(active_only=True).values() if m.role is Role.PRACTITIONER]
        return sorted(found, key=lambda m: (m.display_name.casefold(), m.user_id))

    def is_patient(self, user_id: str) -> bool:
        """Whether ``user_id`` is a patient's account (any status)."""
        with self.reads.connect() as conn:
            row = self.accounts.by_id(conn, user_id)
        return row is not None and row.role is Role.PATIENT
