"""The key ring: patients' data keys and the platform's named secrets, wrapped by the KMS.

Hierarchy::

    KMS KEK (versioned; local keystore or HSM, never leaves it)
      └─ wraps ─► patient data key (DEK, one per patient)   ─► record key, file key (HKDF)
      └─ wraps ─► named secrets (audit signing key, CA key, blind-index key)

Wrapped keys live in the *key vault* (:mod:`secretum.keys.tables`), a database apart from the
main one. Unwrapped data keys are cached in memory for ``cache_seconds`` (default 30 s) so that a
read does not cost a KMS call; shredding evicts the key from this instance's cache at once, and
other instances drop it when their cache entry expires.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from secretum.crypto.context import key_wrap_context
from secretum.crypto.errors import KeyNotFoundError, KeyShreddedError
from secretum.crypto.keys import DataKey
from secretum.crypto.kms.base import KeyManagementService, WrappedKey
from secretum.keys.tables import data_keys, named_secrets, tombstones

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _dek_context(owner_id: str, key_id: bytes) -> bytes:
    return key_wrap_context("patient-dek", f"{owner_id}/{key_id.hex()}")


def _secret_context(name: str) -> bytes:
    return key_wrap_context("named-secret", name)


@dataclass(frozen=True)
class Shredded:
    """What a shredding destroyed: ids only."""

    owner_id: str
    key_id: bytes
    at: datetime


class KeyRing:
    """Creates, finds, rewraps and shreds wrapped keys in the vault."""

    def __init__(
        self,
        vault: Engine,
        kms: KeyManagementService,
        *,
        cache_seconds: float = 30.0,
        cache_size: int = 10_000,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.vault = vault
        self.kms = kms
        self._cache: OrderedDict[str, tuple[float, DataKey]] = OrderedDict()
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng

    def __repr__(self) -> str:
        return f"KeyRing(kms={self.kms.name})"

    # -- patients' data keys ------------------------------------------------------------------

    def data_key(self, owner_id: str, *, create: bool = False) -> DataKey:
        """The data key of ``owner_id``; with ``create``, made on first use.

        Raises KeyShreddedError if it was shredded (never silently replaced), KeyNotFoundError
        if there is none and ``create`` is false.
        """
        cached = self._cached(owner_id)
        if cached is not None:
            return cached
        with self.vault.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            row = conn.execute(
                select(data_keys.c.key_id, data_keys.c.kek_version, data_keys.c.wrapped).where(
                    data_keys.c.owner_id == owner_id
                )
            ).first()
            gone = (
                None
                if row
                else conn.execute(
                    select(tombstones.c.key_id).where(tombstones.c.owner_id == owner_id)
                ).first()
            )
        if row is not None:
            key_id, kek_version, blob = row
            material = self.kms.unwrap(
                WrappedKey(kek_version, blob), _dek_context(owner_id, key_id)
            )
            return self._remember(owner_id, DataKey(key_id, material))
        if gone is not None:
            raise KeyShreddedError(f"the data key of {owner_id} was shredded")
        if not create:
            raise KeyNotFoundError(f"no data key for {owner_id}")
        return self._create(owner_id)

    def data_key_for(self, owner_id: str, key_id: bytes) -> DataKey:
        """The data key of ``owner_id`` if its id is ``key_id`` (as named in a ciphertext)."""
        key = self.data_key(owner_id)
        if key.key_id != key_id:
            raise KeyNotFoundError(f"{owner_id} has no key {key_id.hex()}")
        return key

    def _create(self, owner_id: str) -> DataKey:
        key, material = DataKey.generate(self._rng)
        wrapped = self.kms.wrap(material, _dek_context(owner_id, key.key_id))
        try:
            with self.vault.begin() as conn:
                conn.execute(
                    insert(data_keys).values(
                        owner_id=owner_id,
                        key_id=key.key_id,
                        kek_version=wrapped.kek_version,
                        wrapped=wrapped.blob,
                        created_at=self._clock(),
                    )
                )
        except DBIntegrityError:  # another instance created it first: use theirs
            return self.data_key(owner_id)
        return self._remember(owner_id, key)

    def shred(self, owner_id: str) -> Shredded:
        """Destroy the data key of ``owner_id``: everything sealed under it is unreadable.

        The wrapped key is deleted from the vault (whose deleted pages are zeroed); only a
        tombstone (ids and time) stays. Callers audit the shredding.
        """
        now = self._clock()
        with self.vault.begin() as conn:
            row = conn.execute(
                select(data_keys.c.key_id).where(data_keys.c.owner_id == owner_id)
            ).first()
            if row is None:
                raise KeyNotFoundError(f"no data key for {owner_id}")
            conn.execute(delete(data_keys).where(data_keys.c.owner_id == owner_id))
            conn.execute(
                insert(tombstones).values(owner_id=owner_id, key_id=row.key_id, shredded_at=now)
            )
        with self._lock:
            self._cache.pop(owner_id, None)
        self._purge_deleted_pages()
        return Shredded(owner_id, row.key_id, now)

    def _purge_deleted_pages(self) -> None:
        """Make the deleted wrapped key leave the files, not just the live rows.

        SQLite zeroes deleted content (``secure_delete``) but the write-ahead log still holds
        the old page until a checkpoint; PostgreSQL keeps dead tuples until VACUUM.
        """
        if self.vault.dialect.name == "sqlite":
            raw = self.vault.raw_connection()  # autocommit: our engine never lets pysqlite BEGIN
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
        elif self.vault.dialect.name == "postgresql":
            with self.vault.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM data_keys")

    def is_shredded(self, owner_id: str) -> bool:
        with self.vault.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            return (
                conn.execute(
                    select(tombstones.c.owner_id).where(tombstones.c.owner_id == owner_id)
                ).first()
                is not None
            )

    # -- the cache ----------------------------------------------------------------------------

    def _cached(self, owner_id: str) -> DataKey | None:
        with self._lock:
            hit = self._cache.get(owner_id)
            if hit is None:
                return None
            if hit[0] <= self._monotonic():
                del self._cache[owner_id]
                return None
            self._cache.move_to_end(owner_id)
            return hit[1]

    def _remember(self, owner_id: str, key: DataKey) -> DataKey:
        if self._cache_seconds > 0:
            with self._lock:
                self._cache[owner_id] = (self._monotonic() + self._cache_seconds, key)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return key

    def forget_cached_keys(self) -> None:
        with self._lock:
            self._cache.clear()

    # -- named secrets ------------------------------------------------------------------------

    def secret(self, name: str, *, generate: Callable[[], bytes] | None = None) -> bytes:
        """A named secret of the platform; created with ``generate()`` if absent and given."""
        with self.vault.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            row = conn.execute(
                select(named_secrets.c.kek_version, named_secrets.c.wrapped).where(
                    named_secrets.c.name == name
                )
            ).first()
        if row is not None:
            return self.kms.unwrap(WrappedKey(row[0], row[1]), _secret_context(name))
        if generate is None:
            raise KeyNotFoundError(f"no secret named {name!r}")
        value = generate()
        wrapped = self.kms.wrap(value, _secret_context(name))
        try:
            with self.vault.begin() as conn:
                conn.execute(
                    insert(named_secrets).values(
                        name=name,
                        kek_version=wrapped.kek_version,
                        wrapped=wrapped.blob,
                        created_at=self._clock(),
                    )
                )
        except DBIntegrityError:
            return self.secret(name)
        return value

    # -- KEK rotation -------------------------------------------------------------------------

    def count_below(self, version: int) -> int:
        """How many wrapped keys still depend on KEK versions below ``version``."""
        with self.vault.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            return sum(
                conn.execute(
                    select(func.count()).select_from(t).where(t.c.kek_version < version)
                ).scalar_one()
                for t in (data_keys, named_secrets)
            )

    def rewrap_batch(self, target: int, batch_size: int = 500) -> int:
        """Rewrap up to ``batch_size`` keys wrapped below KEK ``target``, in one short
        transaction; returns how many. Idempotent, so a crashed rotation simply resumes."""
        done = 0
        now = self._clock()
        with self.vault.begin() as conn:
            for table, key_col in (
                (data_keys, data_keys.c.owner_id),
                (named_secrets, named_secrets.c.name),
            ):
                query = (
                    select(table)
                    .where(table.c.kek_version < target)
                    .order_by(key_col)
                    .limit(batch_size - done)
                )
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                for row in conn.execute(query).mappings().all():
                    if table is data_keys:
                        context = _dek_context(row["owner_id"], row["key_id"])
                    else:
                        context = _secret_context(row["name"])
                    material = self.kms.unwrap(
                        WrappedKey(row["kek_version"], row["wrapped"]), context
                    )
                    new = self.kms.wrap(material, context)
                    conn.execute(
                        update(table)
                        .where(key_col == row[key_col.name])
                        .where(table.c.kek_version == row["kek_version"])
                        .values(kek_version=new.kek_version, wrapped=new.blob, rewrapped_at=now)
                    )
                    done += 1
                if done >= batch_size:
                    break
        return done
