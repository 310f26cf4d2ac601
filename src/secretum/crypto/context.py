"""Canonical encoding of the context that is bound to a ciphertext as associated data.

A ciphertext is only valid for the context it was sealed with: moving it to another record,
patient, type or version makes authentication fail. The encoding is injective: each field is
length-prefixed, so ``("ab", "c")`` and ``("a", "bc")`` never encode alike.
"""

from __future__ import annotations

import struct

_LABEL = b"secretum/ctx/v1"
_STR_TAG = b"s"
_BYTES_TAG = b"b"
_INT_TAG = b"i\x00\x00\x00\x08"
_LEN = struct.Struct(">I").pack
_INT = struct.Struct(">q").pack


def encode_fields(*fields: str | bytes | int) -> bytes:
    """Encode fields as ``label || (tag, length, value)*``; ints are 8-byte big-endian."""
    parts = [_LABEL]
    for field in fields:
        kind = type(field)
        if kind is str:
            raw = field.encode("utf-8")  # type: ignore[union-attr]
            parts += (_STR_TAG, _LEN(len(raw)), raw)
        elif kind is int:
            parts += (_INT_TAG, _INT(field))
        elif kind is bytes:
            parts += (_BYTES_TAG, _LEN(len(field)), field)  # type: ignore[arg-type]
        else:  # bool (an int subclass) and everything else: refuse the ambiguity
            raise TypeError("context fields are str, bytes or int")
    return b"".join(parts)


class _Context:
    """An immutable context whose encoding is computed once, at construction."""

    __slots__ = ("_encoded", "_fields")
    _kind = ""
    _fields: tuple[str, str, str, int]
    _encoded: bytes

    def __init__(self, kind_type: str, item_id: str, patient_id: str, version: int) -> None:
        object.__setattr__(self, "_fields", (kind_type, item_id, patient_id, version))
        object.__setattr__(
            self, "_encoded", encode_fields(self._kind, kind_type, item_id, patient_id, version)
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def encode(self) -> bytes:
        """The associated-data bytes of this context."""
        return self._encoded

    @property
    def patient_id(self) -> str:
        return self._fields[2]

    @property
    def version(self) -> int:
        return self._fields[3]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Context) or type(other) is not type(self):
            return False
        return other._fields == self._fields

    def __hash__(self) -> int:
        return hash((type(self), self._fields))

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self._fields!r}"


class RecordContext(_Context):
    """Where a sealed value belongs: record type, record id, patient id, version."""

    __slots__ = ()
    _kind = "record"

    def __init__(self, record_type: str, record_id: str, patient_id: str, version: int) -> None:
        super().__init__(record_type, record_id, patient_id, version)

    @property
    def record_type(self) -> str:
        return self._fields[0]

    @property
    def record_id(self) -> str:
        return self._fields[1]


class FileContext(_Context):
    """Where an encrypted file belongs: file type, file id, patient id, version."""

    __slots__ = ()
    _kind = "file"

    def __init__(self, file_type: str, file_id: str, patient_id: str, version: int) -> None:
        super().__init__(file_type, file_id, patient_id, version)

    @property
    def file_type(self) -> str:
        return self._fields[0]

    @property
    def file_id(self) -> str:
        return self._fields[1]


def key_wrap_context(purpose: str, owner_id: str) -> bytes:
    """Associated data for wrapping a key: a DEK wrapped for one patient opens for no other."""
    return encode_fields("keywrap", purpose, owner_id)
