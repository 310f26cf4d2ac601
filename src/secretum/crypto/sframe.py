"""SFrame (RFC 9605): end-to-end encryption of teleconsultation media frames.

This is the Python *reference* of what the browser does in ``web/static/sframe.js``: both
pass the RFC 9605 Appendix C test vectors (``tests/vectors/rfc9605_*.json``) and are
cross-checked on random frames in real Chromium. Python uses it to check the JavaScript and to
decrypt frames captured by tests; the product encrypts media in the browser only.

What the call code does with it
-------------------------------
1. **Per call, per participant**: an ephemeral ECDH P-256 key pair (in the browser:
   ``generateCallKeyPair()``, private key non-extractable). Only the public keys (65-byte
   uncompressed points) travel over signaling; the server relays them and learns nothing.
2. **Epoch**: the set of participants present. Each time someone joins or leaves, the epoch
   number goes up by one; the epoch number *is* the SFrame KID. :func:`transcript` of the
   epoch's public keys (sorted, so both sides get the same bytes) binds the keys to it.
3. **Base keys**: for each pair (a peer connection in the P2P mesh), the ECDH shared secret
   gives one base key per direction: :func:`derive_base_key` ``(shared, transcript, sender_id)``
   with the *sender's* participant id. The sender installs it for encryption under the epoch's
   KID, the receiver for decryption under the same KID (RFC 9605 §4.4.1: a key is used to
   encrypt by one sender only, and for encryption or decryption, never both).
4. **Frames**: the sender encrypts every encoded frame with :class:`SFrameContext` (counter per
   KID, starting at 0); the receiver decrypts, refuses replays, drops anything that does not
   authenticate. Keys of the previous epoch stay for decryption a few seconds (frames in
   flight), then are removed. In the browser, ``static/sframe-worker.js`` does this in the
   Encoded Transform worker, one context per peer (its audio and video share the sender's
   counter and one replay window, 1024 counters wide to span the skew between the streams).
5. **Safety code**: :func:`safety_code` ``(transcript)`` gives 6 digits, shown on both sides;
   if they differ, someone substituted a public key: warn and stop the call.
   **The signaling must commit before it reveals** (each party first sends SHA-256 of its
   public key, and sends the key only after receiving every other commitment): a 6-digit code
   is 20 bits, and a man in the middle who sees one side's key before choosing his own could
   otherwise try a million keys until the codes match.

Frame metadata (the RFC's ``metadata``, authenticated but not encrypted) is empty in Secretum:
the whole encoded frame is the plaintext, so nothing of it is readable on the way.

Cipher suites: all five of RFC 9605 are implemented (the vectors cover them); Secretum uses
``AES_256_GCM_SHA512_128`` (0x0005), the default everywhere. Primitives come from
pyca/cryptography (HKDF, AES-GCM, AES-CTR, HMAC): the compound AES-CTR + HMAC AEAD of
RFC 9605 §4.5.1 is assembled from them exactly as the RFC writes it.

Errors: tampered or unauthentic data raises :class:`~secretum.crypto.errors.IntegrityError`
(a malformed header is :class:`SFrameHeaderError`, both a ``ValueError`` and a
:class:`~secretum.crypto.errors.FormatError`; an unknown KID is :class:`UnknownKeyIdError`,
both an ``IntegrityError`` and a ``KeyNotFoundError`` so a caller may buffer the frame until
the key arrives; a replay is :class:`ReplayError`). Nothing unauthentic is ever returned.
Messages carry KIDs and counters at most, never key material.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from secretum.crypto.errors import FormatError, IntegrityError, KeyNotFoundError

__all__ = [
    "BASE_KEY_LENGTH",
    "DEFAULT_SUITE",
    "MAX_VALUE",
    "CipherSuite",
    "ReplayError",
    "ReplayWindow",
    "SFrameContext",
    "SFrameError",
    "SFrameHeaderError",
    "UnknownKeyIdError",
    "aead_decrypt",
    "aead_encrypt",
    "decode_header",
    "decrypt",
    "derive_base_key",
    "derive_key_salt",
    "encode_header",
    "encrypt",
    "safety_code",
    "sframe_labels",
    "sframe_secret",
    "transcript",
]

#: KIDs and counters are unsigned 64-bit integers (at most 8 bytes in the header).
MAX_VALUE = 2**64 - 1
#: Length of a base key made by :func:`derive_base_key` (256 bits).
BASE_KEY_LENGTH = 32
#: Counters remembered behind the highest one seen, per KID, by :class:`ReplayWindow`.
DEFAULT_REPLAY_WINDOW = 128

_KEY_LABEL = b"SFrame 1.0 Secret key "
_SALT_LABEL = b"SFrame 1.0 Secret salt "
_BASE_KEY_LABEL = b"Secretum SFrame 1.0 base key"
_SAFETY_CODE_LABEL = b"Secretum SFrame 1.0 safety code"


class CipherSuite(IntEnum):
    """RFC 9605 §4.5 / IANA "SFrame Cipher Suites"."""

    AES_128_CTR_HMAC_SHA256_80 = 0x0001
    AES_128_CTR_HMAC_SHA256_64 = 0x0002
    AES_128_CTR_HMAC_SHA256_32 = 0x0003
    AES_128_GCM_SHA256_128 = 0x0004
    AES_256_GCM_SHA512_128 = 0x0005


#: The suite Secretum uses (issue 11 §4).
DEFAULT_SUITE = CipherSuite.AES_256_GCM_SHA512_128


@dataclass(frozen=True)
class _Params:
    """RFC 9605 Table 2: hash, Nh, Nka (0 for GCM), Nk, Nn, Nt."""

    hash: type[hashes.SHA256] | type[hashes.SHA512]
    nh: int
    nka: int
    nk: int
    nn: int
    nt: int

    @property
    def gcm(self) -> bool:
        return self.nka == 0


_PARAMS: Mapping[CipherSuite, _Params] = {
    CipherSuite.AES_128_CTR_HMAC_SHA256_80: _Params(hashes.SHA256, 32, 16, 48, 12, 10),
    CipherSuite.AES_128_CTR_HMAC_SHA256_64: _Params(hashes.SHA256, 32, 16, 48, 12, 8),
    CipherSuite.AES_128_CTR_HMAC_SHA256_32: _Params(hashes.SHA256, 32, 16, 48, 12, 4),
    CipherSuite.AES_128_GCM_SHA256_128: _Params(hashes.SHA256, 32, 0, 16, 12, 16),
    CipherSuite.AES_256_GCM_SHA512_128: _Params(hashes.SHA512, 64, 0, 32, 12, 16),
}


class SFrameError(ValueError):
    """Base of the SFrame errors that are about the caller's input, not about authenticity."""


class SFrameHeaderError(SFrameError, FormatError):
    """The SFrame header is malformed (truncated, or not in the minimal encoding).

    Also a :class:`FormatError`, hence an :class:`IntegrityError`: a frame with a bad header is
    a frame that did not authenticate, and callers that drop those need one ``except``.
    """


class UnknownKeyIdError(KeyNotFoundError, IntegrityError):
    """No decryption key for the frame's KID (yet). RFC 9605 §4.4.4 allows buffering the
    frame until the key arrives; otherwise treat it as unauthentic."""

    def __init__(self, kid: int) -> None:
        super().__init__(f"no SFrame decryption key for KID {kid}")
        self.kid = kid


class ReplayError(IntegrityError):
    """The (KID, CTR) was already accepted, or is too old for the replay window."""


# --------------------------------------------------------------------------- header (§4.3)


def _minimal_bytes(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def encode_header(kid: int, ctr: int) -> bytes:
    """The SFrame header of (KID, CTR): config byte ``X|KKK|Y|CCC``, then KID, then CTR,
    each in the minimal number of big-endian bytes, or inline (flag 0) when below 8."""
    for name, value in (("KID", kid), ("CTR", ctr)):
        if not 0 <= value <= MAX_VALUE:
            raise SFrameError(f"SFrame {name} must be in 0..2**64-1")
    config = 0
    tail = b""
    if kid < 8:
        config |= kid << 4
    else:
        kid_bytes = _minimal_bytes(kid)
        config |= 0x80 | (len(kid_bytes) - 1) << 4
        tail += kid_bytes
    if ctr < 8:
        config |= ctr
    else:
        ctr_bytes = _minimal_bytes(ctr)
        config |= 0x08 | (len(ctr_bytes) - 1)
        tail += ctr_bytes
    return bytes([config]) + tail


def _read_field(data: bytes, offset: int, extended: bool, bits: int, name: str) -> tuple[int, int]:
    if not extended:
        return bits, offset
    length = bits + 1
    raw = data[offset : offset + length]
    if len(raw) != length:
        raise SFrameHeaderError(f"SFrame header truncated in the {name}")
    value = int.from_bytes(raw, "big")
    if value < 8 or raw[0] == 0:
        raise SFrameHeaderError(f"SFrame header: {name} not in the minimal encoding")
    return value, offset + length


def decode_header(data: bytes) -> tuple[int, int, int]:
    """Parse the header at the start of ``data``: ``(kid, ctr, header_length)``.

    Only the minimal encoding (the one every RFC 9605 encoder produces) is accepted, so that
    one (KID, CTR) has one header; anything else raises :class:`SFrameHeaderError`.
    """
    if not data:
        raise SFrameHeaderError("SFrame header missing (empty frame)")
    config = data[0]
    kid, offset = _read_field(data, 1, bool(config & 0x80), (config >> 4) & 0x07, "KID")
    ctr, offset = _read_field(data, offset, bool(config & 0x08), config & 0x07, "CTR")
    return kid, ctr, offset


# --------------------------------------------------------------------- key derivation (§4.4.2)


def _check_suite(suite: CipherSuite | int) -> tuple[CipherSuite, _Params]:
    try:
        known = CipherSuite(suite)
    except ValueError:
        raise SFrameError(f"unknown SFrame cipher suite {suite:#06x}") from None
    return known, _PARAMS[known]


def sframe_labels(kid: int, suite: CipherSuite | int = DEFAULT_SUITE) -> tuple[bytes, bytes]:
    """The HKDF-Expand info strings: label + KID (8 bytes BE) + cipher suite (2 bytes BE)."""
    known, _ = _check_suite(suite)
    if not 0 <= kid <= MAX_VALUE:
        raise SFrameError("SFrame KID must be in 0..2**64-1")
    tail = kid.to_bytes(8, "big") + int(known).to_bytes(2, "big")
    return _KEY_LABEL + tail, _SALT_LABEL + tail


def sframe_secret(base_key: bytes, suite: CipherSuite | int = DEFAULT_SUITE) -> bytes:
    """``HKDF-Extract("", base_key)`` with the suite's hash (an intermediate of the vectors)."""
    _, params = _check_suite(suite)
    return HKDF.extract(params.hash(), None, base_key)


def derive_key_salt(
    kid: int, base_key: bytes, suite: CipherSuite | int = DEFAULT_SUITE
) -> tuple[bytes, bytes]:
    """RFC 9605 §4.4.2 ``derive_key_salt``: ``(sframe_key, sframe_salt)`` of ``Nk``/``Nn`` bytes."""
    known, params = _check_suite(suite)
    key_label, salt_label = sframe_labels(kid, known)
    secret = sframe_secret(base_key, known)
    key = HKDFExpand(params.hash(), params.nk, key_label).derive(secret)
    salt = HKDFExpand(params.hash(), params.nn, salt_label).derive(secret)
    return key, salt


# ------------------------------------------------------------------------------ AEAD (§4.5)


def _ctr_tag(params: _Params, auth_key: bytes, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
    """RFC 9605 §4.5.1 ``compute_tag``: HMAC over lengths, nonce, aad and ct, truncated."""
    mac = crypto_hmac.HMAC(auth_key, params.hash())
    for part in (
        len(aad).to_bytes(8, "big"),
        len(ct).to_bytes(8, "big"),
        params.nt.to_bytes(8, "big"),
        nonce,
        aad,
        ct,
    ):
        mac.update(part)
    return mac.finalize()[: params.nt]


def _aes_ctr(enc_key: bytes, nonce: bytes, data: bytes) -> bytes:
    # initial_counter = nonce + 0x00000000: the 32-bit block counter starts at zero.
    cipher = Cipher(algorithms.AES(enc_key), modes.CTR(nonce + b"\x00\x00\x00\x00"))
    ctx = cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


def aead_encrypt(
    suite: CipherSuite | int, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes
) -> bytes:
    """``AEAD.Encrypt`` of the suite: ciphertext with its ``Nt``-byte tag appended."""
    _, params = _check_suite(suite)
    if len(key) != params.nk or len(nonce) != params.nn:
        raise SFrameError("SFrame AEAD key or nonce of the wrong length for the suite")
    if params.gcm:
        return AESGCM(key).encrypt(nonce, plaintext, aad)
    enc_key, auth_key = key[: params.nka], key[params.nka :]
    ct = _aes_ctr(enc_key, nonce, plaintext)
    return ct + _ctr_tag(params, auth_key, nonce, aad, ct)


def aead_decrypt(
    suite: CipherSuite | int, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes
) -> bytes:
    """``AEAD.Decrypt`` of the suite; :class:`IntegrityError` unless the tag verifies."""
    _, params = _check_suite(suite)
    if len(key) != params.nk or len(nonce) != params.nn:
        raise SFrameError("SFrame AEAD key or nonce of the wrong length for the suite")
    if len(ciphertext) < params.nt:
        raise IntegrityError("SFrame ciphertext shorter than its tag")
    if params.gcm:
        try:
            return AESGCM(key).decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise IntegrityError("SFrame frame did not authenticate") from None
    enc_key, auth_key = key[: params.nka], key[params.nka :]
    inner, tag = ciphertext[: -params.nt], ciphertext[-params.nt :]
    if not hmac.compare_digest(tag, _ctr_tag(params, auth_key, nonce, aad, inner)):
        raise IntegrityError("SFrame frame did not authenticate")
    return _aes_ctr(enc_key, nonce, inner)


# ------------------------------------------------------------------- encrypt / decrypt (§4.4)


def _nonce(salt: bytes, ctr: int) -> bytes:
    return (int.from_bytes(salt, "big") ^ ctr).to_bytes(len(salt), "big")


@dataclass(frozen=True)
class _DerivedKey:
    suite: CipherSuite
    key: bytes
    salt: bytes

    @classmethod
    def of(cls, kid: int, base_key: bytes, suite: CipherSuite | int) -> _DerivedKey:
        known, _ = _check_suite(suite)
        key, salt = derive_key_salt(kid, base_key, known)
        return cls(known, key, salt)

    def __repr__(self) -> str:  # never show key material
        return f"_DerivedKey(suite={self.suite.name})"


def _encrypt_with(derived: _DerivedKey, kid: int, ctr: int, metadata: bytes, pt: bytes) -> bytes:
    header = encode_header(kid, ctr)
    nonce = _nonce(derived.salt, ctr)
    return header + aead_encrypt(derived.suite, derived.key, nonce, header + metadata, pt)


def _decrypt_with(
    derived: _DerivedKey, ctr: int, header: bytes, metadata: bytes, body: bytes
) -> bytes:
    nonce = _nonce(derived.salt, ctr)
    return aead_decrypt(derived.suite, derived.key, nonce, header + metadata, body)


def encrypt(
    kid: int,
    ctr: int,
    base_key: bytes,
    metadata: bytes,
    plaintext: bytes,
    suite: CipherSuite | int = DEFAULT_SUITE,
) -> bytes:
    """One SFrame ciphertext: ``header(KID, CTR) || AEAD.Encrypt(key, salt ^ CTR, header ||
    metadata, plaintext)``. The caller guarantees that (KID, CTR) is never used twice: prefer
    :class:`SFrameContext`, which counts."""
    return _encrypt_with(_DerivedKey.of(kid, base_key, suite), kid, ctr, metadata, plaintext)


BaseKeyLookup = Callable[[int], bytes | None] | Mapping[int, bytes]


def decrypt(
    base_key_lookup: BaseKeyLookup,
    metadata: bytes,
    ciphertext: bytes,
    suite: CipherSuite | int = DEFAULT_SUITE,
) -> tuple[int, int, bytes]:
    """Decrypt one SFrame ciphertext: ``(kid, ctr, plaintext)``.

    ``base_key_lookup`` maps a KID to its base key (a mapping, or a function returning
    ``None`` when unknown). Raises :class:`UnknownKeyIdError`, :class:`SFrameHeaderError` or
    :class:`IntegrityError`; never returns unauthenticated bytes. No replay check here: use
    :class:`SFrameContext` for that.
    """
    kid, ctr, length = decode_header(ciphertext)
    if isinstance(base_key_lookup, Mapping):
        base_key = base_key_lookup.get(kid)
    else:
        base_key = base_key_lookup(kid)
    if base_key is None:
        raise UnknownKeyIdError(kid)
    derived = _DerivedKey.of(kid, base_key, suite)
    plaintext = _decrypt_with(derived, ctr, ciphertext[:length], metadata, ciphertext[length:])
    return kid, ctr, plaintext


# ------------------------------------------------------------------------ context and replay


class ReplayWindow:
    """Counter-based anti-replay for one KID (RFC 9605 §9.3, after RFC 3711 §3.3.2).

    Remembers the highest CTR accepted and which of the ``size`` counters below it were seen.
    :meth:`check` before decrypting, :meth:`accept` only after the frame authenticated, so a
    forged frame cannot move the window.
    """

    def __init__(self, size: int = DEFAULT_REPLAY_WINDOW) -> None:
        if size < 1:
            raise ValueError("replay window size must be positive")
        self.size = size
        self.highest = -1
        self._seen = 0  # bit i set: counter (highest - i) was accepted

    def check(self, ctr: int) -> None:
        if ctr > self.highest:
            return
        delta = self.highest - ctr
        if delta >= self.size:
            raise ReplayError(f"SFrame CTR {ctr} is older than the replay window")
        if self._seen >> delta & 1:
            raise ReplayError(f"SFrame CTR {ctr} was already received")

    def accept(self, ctr: int) -> None:
        self.check(ctr)
        mask = (1 << self.size) - 1
        if ctr > self.highest:
            shift = ctr - self.highest
            self._seen = ((self._seen << shift) | 1) & mask if shift < self.size else 1
            self.highest = ctr
        else:
            self._seen |= 1 << (self.highest - ctr)


class SFrameContext:
    """An SFrame endpoint: encryption keys with their counters, decryption keys with their
    replay windows, one cipher suite (RFC 9605 §4.4.1 "key store").

    A base key is installed for encryption *or* decryption, never both; a KID is installed
    once (a new key needs a new KID: that is the epoch). The counter of an encryption KID
    starts at 0 (``first_counter`` to start elsewhere, e.g. in tests) and never repeats.
    """

    def __init__(
        self, suite: CipherSuite | int = DEFAULT_SUITE, replay_window: int = DEFAULT_REPLAY_WINDOW
    ) -> None:
        self.suite, _ = _check_suite(suite)
        self.replay_window = replay_window
        self._send: dict[int, tuple[_DerivedKey, list[int]]] = {}
        self._receive: dict[int, tuple[_DerivedKey, ReplayWindow]] = {}

    def __repr__(self) -> str:
        return (
            f"SFrameContext(suite={self.suite.name}, send_kids={sorted(self._send)}, "
            f"receive_kids={sorted(self._receive)})"
        )

    def _check_new(self, kid: int) -> None:
        if not 0 <= kid <= MAX_VALUE:
            raise SFrameError("SFrame KID must be in 0..2**64-1")
        if kid in self._send or kid in self._receive:
            raise SFrameError(f"SFrame KID {kid} already has a key: a new key needs a new KID")

    def add_encryption_key(self, kid: int, base_key: bytes, first_counter: int = 0) -> None:
        self._check_new(kid)
        if not 0 <= first_counter <= MAX_VALUE:
            raise SFrameError("SFrame CTR must be in 0..2**64-1")
        self._send[kid] = (_DerivedKey.of(kid, base_key, self.suite), [first_counter])

    def add_decryption_key(self, kid: int, base_key: bytes) -> None:
        self._check_new(kid)
        window = ReplayWindow(self.replay_window)
        self._receive[kid] = (_DerivedKey.of(kid, base_key, self.suite), window)

    def remove_key(self, kid: int) -> None:
        """Forget a KID (end of an epoch's grace period). Its counters are never reused:
        a removed KID cannot be installed again in this context."""
        self._send.pop(kid, None)
        self._receive.pop(kid, None)

    def encrypt(self, kid: int, metadata: bytes, plaintext: bytes) -> bytes:
        """Encrypt one frame under ``kid`` with that KID's next counter."""
        try:
            derived, counter = self._send[kid]
        except KeyError:
            raise SFrameError(f"no SFrame encryption key for KID {kid}") from None
        ctr = counter[0]
        if ctr > MAX_VALUE:
            raise SFrameError(f"SFrame counter of KID {kid} exhausted: start a new epoch")
        counter[0] = ctr + 1
        return _encrypt_with(derived, kid, ctr, metadata, plaintext)

    def decrypt(self, metadata: bytes, ciphertext: bytes) -> tuple[int, int, bytes]:
        """Decrypt one frame: ``(kid, ctr, plaintext)``; refuses replays (:class:`ReplayError`)."""
        kid, ctr, length = decode_header(ciphertext)
        try:
            derived, window = self._receive[kid]
        except KeyError:
            raise UnknownKeyIdError(kid) from None
        window.check(ctr)
        plaintext = _decrypt_with(derived, ctr, ciphertext[:length], metadata, ciphertext[length:])
        window.accept(ctr)
        return kid, ctr, plaintext


# ----------------------------------------------------------- Secretum key schedule and SAS


def transcript(public_keys: Iterable[bytes]) -> bytes:
    """The transcript of an epoch: its participants' public keys, sorted bytewise, each
    preceded by its length (2 bytes BE). Sorting makes it the same on every side whatever the
    order keys arrived in. Duplicates are refused (two participants cannot share a key)."""
    keys = sorted(bytes(k) for k in public_keys)
    if len(keys) < 2:
        raise SFrameError("an SFrame transcript needs at least two public keys")
    if len(set(keys)) != len(keys):
        raise SFrameError("the same public key appears twice in the SFrame transcript")
    out = bytearray()
    for key in keys:
        if not 0 < len(key) < 2**16:
            raise SFrameError("public key of an invalid length in the SFrame transcript")
        out += len(key).to_bytes(2, "big") + key
    return bytes(out)


def derive_base_key(shared_secret: bytes, transcript_bytes: bytes, sender_id: str) -> bytes:
    """The SFrame base key a sender uses towards one peer, in one epoch::

        HKDF-SHA-512(IKM  = shared_secret          (ECDH P-256 x-coordinate, 32 bytes),
                     salt = SHA-512(transcript),
                     info = "Secretum SFrame 1.0 base key" || 0x00 || UTF-8(sender_id),
                     L    = 32)

    Both ends of a pair have the same shared secret; the sender id makes the two directions'
    keys differ (RFC 9605: one sender per key), and the transcript ties them to the epoch's
    membership. Mirrored by ``deriveBaseKey`` in ``sframe.js``.
    """
    if not shared_secret:
        raise SFrameError("empty ECDH shared secret")
    salt = hashlib.sha512(transcript_bytes).digest()
    info = _BASE_KEY_LABEL + b"\x00" + sender_id.encode("utf-8")
    return HKDF(hashes.SHA512(), BASE_KEY_LENGTH, salt, info).derive(shared_secret)


def safety_code(transcript_bytes: bytes) -> str:
    """The 6-digit safety code (SAS) of a transcript, shown on every side::

        n = big-endian integer of HKDF-SHA-512(IKM = transcript, salt = "",
                                               info = "Secretum SFrame 1.0 safety code", L = 8)
        code = n mod 10**6, as 6 digits (zero padded)

    The bias of a 64-bit value mod 10**6 is below 2**-44. Mirrored by ``safetyCode`` in
    ``sframe.js``. See the module docstring: signaling must commit to keys before revealing.
    """
    digest = HKDF(hashes.SHA512(), 8, None, _SAFETY_CODE_LABEL).derive(transcript_bytes)
    return f"{int.from_bytes(digest, 'big') % 10**6:06d}"
