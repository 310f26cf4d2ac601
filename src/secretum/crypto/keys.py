"""In-memory key objects that never show their bytes.

A patient's *data key* (DEK) is 32 random bytes, stored only wrapped by the KMS. Two sub-keys
are derived from it with HKDF-SHA256 so that one key is never used by two algorithms:

* the **record key** (AES-256-GCM for fields and FHIR resources, :mod:`.records`);
* the **file key** (the Tink-compatible streaming AEAD, :mod:`.streaming`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_ID_SIZE = 16
KEY_SIZE = 32


def _derive(material: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=label).derive(material)


class DataKey:
    """A patient's data key, unwrapped. ``repr`` and ``str`` show the key id only."""

    __slots__ = ("_aead", "_file_key", "key_id")

    def __init__(self, key_id: bytes, material: bytes) -> None:
        if len(key_id) != KEY_ID_SIZE:
            raise ValueError(f"a key id is {KEY_ID_SIZE} bytes")
        if len(material) != KEY_SIZE:
            raise ValueError(f"a data key is {KEY_SIZE} bytes")
        self.key_id = key_id
        self._aead = AESGCM(_derive(material, b"secretum/dek/records/v1"))
        self._file_key = _derive(material, b"secretum/dek/files/v1")

    @classmethod
    def generate(cls, rng: Callable[[int], bytes] = os.urandom) -> tuple[DataKey, bytes]:
        """A new random key and its material (to be wrapped by the KMS, then forgotten)."""
        material = rng(KEY_SIZE)
        return cls(rng(KEY_ID_SIZE), material), material

    @property
    def record_aead(self) -> AESGCM:
        return self._aead

    @property
    def file_key(self) -> bytes:
        """The 32-byte key of the streaming AEAD (what a Tink keyset would hold)."""
        return self._file_key

    def __repr__(self) -> str:
        return f"DataKey(key_id={self.key_id.hex()})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("data keys are not picklable")
