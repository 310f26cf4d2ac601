"""Wire format of Secretum encrypted files: Tink's AES-GCM-HKDF streaming AEAD.

This module holds the arithmetic of the format and the per-stream segment cipher;
:mod:`secretum.crypto.streaming` builds the stream, range and reader APIs on top of it.

The format is byte-compatible with Tink's ``AesGcmHkdfStreaming`` (key template
``AES256_GCM_HKDF_1MB``: 32-byte derived key, HKDF-SHA256, 1 MiB ciphertext segments,
first-segment offset 0, RAW output prefix, i.e. no Tink key-id prefix)::

    ciphertext = header || segment_0 || segment_1 || ... || segment_(n-1)
    header     = 0x28 (header length, 40) || salt (32 random bytes) || nonce_prefix (7 random bytes)
    key_s      = HKDF-SHA256(ikm=key, salt=salt, info=associated_data, length=32)
    segment_i  = AES-256-GCM(key_s, nonce_i, plaintext_i, aad="")   (ciphertext || 16-byte tag)
    nonce_i    = nonce_prefix || i as 4-byte big-endian || 0x01 if i == n-1 else 0x00

Every ciphertext segment is ``segment_size`` bytes (tag included) except the first, which is
shortened by the 40-byte header, and the last, which holds what remains (1 byte up to a full
segment, or just the tag for an empty plaintext). So the first plaintext segment holds
``segment_size - 56`` bytes and the others ``segment_size - 16``. There are always
``n = ceil((plaintext_size + 40) / (segment_size - 16)) >= 1`` segments: an empty plaintext
gives one empty last segment (56 bytes in all), and a plaintext that exactly fills its
segments ends with a full last segment, never with an extra empty one (as Tink does; see
``StreamingAeadEncryptingStream`` in tink-cc and ``AesGcmHkdfStreaming`` in tink-java).

Which segment is the last is therefore decided by where the ciphertext ends; the
last-segment flag in the nonce authenticates that decision, so truncation at a segment
boundary, reordering and appended segments all fail authentication.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secretum.crypto.errors import FormatError, IntegrityError

KEY_SIZE = 32
"""Size of the input key and of the derived per-stream AES-256 key, in bytes."""
SALT_SIZE = 32
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
HEADER_SIZE = 1 + SALT_SIZE + NONCE_PREFIX_SIZE  # 40, also the value of the header's first byte
DEFAULT_SEGMENT_SIZE = 1 << 20
"""Ciphertext segment size of Tink's ``AES256_GCM_HKDF_1MB`` (1 MiB, tag included)."""
MIN_SEGMENT_SIZE = HEADER_SIZE + TAG_SIZE + 1  # the first segment holds at least 1 byte
MAX_SEGMENT_SIZE = (1 << 31) - 1  # Tink stores sizes in a signed 32-bit int
MAX_SEGMENTS = 1 << 32  # the segment counter in the nonce is 4 bytes

_NONCE_SUFFIX = struct.Struct(">IB")
_HAS_INTO = hasattr(AESGCM, "encrypt_into")  # cryptography >= 45; a feature flag, not a secret


def check_key(key: bytes) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``key`` is a 32-byte AES-256 key."""
    if not isinstance(key, bytes | bytearray):
        raise TypeError("key must be bytes")
    if len(key) != KEY_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes (AES-256), got {len(key)}")


def check_associated_data(associated_data: bytes) -> None:
    """Raise ``TypeError`` unless the associated data is bytes (it may be empty)."""
    if not isinstance(associated_data, bytes | bytearray):
        raise TypeError("associated_data must be bytes")


class Layout:
    """Where segments lie for one ciphertext segment size (see the module docstring).

    Segment ``i`` starts at plaintext offset ``max(0, i * pt_segment - 40)`` and at ciphertext
    offset ``40`` for ``i == 0``, ``i * segment_size`` otherwise.
    """

    __slots__ = ("first_pt_segment", "pt_segment", "segment_size")

    def __init__(self, segment_size: int) -> None:
        if isinstance(segment_size, bool) or not isinstance(segment_size, int):
            raise TypeError("segment_size must be an int")
        if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError(
                f"segment_size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE}"
            )
        self.segment_size = segment_size
        self.pt_segment = segment_size - TAG_SIZE
        self.first_pt_segment = self.pt_segment - HEADER_SIZE

    def segment_count(self, plaintext_size: int) -> int:
        """Number of segments for a plaintext: ``ceil((size + 40) / pt_segment)``, at least 1."""
        return -(-(plaintext_size + HEADER_SIZE) // self.pt_segment)

    def ciphertext_size(self, plaintext_size: int) -> int:
        """Total ciphertext size, header included, of a plaintext of ``plaintext_size`` bytes."""
        if plaintext_size < 0:
            raise ValueError("plaintext_size must be >= 0")
        count = self.segment_count(plaintext_size)
        if count > MAX_SEGMENTS:
            raise ValueError("plaintext too large for the streaming AEAD format")
        return HEADER_SIZE + plaintext_size + TAG_SIZE * count

    def plaintext_size(self, ciphertext_size: int) -> int:
        """Plaintext size for a ciphertext of ``ciphertext_size`` bytes, header included.

        Raises ``FormatError`` when no plaintext encrypts to that size (the ciphertext was
        truncated or extended), ``ValueError`` when the size is negative. Sizes are canonical,
        as with every Tink implementation: an empty last segment only ever follows the header.
        """
        if ciphertext_size < 0:
            raise ValueError("ciphertext_size must be >= 0")
        if ciphertext_size < HEADER_SIZE + TAG_SIZE:
            raise FormatError("ciphertext too short for the streaming AEAD format")
        count = -(-ciphertext_size // self.segment_size)
        last_ct = ciphertext_size - (count - 1) * self.segment_size
        if count == 1:
            last_ct -= HEADER_SIZE
        if last_ct < TAG_SIZE:
            raise FormatError("ciphertext size is impossible: its last segment is truncated")
        if last_ct == TAG_SIZE and count > 1:
            raise FormatError("ciphertext size is impossible: empty last segment after full ones")
        if count > MAX_SEGMENTS:
            raise FormatError("ciphertext has more segments than the format allows")
        return ciphertext_size - HEADER_SIZE - TAG_SIZE * count

    def segment_of(self, plaintext_offset: int) -> int:
        """Index of the segment holding the plaintext byte at ``plaintext_offset``."""
        return (plaintext_offset + HEADER_SIZE) // self.pt_segment

    def pt_start(self, index: int) -> int:
        """Plaintext offset of the first byte of segment ``index``."""
        return max(0, index * self.pt_segment - HEADER_SIZE)

    def ct_start(self, index: int) -> int:
        """Ciphertext offset (header included) of the first byte of segment ``index``."""
        return HEADER_SIZE if index == 0 else index * self.segment_size


def make_header(salt: bytes, nonce_prefix: bytes) -> bytes:
    """The 40-byte header: ``0x28 || salt || nonce_prefix``."""
    if len(salt) != SALT_SIZE or len(nonce_prefix) != NONCE_PREFIX_SIZE:
        raise ValueError(f"salt must be {SALT_SIZE} bytes and nonce prefix {NONCE_PREFIX_SIZE}")
    return bytes((HEADER_SIZE,)) + salt + nonce_prefix


def parse_header(header: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
    """Split a header into ``(salt, nonce_prefix)``; ``FormatError`` if it is malformed."""
    if len(header) != HEADER_SIZE:
        raise FormatError("ciphertext too short: truncated streaming AEAD header")
    if header[0] != HEADER_SIZE:
        raise FormatError("not a streaming AEAD ciphertext: bad header length byte")
    raw = bytes(header)
    return raw[1 : 1 + SALT_SIZE], raw[1 + SALT_SIZE :]


class SegmentCipher:
    """AES-256-GCM keyed for one stream, sealing and opening segments with their nonces.

    The per-stream key is derived once, here; the instance lives as long as the stream and
    nothing secret is kept anywhere else. Not thread-safe (like the streams that use it).
    """

    __slots__ = ("_aead", "_prefix")

    def __init__(
        self, key: bytes, salt: bytes, nonce_prefix: bytes, associated_data: bytes
    ) -> None:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=associated_data)
        self._aead = AESGCM(hkdf.derive(key))
        self._prefix = nonce_prefix

    def _nonce(self, index: int, last: bool) -> bytes:
        if not 0 <= index < MAX_SEGMENTS:
            raise ValueError("too many segments for the streaming AEAD format")
        return self._prefix + _NONCE_SUFFIX.pack(index, last)

    def seal_into(self, index: int, last: bool, plaintext: memoryview, out: memoryview) -> int:
        """Encrypt segment ``index`` into ``out`` (``len(plaintext) + 16`` bytes); return that."""
        nonce = self._nonce(index, last)
        if _HAS_INTO:  # the output buffer must be exactly the sealed size
            return self._aead.encrypt_into(nonce, plaintext, None, out[: len(plaintext) + TAG_SIZE])
        sealed = self._aead.encrypt(nonce, plaintext, None)
        out[: len(sealed)] = sealed
        return len(sealed)

    def open_into(self, index: int, last: bool, ciphertext: memoryview, out: memoryview) -> int:
        """Decrypt and verify segment ``index`` into ``out``; return the plaintext length.

        Raises ``IntegrityError`` if the tag does not verify (tampering, wrong key or
        associated data, wrong position or last flag); ``out`` is then wiped, so no
        unauthenticated byte survives even in memory.
        """
        if len(ciphertext) < TAG_SIZE:
            raise IntegrityError(f"segment {index} is truncated")
        nonce = self._nonce(index, last)
        size = len(ciphertext) - TAG_SIZE
        try:
            if _HAS_INTO:  # the output buffer must be exactly the opened size
                return self._aead.decrypt_into(nonce, ciphertext, None, out[:size])
            opened = self._aead.decrypt(nonce, ciphertext, None)
        except InvalidTag:
            out[:size] = bytes(size)
            raise IntegrityError(
                f"segment {index} failed authentication (tampered, truncated, reordered, "
                "or wrong key or associated data)"
            ) from None
        out[: len(opened)] = opened
        return len(opened)
