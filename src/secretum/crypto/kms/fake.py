"""In-memory KMS: :class:`FakeKMS` for unit tests, and the engine the other adapters share.

:class:`MemoryKeyring` holds versioned AES-256 KEKs in memory and wraps with AES-256-GCM;
:class:`~secretum.crypto.kms.local.LocalKeystoreKMS` is that engine plus a keystore file.
The wrapped-key blob format lives here too, and :mod:`.pkcs11` produces the same blobs:

    blob = 0x01 (format) || nonce (12 bytes, random) || ciphertext || tag (16 bytes)
    associated data = encode_fields("secretum/kms/wrap", 1, kek_version, context)

so a blob relabelled to another KEK version, or opened with another context, fails.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secretum.crypto.context import encode_fields
from secretum.crypto.errors import (
    CryptoError,
    FormatError,
    IntegrityError,
    KeyNotFoundError,
    KeyRetiredError,
)
from secretum.crypto.kms.base import WrappedKey

Rng = Callable[[int], bytes]
Clock = Callable[[], datetime]

#: blob = FORMAT_V1 || 12-byte nonce || AES-256-GCM ciphertext || 16-byte tag
FORMAT_V1: Final = 0x01
NONCE_LEN: Final = 12
TAG_LEN: Final = 16
KEK_LEN: Final = 32
MAX_KEY_LEN: Final = 64 * 1024


def utcnow() -> datetime:
    """The default clock: now, in UTC."""
    return datetime.now(UTC)


def wrap_aad(kek_version: int, context: bytes) -> bytes:
    """Associated data of a wrap: binds the format, the KEK version and the caller's context."""
    return encode_fields("secretum/kms/wrap", FORMAT_V1, kek_version, context)


def check_wrap_args(key: bytes, context: bytes) -> None:
    """Refuse arguments that are surely bugs (without echoing them)."""
    if not isinstance(key, bytes) or not isinstance(context, bytes):
        raise TypeError("key and context must be bytes")
    if not 0 < len(key) <= MAX_KEY_LEN:
        raise ValueError(f"a wrapped key is 1 to {MAX_KEY_LEN} bytes long")


def seal_blob(nonce: bytes, ciphertext_and_tag: bytes) -> bytes:
    """Assemble a v1 blob from its nonce and GCM output."""
    return bytes([FORMAT_V1]) + nonce + ciphertext_and_tag


def open_blob(blob: bytes) -> tuple[bytes, bytes]:
    """Split a blob into (nonce, ciphertext||tag); FormatError if it is not a v1 blob."""
    if not isinstance(blob, bytes) or len(blob) < 1 + NONCE_LEN + TAG_LEN + 1:
        raise FormatError("wrapped key blob is truncated")
    if blob[0] != FORMAT_V1:
        raise FormatError("unknown wrapped key format")
    return blob[1 : 1 + NONCE_LEN], blob[1 + NONCE_LEN :]


def check_unwrap_version(version: int, held: Mapping[int, object], min_decrypt: int) -> None:
    """Raise KeyRetiredError / KeyNotFoundError when ``version`` cannot be used to unwrap."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise KeyNotFoundError("no such KEK version")
    if version < min_decrypt:
        raise KeyRetiredError(f"KEK version {version} was retired (minimum {min_decrypt})")
    if version not in held:
        raise KeyNotFoundError(f"KEK version {version} is not held")


def check_retire(version: int, held: Mapping[int, object], min_decrypt: int) -> None:
    """Validate ``retire_below(version)``: it may never destroy the current version."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError("KEK versions start at 1")
    if version > max(held):
        raise ValueError(f"refusing to retire the current KEK version {max(held)}")
    check_unwrap_version(version, held, min_decrypt)


@dataclass(frozen=True, slots=True)
class Kek:
    """One KEK version; the key never shows in repr."""

    version: int
    created: datetime
    key: bytes = field(repr=False)
    aead: AESGCM = field(repr=False, compare=False)


def new_kek(version: int, created: datetime, key: bytes) -> Kek:
    """A :class:`Kek` with its AES-GCM cipher ready."""
    if len(key) != KEK_LEN:
        raise FormatError("a KEK is 32 bytes")
    return Kek(version, created, key, AESGCM(key))


class MemoryKeyring:
    """Versioned AES-256 KEKs held in memory; wraps with AES-256-GCM.

    Thread safe (one re-entrant lock). Subclasses persist state by overriding
    :meth:`_refresh` (pick up changes made elsewhere), :meth:`_mutating` (exclusive section
    around a change, entered with the lock held) and :meth:`_commit` (store the new state,
    then adopt it; on failure nothing changes).
    """

    name = "memory"

    def __init__(self, *, rng: Rng = os.urandom, now: Clock = utcnow) -> None:
        self._rng = rng
        self._now = now
        self._lock = threading.RLock()
        self._keks: dict[int, Kek] = {}
        self._min = 1
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(versions={sorted(self._keks)}, min={self._min})"

    def __reduce__(self) -> Any:  # never let key material leave through pickle
        raise TypeError(f"{type(self).__name__} cannot be pickled")

    def _check_open(self) -> None:
        if self._closed:
            raise CryptoError(f"this {self.name} KMS was closed")

    def _sync(self) -> None:
        self._check_open()
        self._refresh()

    def _refresh(self) -> None:
        """Pick up state changed by someone else (no-op in memory)."""

    @contextmanager
    def _mutating(self) -> Iterator[None]:
        self._sync()
        yield

    def _commit(self, keks: dict[int, Kek], min_decrypt: int) -> None:
        self._keks, self._min = keks, min_decrypt

    def _generate(self, version: int) -> Kek:
        key = self._rng(KEK_LEN)
        if len(key) != KEK_LEN:
            raise CryptoError("random source returned a short read")
        return new_kek(version, self._now(), key)

    def current_version(self) -> int:
        """The version new wraps use."""
        with self._lock:
            self._sync()
            return max(self._keks)

    def versions(self) -> list[int]:
        """Held KEK versions, ascending."""
        with self._lock:
            self._sync()
            return sorted(self._keks)

    def min_decrypt_version(self) -> int:
        """Versions below this were retired."""
        with self._lock:
            self._sync()
            return self._min

    def created_at(self, version: int) -> datetime:
        """When KEK ``version`` was generated."""
        with self._lock:
            self._sync()
            check_unwrap_version(version, self._keks, self._min)
            return self._keks[version].created

    def create_version(self) -> int:
        """Generate a new KEK, make it current and return its version."""
        with self._lock, self._mutating():
            new = max(self._keks) + 1
            self._commit({**self._keks, new: self._generate(new)}, self._min)
            return new

    def retire_below(self, version: int) -> None:
        """Destroy every KEK below ``version`` (a held version, at most the current one)."""
        with self._lock, self._mutating():
            check_retire(version, self._keks, self._min)
            kept = {v: k for v, k in self._keks.items() if v >= version}
            self._commit(kept, max(self._min, version))

    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        """Seal ``key`` under the current KEK with ``context`` as associated data."""
        check_wrap_args(key, context)
        with self._lock:
            self._sync()
            kek = self._keks[max(self._keks)]
            nonce = self._rng(NONCE_LEN)
        if len(nonce) != NONCE_LEN:
            raise CryptoError("random source returned a short read")
        sealed = kek.aead.encrypt(nonce, key, wrap_aad(kek.version, context))
        return WrappedKey(kek.version, seal_blob(nonce, sealed))

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        """Open a wrapped key; IntegrityError unless blob, version and context all match."""
        if not isinstance(context, bytes):
            raise TypeError("context must be bytes")
        with self._lock:
            self._sync()
            check_unwrap_version(wrapped.kek_version, self._keks, self._min)
            kek = self._keks[wrapped.kek_version]
        nonce, sealed = open_blob(wrapped.blob)
        try:
            return kek.aead.decrypt(nonce, sealed, wrap_aad(kek.version, context))
        except InvalidTag:
            raise IntegrityError("wrapped key did not authenticate") from None

    def close(self) -> None:
        """Forget the key material held in memory; later calls raise CryptoError."""
        with self._lock:
            self._keks, self._closed = {}, True


class FakeKMS(MemoryKeyring):
    """In-memory KMS with the same semantics as the real adapters, for unit tests.

    Starts with KEK version 1. Deterministic when given ``seed`` or an ``rng`` (a function
    ``n -> n random bytes``): ``FakeKMS(seed=1)`` makes the same KEKs and nonces, hence the
    same blobs, on every run.
    """

    name = "fake"

    def __init__(
        self, rng: Rng | None = None, *, seed: int | None = None, now: Clock = utcnow
    ) -> None:
        if rng is not None and seed is not None:
            raise ValueError("pass rng or seed, not both")
        if seed is not None:
            rng = random.Random(seed).randbytes  # noqa: S311 - deterministic on purpose
        super().__init__(rng=rng or os.urandom, now=now)
        with self._lock:
            self._commit({1: self._generate(1)}, 1)
