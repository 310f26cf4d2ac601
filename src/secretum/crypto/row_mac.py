"""Row MACs: authenticate the database rows a decision or a read rests on.

Someone with write access to the main database (but not to the key vault or the KMS) can
change a row the policy reads: a sensitivity label, a care relationship, a consent, a
break-the-glass grant, an account's role. The ciphertexts stay safe (their context is bound as
associated data), the *decision* does not. So each such row carries a tag::

    HMAC-SHA256(row-MAC key, encode_row(table, identity, fields))

computed when the row is written and checked whenever it is read for a decision. The key is a
named secret of the key vault, wrapped by the KMS (like the blind-index key): the database does
not hold it, so a row forged or edited there has no valid tag.

The encoding is canonical and unambiguous: a label, the table name, the row's identity (primary
key) and each authenticated column as ``(name, value)``, every item tagged with its type and
length-prefixed (:func:`encode_row`). So two distinct rows never share an encoding: the same
content under another id, in another table, with a column moved into another, or a ``None``
instead of an empty string, all encode apart, and a tag copied onto another row fails.

What a tag cannot do alone is tell an old row from the current one: a whole row *with its tag*
copied earlier and written back later verifies (a replay). See the README's security model for
how each table limits that (versions and counters in the tag, the audit log as the witness).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

ROW_MAC_KEY_SIZE = 32
ROW_MAC_SIZE = 32

#: One value of an authenticated column.
Value = str | bytes | int | bool | datetime | None

_LABEL = b"secretum/row-mac/v1"
_LEN = struct.Struct(">I").pack
_INT = struct.Struct(">q").pack


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def _str(value: str) -> bytes:
    raw = value.encode("utf-8")
    return b"s" + _LEN(len(raw)) + raw


def _bytes(value: bytes) -> bytes:
    return b"b" + _LEN(len(value)) + value


def _time(value: datetime) -> bytes:
    # Microseconds since the epoch in UTC: the same instant encodes alike whatever the
    # database gives back (SQLite returns naive UTC times, PostgreSQL aware ones).
    epoch = _NAIVE_EPOCH if value.tzinfo is None else _EPOCH
    return b"d" + _INT((value - epoch) // _MICROSECOND)


#: One encoder per exact type (a subclass, e.g. an enum member, is not silently accepted).
_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    type(None): lambda _value: b"n",
    bool: lambda value: b"t" if value else b"f",
    int: lambda value: b"i" + _INT(value),
    str: _str,
    bytes: _bytes,
    datetime: _time,
}


def _item(value: Value) -> bytes:
    """One value, tagged with its type and (for variable sizes) length-prefixed."""
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        raise TypeError("row fields are str, bytes, int, bool, datetime or None")
    return encoder(value)


def encode_row(table: str, identity: Iterable[Value], fields: Iterable[tuple[str, Value]]) -> bytes:
    """``label || table || count || identity values || count || (name, value) pairs``.

    Counts and lengths are 4-byte big-endian; every value carries a type tag; ints (and times,
    as microseconds) are 8-byte big-endian. Injective: decoding is unambiguous.
    """
    ids = [_item(v) for v in identity]
    pairs = [_item(name) + _item(value) for name, value in fields]
    return b"".join([_LABEL, _item(table), _LEN(len(ids)), *ids, _LEN(len(pairs)), *pairs])


class RowMac:
    """Computes and checks row tags with one secret key (kept in memory once per process)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != ROW_MAC_KEY_SIZE:
            raise ValueError(f"a row-MAC key is {ROW_MAC_KEY_SIZE} bytes")
        self._key = key

    def tag(
        self, table: str, identity: Iterable[Value], fields: Iterable[tuple[str, Value]]
    ) -> bytes:
        """The 32-byte tag of one row."""
        mac = hmac.HMAC(self._key, hashes.SHA256())
        mac.update(encode_row(table, identity, fields))
        return mac.finalize()

    def verify(
        self,
        table: str,
        identity: Iterable[Value],
        fields: Iterable[tuple[str, Value]],
        tag: bytes | None,
    ) -> bool:
        """Whether ``tag`` is the row's tag (constant-time); a missing tag never is."""
        if tag is None or len(tag) != ROW_MAC_SIZE:
            return False
        mac = hmac.HMAC(self._key, hashes.SHA256())
        mac.update(encode_row(table, identity, fields))
        try:
            mac.verify(bytes(tag))
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return "RowMac(<key hidden>)"
