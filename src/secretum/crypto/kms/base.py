"""The KMS port: where key-encryption keys (KEKs) live.

A KMS holds versioned KEKs and never hands them out: callers give it a key to wrap (with an
associated-data context) and get back an opaque blob, or give it a blob to unwrap. Secretum
uses it to wrap each patient's data key (DEK) and its own named secrets (audit signing key,
CA key, blind-index key).

Adapters: :mod:`.local` (a keystore file encrypted under a passphrase) and :mod:`.pkcs11`
(an HSM; the KEK is generated inside the token and cannot be extracted). :mod:`.fake` is an
in-memory one for unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A key wrapped by KEK version ``kek_version``; ``blob`` is opaque to callers."""

    kek_version: int
    blob: bytes

    def __repr__(self) -> str:  # never print the blob
        return f"WrappedKey(kek_version={self.kek_version}, blob=<{len(self.blob)} bytes>)"


@runtime_checkable
class KeyManagementService(Protocol):
    """Versioned key-encryption keys that wrap and unwrap other keys."""

    #: short name of the adapter, e.g. "local" or "pkcs11"
    name: str

    def current_version(self) -> int:
        """The version new wraps use (>= 1)."""
        ...

    def versions(self) -> list[int]:
        """Every KEK version still held, ascending."""
        ...

    def min_decrypt_version(self) -> int:
        """Versions below this were retired: unwrapping with them raises KeyRetiredError."""
        ...

    def create_version(self) -> int:
        """Generate a new KEK version, make it current and return it."""
        ...

    def retire_below(self, version: int) -> None:
        """Destroy every KEK version below ``version``. ``version`` must be held."""
        ...

    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        """Encrypt ``key`` under the current KEK, binding ``context`` as associated data."""
        ...

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        """Decrypt a wrapped key. Raises IntegrityError on a wrong context or tampered blob,
        KeyRetiredError / KeyNotFoundError when its KEK version is gone."""
        ...

    def close(self) -> None:
        """Release sessions and handles."""
        ...
