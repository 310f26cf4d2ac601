"""Sealing records and fields: AES-256-GCM with the record's context as associated data.

Format (version 1)::

    0x01 | key id (16 bytes) | nonce (12 bytes) | ciphertext | tag (16 bytes)

The associated data is ``0x01 | key id | RecordContext.encode()``: the ciphertext opens only
under the same key, in the same record (type, id, patient, version). A fresh random 96-bit nonce
is drawn for every seal; with at most 2^32 seals per key the nonce-collision risk stays within
NIST SP 800-38D bounds. Anything that fails to authenticate raises
:class:`~secretum.crypto.errors.IntegrityError`; nothing of it is returned.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag

from secretum.crypto.context import RecordContext
from secretum.crypto.errors import FormatError, IntegrityError
from secretum.crypto.keys import KEY_ID_SIZE, DataKey

FORMAT_V1 = 0x01
NONCE_SIZE = 12
TAG_SIZE = 16
HEADER_SIZE = 1 + KEY_ID_SIZE
OVERHEAD = HEADER_SIZE + NONCE_SIZE + TAG_SIZE
_V1 = bytes([FORMAT_V1])


def seal(
    key: DataKey,
    plaintext: bytes,
    context: RecordContext,
    *,
    rng: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """Encrypt ``plaintext`` for ``context`` under ``key``."""
    header = _V1 + key.key_id
    nonce = rng(NONCE_SIZE)
    return header + nonce + key.record_aead.encrypt(nonce, plaintext, header + context.encode())


def key_id_of(sealed: bytes) -> bytes:
    """The id of the key a sealed value needs (to find it before opening)."""
    if len(sealed) < OVERHEAD or sealed[0] != FORMAT_V1:
        raise FormatError("not a sealed record (unknown format or too short)")
    return sealed[1:HEADER_SIZE]


def open_sealed(key: DataKey, sealed: bytes, context: RecordContext) -> bytes:
    """Decrypt a value sealed by :func:`seal`; raises IntegrityError if anything differs."""
    if key_id_of(sealed) != key.key_id:
        raise IntegrityError(
            f"sealed with key {sealed[1:HEADER_SIZE].hex()}, not {key.key_id.hex()}"
        )
    nonce = sealed[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE]
    try:
        return key.record_aead.decrypt(
            nonce, sealed[HEADER_SIZE + NONCE_SIZE :], sealed[:HEADER_SIZE] + context.encode()
        )
    except InvalidTag:
        raise IntegrityError(
            f"record {context.record_type}/{context.record_id} v{context.version} "
            "failed authentication (tampered, or wrong key or context)"
        ) from None
