"""Repository of second factors and ceremonies: WebAuthn credentials, TOTP secrets, recovery
codes, and the short-lived state of ceremonies (challenges, pending sign-ins). Callers pass
the connection of their transaction.

Single use is enforced by the database: a ceremony is *deleted* when taken (of two concurrent
takers one gets it), a TOTP step is accepted by a conditional ``UPDATE`` (``last_step`` must be
lower), a recovery code by ``UPDATE ... WHERE used_at IS NULL``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, RowMapping, delete, func, insert, select, update

from secretum.crypto.context import RecordContext
from secretum.crypto.records import key_id_of, open_sealed, seal
from secretum.identity.factors import new_recovery_codes, recovery_hash
from secretum.identity.model import CredentialInfo, CredentialKind
from secretum.identity.tables import ceremonies, recovery_codes, totp_secrets, webauthn_credentials
from secretum.keys.keyring import KeyRing

Rng = Callable[[int], bytes]


def _hash(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


@dataclass(frozen=True)
class Ceremony:
    kind: str
    user_id: str | None
    challenge: bytes | None
    expires_at: datetime


@dataclass(frozen=True)
class StoredCredential:
    ref: str
    credential_id: bytes
    user_id: str
    kind: CredentialKind
    public_key: bytes
    sign_count: int
    blocked_at: datetime | None


@dataclass(frozen=True)
class TotpState:
    secret: str | None  # confirmed secret (opened)
    last_step: int | None
    pending: str | None  # secret being set up (opened)


class FactorStore:
    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring

    def _seal(self, user_id: str, kind: str, item: str, plaintext: str) -> bytes:
        key = self.keyring.data_key(user_id, create=True)
        return seal(key, plaintext.encode("utf-8"), RecordContext(kind, item, user_id, 1))

    def _open(self, user_id: str, kind: str, item: str, sealed: bytes) -> str:
        key = self.keyring.data_key_for(user_id, key_id_of(sealed))
        return open_sealed(key, sealed, RecordContext(kind, item, user_id, 1)).decode("utf-8")

    # -- ceremonies -------------------------------------------------------------------------

    @staticmethod
    def open_ceremony(
        conn: Connection,
        ceremony_id: str,
        *,
        kind: str,
        expires_at: datetime,
        user_id: str | None = None,
        challenge: bytes | None = None,
    ) -> None:
        conn.execute(
            insert(ceremonies).values(
                ceremony_hash=_hash(ceremony_id),
                kind=kind,
                user_id=user_id,
                challenge=challenge,
                expires_at=expires_at,
            )
        )

    @staticmethod
    def peek_ceremony(
        conn: Connection, ceremony_id: str, kind: str, now: datetime
    ) -> Ceremony | None:
        row = (
            conn.execute(
                select(ceremonies).where(
                    ceremonies.c.ceremony_hash == _hash(ceremony_id), ceremonies.c.kind == kind
                )
            )
            .mappings()
            .first()
        )
        if row is None or row["expires_at"] <= now:
            return None
        return Ceremony(row["kind"], row["user_id"], row["challenge"], row["expires_at"])

    def take_ceremony(
        self, conn: Connection, ceremony_id: str, kind: str, now: datetime
    ) -> Ceremony | None:
        """The ceremony, deleted so that it never serves twice; None if unknown or expired."""
        found = self.peek_ceremony(conn, ceremony_id, kind, now)
        gone = conn.execute(
            delete(ceremonies).where(
                ceremonies.c.ceremony_hash == _hash(ceremony_id), ceremonies.c.kind == kind
            )
        ).rowcount
        return found if gone == 1 else None

    @staticmethod
    def purge_ceremonies(conn: Connection, now: datetime) -> int:
        return conn.execute(delete(ceremonies).where(ceremonies.c.expires_at <= now)).rowcount

    # -- WebAuthn credentials -----------------------------------------------------------------

    def add_credential(
        self,
        conn: Connection,
        *,
        ref: str,
        credential_id: bytes,
        user_id: str,
        kind: CredentialKind,
        name: str,
        public_key: bytes,
        sign_count: int,
        aaguid: str,
        backed_up: bool,
        now: datetime,
    ) -> None:
        conn.execute(
            insert(webauthn_credentials).values(
                credential_ref=ref,
                credential_id=credential_id,
                user_id=user_id,
                kind=str(kind),
                name=self._seal(user_id, "CredentialName", ref, name),
                public_key=public_key,
                sign_count=sign_count,
                aaguid=aaguid,
                backed_up=backed_up,
                created_at=now,
            )
        )

    @staticmethod
    def _stored(r: RowMapping) -> StoredCredential:
        return StoredCredential(
            r["credential_ref"],
            r["credential_id"],
            r["user_id"],
            CredentialKind(r["kind"]),
            r["public_key"],
            r["sign_count"],
            r["blocked_at"],
        )

    def credential(self, conn: Connection, ref: str) -> StoredCredential | None:
        row = (
            conn.execute(
                select(webauthn_credentials).where(webauthn_credentials.c.credential_ref == ref)
            )
            .mappings()
            .first()
        )
        return None if row is None else self._stored(row)

    def credentials_of(self, conn: Connection, user_id: str) -> list[StoredCredential]:
        rows = conn.execute(
            select(webauthn_credentials)
            .where(webauthn_credentials.c.user_id == user_id)
            .order_by(webauthn_credentials.c.created_at)
        ).mappings()
        return [self._stored(r) for r in rows]

    def list_credentials(self, conn: Connection, user_id: str) -> list[CredentialInfo]:
        rows = conn.execute(
            select(webauthn_credentials)
            .where(webauthn_credentials.c.user_id == user_id)
            .order_by(webauthn_credentials.c.created_at)
        ).mappings()
        return [
            CredentialInfo(
                ref=r["credential_ref"],
                kind=CredentialKind(r["kind"]),
                name=self._open(user_id, "CredentialName", r["credential_ref"], r["name"]),
                created_at=r["created_at"],
                last_used_at=r["last_used_at"],
                blocked_at=r["blocked_at"],
                backed_up=bool(r["backed_up"]),
            )
            for r in rows
        ]

    def rename_credential(self, conn: Connection, user_id: str, ref: str, name: str) -> bool:
        sealed = self._seal(user_id, "CredentialName", ref, name)
        return self._update_credential(conn, user_id, ref, name=sealed)

    @staticmethod
    def _update_credential(conn: Connection, user_id: str, ref: str, **values: object) -> bool:
        result = conn.execute(
            update(webauthn_credentials)
            .where(
                webauthn_credentials.c.credential_ref == ref,
                webauthn_credentials.c.user_id == user_id,
            )
            .values(**values)
        )
        return result.rowcount == 1

    @staticmethod
    def record_use(
        conn: Connection, cred: StoredCredential, sign_count: int, backed_up: bool, now: datetime
    ) -> bool:
        """Store the new counter, unless another use moved it meanwhile (then False)."""
        result = conn.execute(
            update(webauthn_credentials)
            .where(
                webauthn_credentials.c.credential_ref == cred.ref,
                webauthn_credentials.c.sign_count == cred.sign_count,
                webauthn_credentials.c.blocked_at.is_(None),
            )
            .values(sign_count=sign_count, backed_up=backed_up, last_used_at=now)
        )
        return result.rowcount == 1

    def block_credential(self, conn: Connection, cred: StoredCredential, now: datetime) -> None:
        self._update_credential(conn, cred.user_id, cred.ref, blocked_at=now)

    @staticmethod
    def delete_credential(conn: Connection, user_id: str, ref: str) -> bool:
        result = conn.execute(
            delete(webauthn_credentials).where(
                webauthn_credentials.c.credential_ref == ref,
                webauthn_credentials.c.user_id == user_id,
            )
        )
        return result.rowcount == 1

    # -- TOTP -------------------------------------------------------------------------------

    def totp(self, conn: Connection, user_id: str) -> TotpState | None:
        row = (
            conn.execute(select(totp_secrets).where(totp_secrets.c.user_id == user_id))
            .mappings()
            .first()
        )
        if row is None:
            return None
        secret = row["secret"] and self._open(user_id, "TotpSecret", user_id, row["secret"])
        pending = row["pending"] and self._open(user_id, "TotpPending", user_id, row["pending"])
        return TotpState(secret or None, row["last_step"], pending or None)

    def set_pending_totp(self, conn: Connection, user_id: str, secret: str, now: datetime) -> None:
        sealed = self._seal(user_id, "TotpPending", user_id, secret)
        if not conn.execute(
            update(totp_secrets)
            .where(totp_secrets.c.user_id == user_id)
            .values(pending=sealed, pending_at=now)
        ).rowcount:
            conn.execute(
                insert(totp_secrets).values(user_id=user_id, pending=sealed, pending_at=now)
            )

    def confirm_totp(
        self, conn: Connection, user_id: str, secret: str, step: int, now: datetime
    ) -> None:
        """Make the pending secret the one in use; ``step`` (just used) is spent."""
        conn.execute(
            update(totp_secrets)
            .where(totp_secrets.c.user_id == user_id)
            .values(
                secret=self._seal(user_id, "TotpSecret", user_id, secret),
                confirmed_at=now,
                last_step=step,
                pending=None,
                pending_at=None,
            )
        )

    @staticmethod
    def spend_totp_step(conn: Connection, user_id: str, step: int) -> bool:
        """Accept time step ``step`` once: False if it (or a later one) was used already."""
        result = conn.execute(
            update(totp_secrets)
            .where(
                totp_secrets.c.user_id == user_id,
                totp_secrets.c.secret.is_not(None),
                totp_secrets.c.last_step.is_(None) | (totp_secrets.c.last_step < step),
            )
            .values(last_step=step)
        )
        return result.rowcount == 1

    @staticmethod
    def remove_totp(conn: Connection, user_id: str) -> bool:
        return bool(
            conn.execute(delete(totp_secrets).where(totp_secrets.c.user_id == user_id)).rowcount
        )

    @staticmethod
    def has_factor_history(conn: Connection, user_id: str) -> bool:
        """Did this user ever enrol a factor (a credential, even blocked; TOTP; codes)?"""
        for table, extra in (
            (webauthn_credentials, None),
            (totp_secrets, totp_secrets.c.secret.is_not(None)),
            (recovery_codes, None),
        ):
            query = select(table.c.user_id).where(table.c.user_id == user_id).limit(1)
            if extra is not None:
                query = query.where(extra)
            if conn.execute(query).first() is not None:
                return True
        return False

    @staticmethod
    def reset(conn: Connection, user_id: str) -> None:
        """Forget every second factor of ``user_id`` (an administrator's MFA reset)."""
        for table in (webauthn_credentials, totp_secrets, recovery_codes):
            conn.execute(delete(table).where(table.c.user_id == user_id))

    # -- recovery codes ---------------------------------------------------------------------

    @staticmethod
    def replace_recovery_codes(
        conn: Connection, user_id: str, rng: Rng, now: datetime, count: int = 10
    ) -> list[str]:
        """A new set of codes (the old set stops working); the codes are returned once."""
        conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
        salt = rng(16)
        codes = new_recovery_codes(rng, count)
        conn.execute(
            insert(recovery_codes),
            [
                {
                    "user_id": user_id,
                    "code_hash": recovery_hash(salt, c),
                    "salt": salt,
                    "created_at": now,
                }
                for c in codes
            ],
        )
        return codes

    @staticmethod
    def spend_recovery_code(conn: Connection, user_id: str, code: str, now: datetime) -> bool:
        salt = conn.execute(
            select(recovery_codes.c.salt).where(recovery_codes.c.user_id == user_id).limit(1)
        ).scalar()
        if salt is None:
            return False
        result = conn.execute(
            update(recovery_codes)
            .where(
                recovery_codes.c.user_id == user_id,
                recovery_codes.c.code_hash == recovery_hash(salt, code),
                recovery_codes.c.used_at.is_(None),
            )
            .values(used_at=now)
        )
        return result.rowcount == 1

    @staticmethod
    def recovery_codes_left(conn: Connection, user_id: str) -> int:
        return int(
            conn.execute(
                select(func.count())
                .select_from(recovery_codes)
                .where(recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None))
            ).scalar_one()
        )
