"""Repository of accounts, one-time tokens and known devices. Callers pass the connection of
their transaction.

Personal data (display name, e-mail, RPPS number) is sealed as one JSON document with the
account's own data key (owner id = user id; for a patient, the very key that seals their
health data, so erasure shreds both), in the context ``("Account", user_id, user_id, 1)``.
The e-mail is found through its blind index. Tokens and device ids are stored as SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from secretum.access.model import Role
from secretum.crypto.blind_index import BlindIndex
from secretum.crypto.context import RecordContext
from secretum.crypto.records import key_id_of, open_sealed, seal
from secretum.identity.model import Account, AccountStatus, PersonalData
from secretum.identity.tables import accounts, devices, tokens
from secretum.keys.keyring import KeyRing
from secretum.storage.integrity import RowSpec

#: What the tag of an account covers (see :mod:`secretum.storage.integrity`): its role (a
#: patient turned into a practitioner or an admin), its status (a disabled account enabled
#: again), its specialty, its e-mail index and user handle (the ways to find it) and its
#: password hash (a hash of the attacker's choosing). Checked on every read of an account.
ACCOUNT_SPEC = RowSpec(
    "identity_accounts",
    ("user_id",),
    ("role", "status", "specialty", "email_index", "user_handle", "password_hash"),
)


def sha256(value: str | bytes) -> bytes:
    return hashlib.sha256(value.encode("utf-8") if isinstance(value, str) else value).digest()


def _context(user_id: str) -> RecordContext:
    return RecordContext("Account", user_id, user_id, 1)


@dataclass(frozen=True)
class AccountRow:
    """An account with what only the identity context sees (hashes, handle, sealed data)."""

    account: Account
    email_index: bytes
    user_handle: bytes
    password_hash: str | None
    sealed: bytes

    @property
    def user_id(self) -> str:
        return self.account.user_id

    @property
    def role(self) -> Role:
        return self.account.role

    @property
    def limit_key(self) -> str:
        """The brute-force limiter key of this account (see :mod:`.ratelimit`)."""
        return "acct:" + self.email_index.hex()

    def __repr__(self) -> str:
        return f"AccountRow({self.user_id}, {self.role}, {self.account.status})"


@dataclass(frozen=True)
class TokenRow:
    kind: str
    user_id: str | None
    created_by: str | None
    expires_at: datetime
    used_at: datetime | None


class AccountStore:
    def __init__(self, keyring: KeyRing, blind_index: BlindIndex) -> None:
        self.keyring = keyring
        self.blind_index = blind_index

    # -- accounts ---------------------------------------------------------------------------

    def email_index(self, email: str) -> bytes:
        return self.blind_index("email", email)

    def seal_personal(self, user_id: str, personal: PersonalData) -> bytes:
        key = self.keyring.data_key(user_id, create=True)
        document = {"display_name": personal.display_name, "email": personal.email}
        if personal.rpps is not None:
            document["rpps"] = personal.rpps
        return seal(key, json.dumps(document, sort_keys=True).encode(), _context(user_id))

    def open_personal(self, row: AccountRow) -> PersonalData:
        key = self.keyring.data_key_for(row.user_id, key_id_of(row.sealed))
        document = json.loads(open_sealed(key, row.sealed, _context(row.user_id)))
        return PersonalData(document["display_name"], document["email"], document.get("rpps"))

    def create(
        self,
        conn: Connection,
        *,
        user_id: str,
        role: Role,
        status: AccountStatus,
        personal: PersonalData,
        user_handle: bytes,
        now: datetime,
        specialty: str | None = None,
        password_hash: str | None = None,
    ) -> Account:
        tagged = dict(
            user_id=user_id,
            role=str(role),
            status=str(status),
            email_index=self.email_index(personal.email),
            user_handle=user_handle,
            specialty=specialty,
            password_hash=password_hash,
        )
        conn.execute(
            insert(accounts).values(
                personal=self.seal_personal(user_id, personal),
                created_at=now,
                updated_at=now,
                **ACCOUNT_SPEC.tagged(conn, tagged),
            )
        )
        return Account(user_id, role, status, specialty, now)

    @staticmethod
    def _row(conn: Connection, r: RowMapping | None) -> AccountRow | None:
        """An account, its tag checked (RowTampered if it fails)."""
        if r is None:
            return None
        ACCOUNT_SPEC.check(conn, r)
        account = Account(
            r["user_id"],
            Role(r["role"]),
            AccountStatus(r["status"]),
            r["specialty"],
            r["created_at"],
            r["last_sign_in_at"],
        )
        return AccountRow(
            account, r["email_index"], r["user_handle"], r["password_hash"], r["personal"]
        )

    def _one(self, conn: Connection, where: Any) -> AccountRow | None:
        return self._row(conn, conn.execute(select(accounts).where(where)).mappings().first())

    def by_id(self, conn: Connection, user_id: str) -> AccountRow | None:
        return self._one(conn, accounts.c.user_id == user_id)

    def by_email(self, conn: Connection, email: str) -> AccountRow | None:
        return self._one(conn, accounts.c.email_index == self.email_index(email))

    def by_handle(self, conn: Connection, user_handle: bytes) -> AccountRow | None:
        return self._one(conn, accounts.c.user_handle == user_handle)

    def list(self, conn: Connection, role: Role | None = None) -> list[AccountRow]:
        query = select(accounts).order_by(accounts.c.created_at, accounts.c.user_id)
        if role is not None:
            query = query.where(accounts.c.role == str(role))
        return [row for r in conn.execute(query).mappings() if (row := self._row(conn, r))]

    def admin_exists(self, conn: Connection) -> bool:
        query = select(accounts.c.user_id).where(accounts.c.role == str(Role.ADMIN)).limit(1)
        return conn.execute(query).first() is not None

    def update(self, conn: Connection, user_id: str, now: datetime, **values: Any) -> bool:
        """Set columns (``status``, ``password_hash``, ``last_sign_in_at``, ``personal``...).

        A change to a column the tag covers re-tags the row, after checking its current tag
        (RowTampered: a tampered account is never laundered by a new tag)."""
        values = {
            k: str(v) if isinstance(v, (AccountStatus, Role)) else v for k, v in values.items()
        }
        if set(values) & set(ACCOUNT_SPEC.fields):
            current = (
                conn.execute(
                    select(accounts).where(accounts.c.user_id == user_id).with_for_update()
                )
                .mappings()
                .first()
            )
            if current is None:
                return False
            ACCOUNT_SPEC.check(conn, current)
            values["row_mac"] = ACCOUNT_SPEC.tag(conn, {**current, **values})
        result = conn.execute(
            update(accounts).where(accounts.c.user_id == user_id).values(updated_at=now, **values)
        )
        return result.rowcount == 1

    # -- one-time tokens --------------------------------------------------------------------

    @staticmethod
    def add_token(
        conn: Connection,
        token: str,
        *,
        kind: str,
        now: datetime,
        expires_at: datetime,
        user_id: str | None = None,
        created_by: str | None = None,
    ) -> None:
        conn.execute(
            insert(tokens).values(
                token_hash=sha256(token),
                kind=kind,
                user_id=user_id,
                created_by=created_by,
                created_at=now,
                expires_at=expires_at,
            )
        )

    @staticmethod
    def find_token(conn: Connection, token: str, kinds: tuple[str, ...]) -> TokenRow | None:
        row = (
            conn.execute(
                select(tokens).where(tokens.c.token_hash == sha256(token), tokens.c.kind.in_(kinds))
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        return TokenRow(
            row["kind"], row["user_id"], row["created_by"], row["expires_at"], row["used_at"]
        )

    @staticmethod
    def use_token(conn: Connection, token: str, now: datetime) -> bool:
        """Mark a token used; False if it was used already (a concurrent use won)."""
        result = conn.execute(
            update(tokens)
            .where(tokens.c.token_hash == sha256(token), tokens.c.used_at.is_(None))
            .values(used_at=now)
        )
        return result.rowcount == 1

    @staticmethod
    def retire_tokens(conn: Connection, kind: str, now: datetime) -> None:
        """Spend every unused token of ``kind`` (a new set-up token replaces the old ones)."""
        conn.execute(
            update(tokens)
            .where(tokens.c.kind == kind, tokens.c.used_at.is_(None))
            .values(used_at=now)
        )

    # -- devices ----------------------------------------------------------------------------

    @staticmethod
    def device_ref(device_id: str) -> str:
        return hashlib.sha256(device_id.encode("utf-8")).hexdigest()

    @staticmethod
    def remember_device(conn: Connection, user_id: str, device_ref: str, now: datetime) -> bool:
        """Record a sign-in from ``device_ref``; True if the device was new for this user."""
        seen = conn.execute(
            update(devices)
            .where(devices.c.user_id == user_id, devices.c.device_ref == device_ref)
            .values(last_seen_at=now)
        ).rowcount
        if seen:
            return False
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(devices).values(
                        user_id=user_id, device_ref=device_ref, first_seen_at=now, last_seen_at=now
                    )
                )
        except IntegrityError:  # a concurrent sign-in from the same device recorded it
            return False
        return True

    @staticmethod
    def has_devices(conn: Connection, user_id: str) -> bool:
        query = select(devices.c.device_ref).where(devices.c.user_id == user_id).limit(1)
        return conn.execute(query).first() is not None
