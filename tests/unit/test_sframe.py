"""SFrame (RFC 9605) reference: every Appendix C vector, then properties that try to break it
(tampering, wrong keys, replays, malformed headers) and the Secretum key schedule and SAS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secretum.crypto.errors import FormatError, IntegrityError, KeyNotFoundError
from secretum.crypto.sframe import (
    MAX_VALUE,
    CipherSuite,
    ReplayError,
    ReplayWindow,
    SFrameContext,
    SFrameError,
    SFrameHeaderError,
    UnknownKeyIdError,
    aead_decrypt,
    aead_encrypt,
    decode_header,
    decrypt,
    derive_base_key,
    derive_key_salt,
    encode_header,
    encrypt,
    safety_code,
    sframe_labels,
    sframe_secret,
    transcript,
)

VECTORS = Path(__file__).parent.parent / "vectors"


def _load(name: str) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / name).read_text())
    assert "RFC 9605" in data["source"]
    vectors: list[dict[str, Any]] = data["vectors"]
    return vectors


HEADER = _load("rfc9605_header.json")
AES_CTR_HMAC = _load("rfc9605_aes_ctr_hmac.json")
SFRAME = _load("rfc9605_sframe.json")


def _hex(v: dict[str, Any], key: str) -> bytes:
    return bytes.fromhex(v[key])


def test_the_vector_files_are_complete() -> None:
    # 17 KIDs x 17 CTRs, 3 AES-CTR-HMAC suites, 5 SFrame suites: nothing lost in the copy.
    assert len(HEADER) == 289
    assert [v["cipher_suite"] for v in AES_CTR_HMAC] == [1, 2, 3]
    assert [v["cipher_suite"] for v in SFRAME] == [1, 2, 3, 4, 5]


# ------------------------------------------------------------------- RFC 9605 Appendix C


@pytest.mark.parametrize("v", HEADER, ids=lambda v: f"kid{v['kid']:x}-ctr{v['ctr']:x}")
def test_rfc9605_header(v: dict[str, Any]) -> None:
    encoded = _hex(v, "encoded")
    assert encode_header(v["kid"], v["ctr"]) == encoded
    assert decode_header(encoded) == (v["kid"], v["ctr"], len(encoded))
    assert decode_header(encoded + b"payload") == (v["kid"], v["ctr"], len(encoded))


@pytest.mark.parametrize("v", AES_CTR_HMAC, ids=lambda v: f"suite{v['cipher_suite']}")
def test_rfc9605_aes_ctr_hmac(v: dict[str, Any]) -> None:
    suite, key, nonce, aad = v["cipher_suite"], _hex(v, "key"), _hex(v, "nonce"), _hex(v, "aad")
    assert aead_encrypt(suite, key, nonce, aad, _hex(v, "pt")) == _hex(v, "ct")
    assert aead_decrypt(suite, key, nonce, aad, _hex(v, "ct")) == _hex(v, "pt")
    with pytest.raises(IntegrityError):
        aead_decrypt(suite, key, nonce, aad + b"x", _hex(v, "ct"))


@pytest.mark.parametrize("v", SFRAME, ids=lambda v: f"suite{v['cipher_suite']}")
def test_rfc9605_sframe(v: dict[str, Any]) -> None:
    suite, kid, ctr = v["cipher_suite"], v["kid"], v["ctr"]
    base_key, metadata = _hex(v, "base_key"), _hex(v, "metadata")
    assert sframe_labels(kid, suite) == (_hex(v, "sframe_key_label"), _hex(v, "sframe_salt_label"))
    assert sframe_secret(base_key, suite) == _hex(v, "sframe_secret")
    assert derive_key_salt(kid, base_key, suite) == (_hex(v, "sframe_key"), _hex(v, "sframe_salt"))
    ct = encrypt(kid, ctr, base_key, metadata, _hex(v, "pt"), suite)
    assert ct == _hex(v, "ct")
    assert ct.startswith(encode_header(kid, ctr))
    assert decrypt({kid: base_key}, metadata, ct, suite) == (kid, ctr, _hex(v, "pt"))
    # Through the context too, with the counter placed at the vector's CTR.
    sender, receiver = SFrameContext(suite), SFrameContext(suite)
    sender.add_encryption_key(kid, base_key, first_counter=ctr)
    receiver.add_decryption_key(kid, base_key)
    assert sender.encrypt(kid, metadata, _hex(v, "pt")) == ct
    assert receiver.decrypt(metadata, ct) == (kid, ctr, _hex(v, "pt"))


def test_rfc9605_nonce_and_aad_intermediates() -> None:
    """The vectors' nonce is salt XOR CTR and their AAD is header || metadata: decrypting with
    pyca's AES-GCM directly from those intermediates gives the plaintext (suites 4 and 5)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    for v in SFRAME:
        header = encode_header(v["kid"], v["ctr"])
        assert _hex(v, "aad") == header + _hex(v, "metadata")
        salt = _hex(v, "sframe_salt")
        nonce = (int.from_bytes(salt, "big") ^ v["ctr"]).to_bytes(12, "big")
        assert nonce == _hex(v, "nonce")
        if v["cipher_suite"] in (4, 5):
            body = _hex(v, "ct")[len(header) :]
            assert AESGCM(_hex(v, "sframe_key")).decrypt(nonce, body, _hex(v, "aad")) == _hex(
                v, "pt"
            )


# ---------------------------------------------------------------------------- header rules

values = st.one_of(st.integers(0, 300), st.integers(0, MAX_VALUE))


@given(values, values)
def test_header_round_trip_is_minimal(kid: int, ctr: int) -> None:
    header = encode_header(kid, ctr)
    assert decode_header(header) == (kid, ctr, len(header))
    kid_len = 0 if kid < 8 else (kid.bit_length() + 7) // 8
    ctr_len = 0 if ctr < 8 else (ctr.bit_length() + 7) // 8
    assert len(header) == 1 + kid_len + ctr_len


@pytest.mark.parametrize(
    "header",
    [
        b"",  # nothing
        bytes([0x80]),  # KID of 1 byte announced, absent
        bytes([0x08]),  # CTR of 1 byte announced, absent
        bytes([0xF8]) + bytes(7),  # 8-byte KID, only 7 present, then no CTR
        bytes([0x88, 0x09]),  # KID present, CTR missing
        bytes([0x80, 0x05]),  # KID 5 written in an extra byte: not minimal
        bytes([0x90, 0x00, 0x09]),  # KID with a leading zero byte: not minimal
        bytes([0x08, 0x07]),  # CTR 7 written in an extra byte
        bytes([0x09, 0x00, 0xFF]),  # CTR with a leading zero byte
    ],
)
def test_malformed_headers_are_refused(header: bytes) -> None:
    with pytest.raises(SFrameHeaderError) as caught:
        decode_header(header)
    # A clear ValueError for callers parsing input, and an integrity failure for those who drop.
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, FormatError)


@pytest.mark.parametrize("kid, ctr", [(-1, 0), (0, -1), (2**64, 0), (0, 2**64)])
def test_out_of_range_values_are_refused(kid: int, ctr: int) -> None:
    with pytest.raises(SFrameError):
        encode_header(kid, ctr)


def test_unknown_cipher_suite_is_refused() -> None:
    with pytest.raises(SFrameError):
        encrypt(1, 1, bytes(16), b"", b"x", suite=6)


# ----------------------------------------------------------------- encryption properties

suites = st.sampled_from(list(CipherSuite))
frames = st.binary(max_size=2000)
base_keys = st.binary(min_size=16, max_size=64)


@given(suites, values, values, base_keys, st.binary(max_size=40), frames)
def test_round_trip(
    suite: CipherSuite, kid: int, ctr: int, key: bytes, metadata: bytes, frame: bytes
) -> None:
    ct = encrypt(kid, ctr, key, metadata, frame, suite)
    assert decrypt({kid: key}, metadata, ct, suite) == (kid, ctr, frame)
    assert decrypt(lambda k: key if k == kid else None, metadata, ct, suite)[2] == frame


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(suites, values, values, base_keys, frames, st.data())
def test_tampering_any_byte_raises_integrity_error(
    suite: CipherSuite, kid: int, ctr: int, key: bytes, frame: bytes, data: st.DataObject
) -> None:
    ct = bytearray(encrypt(kid, ctr, key, b"", frame, suite))
    index = data.draw(st.integers(0, len(ct) - 1), label="index")
    ct[index] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(IntegrityError):
        # Whatever KID the tampered header names, the key store answers with the same key.
        decrypt(lambda _kid: key, b"", bytes(ct), suite)


@given(suites, base_keys, frames, st.data())
def test_truncated_or_extended_frames_raise_integrity_error(
    suite: CipherSuite, key: bytes, frame: bytes, data: st.DataObject
) -> None:
    ct = encrypt(300, 2**40, key, b"", frame, suite)
    cut = data.draw(st.integers(0, len(ct) - 1), label="cut")
    with pytest.raises(IntegrityError):
        decrypt(lambda _kid: key, b"", ct[:cut], suite)
    with pytest.raises(IntegrityError):
        decrypt(lambda _kid: key, b"", ct + b"\x00", suite)


@given(suites, base_keys, base_keys, frames)
def test_wrong_key_raises_integrity_error(
    suite: CipherSuite, key: bytes, other: bytes, frame: bytes
) -> None:
    if key == other:
        return
    ct = encrypt(9, 1000, key, b"", frame, suite)
    with pytest.raises(IntegrityError):
        decrypt({9: other}, b"", ct, suite)


@given(suites, base_keys, frames, st.binary(max_size=20), st.binary(max_size=20))
def test_metadata_is_authenticated(
    suite: CipherSuite, key: bytes, frame: bytes, metadata: bytes, other: bytes
) -> None:
    if metadata == other:
        return
    ct = encrypt(1, 1, key, metadata, frame, suite)
    with pytest.raises(IntegrityError):
        decrypt({1: key}, other, ct, suite)


def test_the_other_suite_does_not_decrypt() -> None:
    ct = encrypt(1, 1, bytes(32), b"", b"frame", CipherSuite.AES_256_GCM_SHA512_128)
    with pytest.raises(IntegrityError):
        decrypt({1: bytes(32)}, b"", ct, CipherSuite.AES_128_GCM_SHA256_128)


def test_default_suite_is_aes_256_gcm_sha512() -> None:
    ct = encrypt(1, 1, bytes(32), b"", b"frame")
    assert decrypt({1: bytes(32)}, b"", ct, 0x0005)[2] == b"frame"
    assert len(ct) == 1 + len(b"frame") + 16


def test_unknown_kid_can_be_buffered_or_dropped() -> None:
    ct = encrypt(12, 0, bytes(32), b"", b"frame")
    with pytest.raises(UnknownKeyIdError) as caught:
        decrypt({11: bytes(32)}, b"", ct)
    assert caught.value.kid == 12
    assert isinstance(caught.value, KeyNotFoundError)
    assert isinstance(caught.value, IntegrityError)


def test_errors_do_not_carry_key_material() -> None:
    key = bytes(range(32))
    ct = encrypt(3, 3, key, b"", b"secret frame")
    with pytest.raises(IntegrityError) as caught:
        decrypt({3: bytes(32)}, b"", ct)
    text = str(caught.value) + repr(caught.value)
    assert key.hex() not in text and "secret" not in text
    ctx = SFrameContext()
    ctx.add_encryption_key(1, key)
    assert key.hex() not in repr(ctx) and repr(key) not in repr(ctx)


# --------------------------------------------------------------------- context and replay


def test_context_counts_and_refuses_replays() -> None:
    sender, receiver = SFrameContext(), SFrameContext()
    sender.add_encryption_key(7, bytes(32))
    receiver.add_decryption_key(7, bytes(32))
    first = sender.encrypt(7, b"", b"one")
    second = sender.encrypt(7, b"", b"two")
    assert decode_header(first)[:2] == (7, 0) and decode_header(second)[:2] == (7, 1)
    assert receiver.decrypt(b"", second) == (7, 1, b"two")
    assert receiver.decrypt(b"", first) == (7, 0, b"one")  # late, but inside the window
    for replay in (first, second):
        with pytest.raises(ReplayError):
            receiver.decrypt(b"", replay)


def test_forged_frames_do_not_move_the_replay_window() -> None:
    receiver = SFrameContext()
    receiver.add_decryption_key(7, bytes(32))
    forged = encrypt(7, 10_000, bytes.fromhex("11" * 32), b"", b"forged")
    with pytest.raises(IntegrityError):
        receiver.decrypt(b"", forged)
    genuine = encrypt(7, 0, bytes(32), b"", b"genuine")
    assert receiver.decrypt(b"", genuine)[2] == b"genuine"


def test_frames_older_than_the_window_are_refused() -> None:
    receiver = SFrameContext(replay_window=4)
    receiver.add_decryption_key(1, bytes(32))
    receiver.decrypt(b"", encrypt(1, 10, bytes(32), b"", b"x"))
    receiver.decrypt(b"", encrypt(1, 7, bytes(32), b"", b"x"))
    with pytest.raises(ReplayError):
        receiver.decrypt(b"", encrypt(1, 6, bytes(32), b"", b"x"))


@given(st.lists(st.integers(0, 300), max_size=200), st.integers(1, 70))
def test_replay_window_matches_a_model(counters: list[int], size: int) -> None:
    window, accepted, highest = ReplayWindow(size), set[int](), -1
    for ctr in counters:
        fresh = ctr not in accepted and ctr > highest - size
        try:
            window.accept(ctr)
        except ReplayError:
            assert not fresh
        else:
            assert fresh
            accepted.add(ctr)
            highest = max(highest, ctr)


def test_context_key_rules() -> None:
    ctx = SFrameContext()
    ctx.add_encryption_key(1, bytes(32))
    with pytest.raises(SFrameError):
        ctx.add_decryption_key(1, bytes(32))  # one key: encryption or decryption, never both
    with pytest.raises(SFrameError):
        ctx.add_encryption_key(1, bytes(32))  # a new key needs a new KID
    with pytest.raises(SFrameError):
        ctx.encrypt(2, b"", b"frame")  # no key for KID 2
    with pytest.raises(UnknownKeyIdError):
        ctx.decrypt(b"", encrypt(1, 0, bytes(32), b"", b"frame"))  # KID 1 is for sending
    last = SFrameContext()
    last.add_encryption_key(1, bytes(32), first_counter=MAX_VALUE)
    assert decode_header(last.encrypt(1, b"", b"x"))[1] == MAX_VALUE
    with pytest.raises(SFrameError):
        last.encrypt(1, b"", b"x")  # the counter never wraps to a used nonce
    ctx.remove_key(1)
    with pytest.raises(SFrameError):
        ctx.encrypt(1, b"", b"frame")


# ------------------------------------------------------------- key schedule and safety code


def _pair() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return private, public


def test_both_sides_derive_the_same_keys_and_code() -> None:
    alice, alice_pub = _pair()
    bob, bob_pub = _pair()
    t_alice = transcript([alice_pub, bob_pub])
    t_bob = transcript([bob_pub, alice_pub])
    assert t_alice == t_bob
    shared_alice = alice.exchange(
        ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bob_pub)
    )
    shared_bob = bob.exchange(
        ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), alice_pub)
    )
    a_to_b = derive_base_key(shared_alice, t_alice, "alice")
    assert a_to_b == derive_base_key(shared_bob, t_bob, "alice")
    assert a_to_b != derive_base_key(shared_alice, t_alice, "bob")  # one key per sender
    assert len(a_to_b) == 32
    code = safety_code(t_alice)
    assert code == safety_code(t_bob) and len(code) == 6 and code.isdigit()
    # A substituted key (man in the middle) changes the transcript, the keys and the code.
    _, mallory_pub = _pair()
    t_mitm = transcript([alice_pub, mallory_pub])
    assert safety_code(t_mitm) != code
    assert derive_base_key(shared_alice, t_mitm, "alice") != a_to_b
    # A new epoch (someone joins) gives new keys from the same pairwise secret.
    _, carol_pub = _pair()
    t_three = transcript([alice_pub, bob_pub, carol_pub])
    assert derive_base_key(shared_alice, t_three, "alice") != a_to_b


def test_key_schedule_known_answers() -> None:
    """Fixed values, so that the JavaScript mirror is pinned to the same definition (the
    browser test computes the same three values)."""
    t = transcript([bytes([4]) + bytes(64), bytes([4]) + bytes([1]) * 64])
    assert t[:3] == b"\x00\x41\x04" and len(t) == 2 * 67
    assert derive_base_key(bytes(range(32)), t, "médecin-1").hex() == KNOWN_BASE_KEY
    assert safety_code(t) == KNOWN_SAFETY_CODE


KNOWN_BASE_KEY = "c3e8abb6210411f9ead06d71779e6e233c2a4dc3eef4e309cd69637a7ab56bfc"
KNOWN_SAFETY_CODE = "168534"


@given(st.lists(st.binary(min_size=1, max_size=70), min_size=2, max_size=5, unique=True))
def test_transcript_ignores_order_and_codes_are_six_digits(keys: list[bytes]) -> None:
    t = transcript(keys)
    assert t == transcript(reversed(keys))
    code = safety_code(t)
    assert len(code) == 6 and code.isdigit()


@pytest.mark.parametrize("keys", [[b"a"], [b"a", b"a"], [b"", b"a"]])
def test_bad_transcripts_are_refused(keys: list[bytes]) -> None:
    with pytest.raises(SFrameError):
        transcript(keys)


def test_safety_codes_spread() -> None:
    codes = {safety_code(transcript([bytes([i]), b"peer"])) for i in range(200)}
    assert len(codes) >= 195
