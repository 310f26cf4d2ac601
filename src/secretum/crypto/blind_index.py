"""Blind index: exact-match lookup of sensitive identifiers without storing them.

``HMAC-SHA256(index key, kind || normalised value)``: the database holds only the MAC, so an
e-mail address or a French INS can be found by exact match while a copy of the database reveals
neither. Each kind of identifier is domain-separated, so an e-mail and an INS with the same text
never share an index value. The index key is a named secret of its own, wrapped by the KMS.
"""

from __future__ import annotations

import hmac
import unicodedata
from hashlib import sha256

from secretum.crypto.context import encode_fields

INDEX_KEY_SIZE = 32


def normalise(kind: str, value: str) -> str:
    """Normal form before indexing: NFKC, trimmed; e-mails lower-cased; INS/NIR digits only."""
    text = unicodedata.normalize("NFKC", value).strip()
    if kind == "email":
        return text.lower()
    if kind in ("ins", "nir"):
        return "".join(ch for ch in text if not ch.isspace()).upper()
    return text


class BlindIndex:
    """Computes blind-index values with one secret key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != INDEX_KEY_SIZE:
            raise ValueError(f"a blind-index key is {INDEX_KEY_SIZE} bytes")
        self._key = key

    def __call__(self, kind: str, value: str) -> bytes:
        """The 32-byte index value of ``value`` as an identifier of ``kind``."""
        if not kind:
            raise ValueError("an identifier kind is required")
        message = encode_fields("blind-index", kind, normalise(kind, value))
        return hmac.new(self._key, message, sha256).digest()

    def matches(self, kind: str, value: str, stored: bytes) -> bool:
        """Constant-time comparison of a candidate value with a stored index value."""
        return hmac.compare_digest(self(kind, value), stored)

    def __repr__(self) -> str:
        return "BlindIndex(<key hidden>)"

    def __reduce__(self) -> str | tuple[object, ...]:
        """Refuse pickling (and copying), as :class:`~secretum.crypto.keys.DataKey` does: a
        pickle would carry the index key out of the process (a cache, a queue, a log)."""
        raise TypeError("blind-index keys are not picklable")
