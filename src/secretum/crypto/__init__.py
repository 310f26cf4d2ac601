"""The one door to cryptography.

Application code calls these recipes, never ``cryptography.hazmat`` directly:

* :func:`seal` / :func:`open_sealed` — records and fields (AES-256-GCM, context as AD);
* :mod:`secretum.crypto.streaming` — files (Tink-compatible AES-GCM-HKDF streaming AEAD);
* :class:`BlindIndex` — exact-match lookup of sensitive identifiers;
* :mod:`secretum.crypto.kms` — the KMS port (local keystore, PKCS#11 HSM) that wraps keys.
"""

from secretum.crypto.blind_index import BlindIndex
from secretum.crypto.context import FileContext, RecordContext
from secretum.crypto.errors import (
    CryptoError,
    FormatError,
    IntegrityError,
    KeyNotFoundError,
    KeyRetiredError,
    KeyShreddedError,
)
from secretum.crypto.keys import DataKey
from secretum.crypto.records import open_sealed, seal

__all__ = [
    "BlindIndex",
    "CryptoError",
    "DataKey",
    "FileContext",
    "FormatError",
    "IntegrityError",
    "KeyNotFoundError",
    "KeyRetiredError",
    "KeyShreddedError",
    "RecordContext",
    "open_sealed",
    "seal",
]
