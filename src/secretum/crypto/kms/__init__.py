"""Key-encryption keys: the KMS port and its adapters.

``open_kms(kind, **params)`` / ``create_kms(kind, **params)`` pick an adapter by name:

- ``"local"``: :class:`LocalKeystoreKMS` (``path``, ``passphrase``);
- ``"pkcs11"``: :class:`~secretum.crypto.kms.pkcs11.Pkcs11KMS` (``module_path``,
  ``token_label``, ``pin``), imported only when asked for, since it needs python-pkcs11;
- ``"fake"``: :class:`FakeKMS` (in memory, for tests; ``create_kms`` only).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Final

from secretum.crypto.errors import CryptoError
from secretum.crypto.kms.base import KeyManagementService, WrappedKey
from secretum.crypto.kms.fake import FakeKMS
from secretum.crypto.kms.local import KeystoreError, KeystorePassphraseError, LocalKeystoreKMS

__all__ = [
    "KINDS",
    "FakeKMS",
    "HsmError",
    "HsmPinError",
    "KeyManagementService",
    "KeystoreError",
    "KeystorePassphraseError",
    "KmsBackendUnavailableError",
    "LocalKeystoreKMS",
    "Pkcs11KMS",
    "WrappedKey",
    "create_kms",
    "open_kms",
]

KINDS: Final = ("local", "pkcs11", "fake")
PKCS11_INSTALL_HINT: Final = (
    "the 'pkcs11' KMS needs python-pkcs11 with AES-GCM support: "
    "pip install 'python-pkcs11>=0.10.1' (and the HSM vendor's PKCS#11 module)"
)
_LAZY: Final = frozenset({"Pkcs11KMS", "HsmError", "HsmPinError"})


class KmsBackendUnavailableError(CryptoError):
    """The requested KMS adapter needs a package that is not installed."""


def _load_pkcs11() -> ModuleType:
    try:
        return importlib.import_module("secretum.crypto.kms.pkcs11")
    except ImportError as exc:
        if exc.name != "pkcs11" and not (exc.name or "").startswith("pkcs11."):
            raise
        raise KmsBackendUnavailableError(PKCS11_INSTALL_HINT) from exc


def __getattr__(name: str) -> Any:
    """Load the pkcs11 adapter's names on first use only."""
    if name in _LAZY:
        return getattr(_load_pkcs11(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _adapter(kind: str) -> Any:
    if kind == "local":
        return LocalKeystoreKMS
    if kind == "pkcs11":
        return _load_pkcs11().Pkcs11KMS
    if kind == "fake":
        return FakeKMS
    raise ValueError(f"unknown KMS kind {kind!r}; known kinds: {', '.join(KINDS)}")


def open_kms(kind: str, **params: Any) -> KeyManagementService:
    """Open an existing KMS of adapter ``kind`` with the adapter's ``open`` parameters."""
    adapter = _adapter(kind)
    if kind == "fake":
        raise ValueError("a fake KMS lives in memory only: use create_kms('fake')")
    kms: KeyManagementService = adapter.open(**params)
    return kms


def create_kms(kind: str, **params: Any) -> KeyManagementService:
    """Create a KMS of adapter ``kind`` holding KEK version 1."""
    adapter = _adapter(kind)
    kms: KeyManagementService = adapter(**params) if kind == "fake" else adapter.create(**params)
    return kms
