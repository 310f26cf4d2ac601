"""File encryption (segmented streaming AEAD): round trips, the exact format, and every way of
breaking a ciphertext is refused without leaking unauthenticated plaintext."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from secretum.crypto import streaming, streaming_format
from secretum.crypto.context import FileContext
from secretum.crypto.errors import FormatError, IntegrityError
from secretum.crypto.streaming import (
    DecryptingReader,
    ciphertext_size,
    decrypt_range,
    decrypt_stream,
    decrypt_to_path,
    encrypt_stream,
    plaintext_size,
)
from secretum.crypto.streaming_format import Layout

MiB = 1 << 20
SEG = 64  # small segments: first plaintext segment 8 bytes, the others 48
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
AD = FileContext("document", "file-1", "patient-1", 1).encode()
VECTORS = Path(__file__).parents[1] / "vectors" / "streaming_aes256_gcm_hkdf_1mb.json"


def enc(pt: bytes, *, key: bytes = KEY, ad: bytes = AD, seg: int = SEG, **kw: Any) -> bytes:
    out = io.BytesIO()
    written = encrypt_stream(key, io.BytesIO(pt), out, ad, segment_size=seg, **kw)
    assert written == len(out.getvalue())
    return out.getvalue()


def dec(ct: bytes, *, key: bytes = KEY, ad: bytes = AD, seg: int = SEG) -> bytes:
    out = io.BytesIO()
    written = decrypt_stream(key, io.BytesIO(ct), out, ad, segment_size=seg)
    assert written == len(out.getvalue())
    return out.getvalue()


def fixed_rng(salt: bytes, prefix: bytes) -> Callable[[int], bytes]:
    """An ``_rng`` giving this salt, then this nonce prefix (known-answer tests only)."""
    values = iter([salt, prefix])
    return lambda n: next(values)


def boundary_sizes(seg: int) -> list[int]:
    """Plaintext sizes around the segment boundaries: where off-by-ones live."""
    first, pt = seg - 56, seg - 16
    around = [0, 1, first, first + pt, first + 2 * pt, first + 3 * pt]
    return sorted({n + d for n in around for d in (-1, 0, 1) if n + d >= 0})


def pseudo_random(n: int, seed: int = 0) -> bytes:
    out = bytearray()
    block = seed.to_bytes(8, "big")
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


class NullSink(io.RawIOBase):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.hash.update(b)
        self.count += len(memoryview(b).cast("B"))
        return len(memoryview(b).cast("B"))


class PatternReader(io.RawIOBase):
    """``size`` bytes repeating a block, never held in memory at once."""

    def __init__(self, size: int, block: bytes) -> None:
        super().__init__()
        self.remaining, self.block, self.offset = size, block, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = min(len(view), self.remaining, len(self.block) - self.offset)
        view[:n] = memoryview(self.block)[self.offset : self.offset + n]
        self.offset = (self.offset + n) % len(self.block)
        self.remaining -= n
        return n


# --- round trips -------------------------------------------------------------------------------


@st.composite
def plaintexts(draw: st.DrawFn, seg: int) -> bytes:
    size = draw(st.one_of(st.sampled_from(boundary_sizes(seg)), st.integers(0, 12 * seg)))
    return draw(st.binary(min_size=size, max_size=size))


@settings(deadline=None, max_examples=300)
@given(data=st.data(), seg=st.sampled_from([57, 64, 100, 1000]), ad=st.binary(max_size=64))
def test_round_trip_small_segments(data: st.DataObject, seg: int, ad: bytes) -> None:
    pt = data.draw(plaintexts(seg))
    ct = enc(pt, ad=ad, seg=seg)
    assert ct[0] == 40
    assert len(ct) == ciphertext_size(len(pt), seg)
    assert plaintext_size(len(ct), seg) == len(pt)
    assert dec(ct, ad=ad, seg=seg) == pt


@pytest.mark.parametrize(
    "size",
    [0, 1, MiB - 57, MiB - 56, MiB - 55, 2 * MiB - 73, 2 * MiB - 72, 2 * MiB - 71],
)
def test_round_trip_default_1mib_segments(size: int) -> None:
    pt = pseudo_random(size)
    out = io.BytesIO()
    encrypt_stream(KEY, io.BytesIO(pt), out, AD)
    ct = out.getvalue()
    assert len(ct) == ciphertext_size(size)
    back = io.BytesIO()
    assert decrypt_stream(KEY, io.BytesIO(ct), back, AD) == size
    assert back.getvalue() == pt


def test_sizes_of_tink_ciphertexts() -> None:
    # Tink's layout: an empty plaintext is one empty last segment; a plaintext filling its
    # segments exactly ends with a full last segment, never an extra empty one.
    assert ciphertext_size(0) == 56
    assert ciphertext_size(MiB - 56) == MiB
    assert ciphertext_size(MiB - 55) == MiB + 17
    assert ciphertext_size(2 * MiB - 72) == 2 * MiB
    assert ciphertext_size(0, 64) == 56
    assert ciphertext_size(8, 64) == 64
    assert ciphertext_size(9, 64) == 64 + 17


@settings(deadline=None)
@given(size=st.integers(0, 1 << 37), seg=st.sampled_from([57, 64, 4096, MiB]))
def test_size_functions_are_inverse_and_match_tink_formula(size: int, seg: int) -> None:
    ct = ciphertext_size(size, seg)
    assert plaintext_size(ct, seg) == size
    # tink-java AesGcmHkdfStreaming.expectedCiphertextSize, with ciphertext offset 40
    full, rest = divmod(size + 40, seg - 16)
    assert ct == full * seg + (rest + 16 if rest else 0)


def test_segment_counter_limit() -> None:
    # The counter in the nonce is 4 bytes: at most 2**32 segments.
    largest = (1 << 32) * (SEG - 16) - 40
    assert plaintext_size(ciphertext_size(largest, SEG), SEG) == largest
    with pytest.raises(ValueError):
        ciphertext_size(largest + 1, SEG)
    with pytest.raises(FormatError):
        plaintext_size((1 << 32) * SEG + 17, SEG)


def test_every_ciphertext_size_is_valid_or_refused() -> None:
    valid = {ciphertext_size(n, SEG) for n in range(0, 20 * SEG)}
    for size in range(0, 18 * SEG):
        if size in valid:
            assert ciphertext_size(plaintext_size(size, SEG), SEG) == size
        else:
            with pytest.raises(FormatError):
                plaintext_size(size, SEG)


def test_format_matches_the_spec_segment_by_segment() -> None:
    """Re-derive every segment with raw HKDF + AES-GCM, independently of the module."""
    pt = pseudo_random(150)
    ct = enc(pt)
    assert ct[0] == 40
    salt, prefix = ct[1:33], ct[33:40]
    file_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=AD).derive(KEY)
    aead = AESGCM(file_key)
    # (ciphertext start, end, plaintext end) of the 4 segments: 8, 48, 48 and 46 bytes
    bounds = [(40, 64, 8), (64, 128, 56), (128, 192, 104), (192, 254, 150)]
    assert len(ct) == 254
    recovered = b""
    for i, (start, end, pt_end) in enumerate(bounds):
        last = i == len(bounds) - 1
        nonce = prefix + i.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        recovered += aead.decrypt(nonce, ct[start:end], None)
        assert recovered == pt[:pt_end]


def test_fresh_salt_and_prefix_each_time() -> None:
    a, b = enc(b"same"), enc(b"same")
    assert a[1:40] != b[1:40] and a[40:] != b[40:]
    assert dec(a) == dec(b) == b"same"


def test_rng_is_called_for_salt_then_prefix() -> None:
    calls: list[int] = []

    def rng(n: int) -> bytes:
        calls.append(n)
        return bytes([len(calls)]) * n

    ct = enc(b"x", _rng=rng)
    assert calls == [32, 7]
    assert ct[1:33] == b"\x01" * 32 and ct[33:40] == b"\x02" * 7


def test_rng_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError):
        enc(b"x", _rng=lambda n: b"\x00" * (n - 1))


def test_progress_reports_cumulative_plaintext_bytes() -> None:
    pt = pseudo_random(200)
    seen: list[int] = []
    ct = enc(pt, progress=seen.append)
    assert seen == [8, 56, 104, 152, 200]
    seen_dec: list[int] = []
    decrypt_stream(
        KEY, io.BytesIO(ct), io.BytesIO(), AD, segment_size=SEG, progress=seen_dec.append
    )
    assert seen_dec == seen


class Dribble(io.RawIOBase):
    """A source that returns at most 3 bytes per call, like a slow socket."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        chunk = self.data.read(min(3, len(b)))
        memoryview(b).cast("B")[: len(chunk)] = chunk
        return len(chunk)


class ReadOnly:
    """A source with ``read`` and no ``readinto``."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self.data.read(min(n, 5))


class PartialWriter(io.RawIOBase):
    """A destination that accepts at most 5 bytes per call."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        chunk = bytes(memoryview(b).cast("B")[:5])
        self.data += chunk
        return len(chunk)


@pytest.mark.parametrize("source", [Dribble, ReadOnly])
def test_short_reads_and_partial_writes(source: Callable[[bytes], Any]) -> None:
    pt = pseudo_random(300)
    dst = PartialWriter()
    encrypt_stream(KEY, source(pt), cast(BinaryIO, dst), AD, segment_size=SEG)
    salt, prefix = bytes(dst.data[1:33]), bytes(dst.data[33:40])
    assert bytes(dst.data) == enc(pt, _rng=fixed_rng(salt, prefix))
    back = PartialWriter()
    decrypt_stream(KEY, source(bytes(dst.data)), cast(BinaryIO, back), AD, segment_size=SEG)
    assert bytes(back.data) == pt


def test_non_blocking_source_is_refused() -> None:
    class WouldBlock(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> None:
            return None

    with pytest.raises(BlockingIOError):
        encrypt_stream(KEY, cast(BinaryIO, WouldBlock()), io.BytesIO(), AD)


def test_fallback_without_encrypt_into(monkeypatch: pytest.MonkeyPatch) -> None:
    """The path for cryptography versions without AESGCM.encrypt_into/decrypt_into."""
    pt = pseudo_random(200)
    fixed = (b"\x07" * 32, b"\x09" * 7)
    expected = enc(pt, _rng=fixed_rng(*fixed))
    monkeypatch.setattr(streaming_format, "_HAS_INTO", False)
    assert enc(pt, _rng=fixed_rng(*fixed)) == expected
    assert dec(expected) == pt
    tampered = bytearray(expected)
    tampered[-1] ^= 1
    with pytest.raises(IntegrityError):
        dec(bytes(tampered))


# --- tampering ---------------------------------------------------------------------------------

PT = pseudo_random(150, seed=1)  # 4 segments of 64 bytes: 8 + 48 + 48 + 46 plaintext bytes
CT = enc(PT)
LAYOUT = Layout(SEG)


def segments(ct: bytes) -> list[bytes]:
    return [ct[40:SEG]] + [ct[i : i + SEG] for i in range(SEG, len(ct), SEG)]


def test_every_flipped_byte_is_detected_and_nothing_of_it_is_written() -> None:
    assert len(segments(CT)) == 4
    for pos in range(len(CT)):
        tampered = bytearray(CT)
        tampered[pos] ^= 0x01
        out = io.BytesIO()
        with pytest.raises(IntegrityError):
            decrypt_stream(KEY, io.BytesIO(bytes(tampered)), out, AD, segment_size=SEG)
        # Only the segments before the tampered one were written, all authenticated.
        first_bad = -1 if pos < 40 else pos // SEG
        assert out.getvalue() == (b"" if first_bad < 0 else PT[: LAYOUT.pt_start(first_bad)])
        with pytest.raises(IntegrityError):
            decrypt_range(KEY, io.BytesIO(bytes(tampered)), AD, 0, len(PT), segment_size=SEG)


def test_failed_segment_leaves_no_plaintext_in_memory() -> None:
    # AESGCM.decrypt_into writes the plaintext before it checks the tag: the buffer is wiped.
    salt, prefix = b"\x01" * 32, b"\x02" * 7
    cipher = streaming_format.SegmentCipher(KEY, salt, prefix, AD)
    plain = b"diagnostic: " + bytes(36)
    sealed = bytearray(SEG)
    n = cipher.seal_into(1, False, memoryview(plain), memoryview(sealed))
    sealed[n - 1] ^= 1  # break the tag only: the ciphertext body still decrypts to ``plain``
    out = bytearray(b"\xaa" * 48)
    with pytest.raises(IntegrityError):
        cipher.open_into(1, False, memoryview(sealed)[:n], memoryview(out))
    assert out == bytes(48)


def test_header_errors_are_format_errors() -> None:
    bad = bytearray(CT)
    bad[0] = 41
    with pytest.raises(FormatError):
        dec(bytes(bad))
    with pytest.raises(FormatError):
        dec(b"")
    with pytest.raises(FormatError):
        dec(CT[:39])


@pytest.mark.parametrize(
    ("key", "ad"),
    [
        (OTHER_KEY, AD),
        (KEY, b""),
        (KEY, FileContext("document", "file-1", "patient-1", 2).encode()),
    ],
    ids=["wrong key", "empty associated data", "other version"],
)
def test_wrong_key_or_associated_data(key: bytes, ad: bytes) -> None:
    out = io.BytesIO()
    with pytest.raises(IntegrityError) as info:
        decrypt_stream(key, io.BytesIO(CT), out, ad, segment_size=SEG)
    assert out.getvalue() == b""
    message = str(info.value)
    assert KEY.hex() not in message and OTHER_KEY.hex() not in message
    assert PT[:8].hex() not in message and repr(PT[:8]) not in message
    with pytest.raises(IntegrityError):
        decrypt_range(key, io.BytesIO(CT), ad, 0, 10, segment_size=SEG)


def test_empty_plaintext_is_authenticated_too() -> None:
    ct = enc(b"")
    assert len(ct) == 56
    with pytest.raises(IntegrityError):
        dec(ct, key=OTHER_KEY)
    with pytest.raises(IntegrityError):
        dec(ct[:40])


def test_every_truncation_is_detected() -> None:
    for cut in range(len(CT)):
        with pytest.raises(IntegrityError):
            dec(CT[:cut])


def test_dropping_the_last_segment_is_detected() -> None:
    # Cut exactly at a segment boundary: what remains is well formed but its last segment
    # was not sealed as the last one.
    for boundary in (SEG, 2 * SEG, 3 * SEG):
        with pytest.raises(IntegrityError):
            dec(CT[:boundary])


@pytest.mark.parametrize(
    "extra",
    [b"\x00", b"\x00" * 16, b"\x00" * 17, CT[-30:], CT[SEG : 2 * SEG], CT],
    ids=["1 byte", "a tag", "17 bytes", "last segment again", "a middle segment", "whole file"],
)
def test_appended_bytes_are_detected(extra: bytes) -> None:
    with pytest.raises(IntegrityError):
        dec(CT + extra)


def test_appended_bytes_after_a_full_last_segment_are_detected() -> None:
    ct = enc(PT[:56])  # exactly two full segments
    assert len(ct) == 2 * SEG
    for extra in (1, 15, 16, 17, SEG):
        with pytest.raises(IntegrityError):
            dec(ct + bytes(extra))


def test_non_canonical_empty_last_segment_is_refused() -> None:
    """An authentic ciphertext ending with an empty segment after full ones (which neither
    Tink nor Secretum ever writes) is refused: one valid ciphertext size per plaintext size."""
    salt, prefix = b"\x05" * 32, b"\x06" * 7
    canonical = enc(PT[:56], _rng=fixed_rng(salt, prefix))  # two full segments
    cipher = streaming_format.SegmentCipher(KEY, salt, prefix, AD)
    sealed = bytearray(SEG)
    n0 = cipher.seal_into(0, False, memoryview(PT[:8]), memoryview(sealed))
    s0 = bytes(sealed[:n0])
    n1 = cipher.seal_into(1, False, memoryview(PT[8:56]), memoryview(sealed))
    s1 = bytes(sealed[:n1])
    n2 = cipher.seal_into(2, True, memoryview(b""), memoryview(sealed))
    crafted = canonical[:40] + s0 + s1 + bytes(sealed[:n2])
    assert n2 == 16 and crafted[:SEG] == canonical[:SEG]
    with pytest.raises(FormatError):
        dec(crafted)
    with pytest.raises(FormatError):
        plaintext_size(len(crafted), SEG)


def test_reordered_or_duplicated_segments_are_detected() -> None:
    header, s0, s1, s2, s3 = CT[:40], *segments(CT)
    for bad in (
        header + s0 + s2 + s1 + s3,  # swapped middle segments
        header + s0 + s1 + s1 + s2 + s3,  # duplicated
        header + s0 + s2 + s3,  # one removed from the middle
    ):
        with pytest.raises(IntegrityError):
            dec(bad)


def test_splicing_two_files_is_detected() -> None:
    other = enc(PT)  # same key and associated data, other salt
    with pytest.raises(IntegrityError):
        dec(CT[: 2 * SEG] + other[2 * SEG :])


# --- safe decryption to a file -----------------------------------------------------------------


def test_decrypt_to_path_writes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "out.pdf"
    assert decrypt_to_path(KEY, io.BytesIO(CT), target, AD, segment_size=SEG) == len(PT)
    assert target.read_bytes() == PT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pdf"]


def test_decrypt_to_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    tampered = bytearray(CT)
    tampered[-1] ^= 1  # the last segment fails: earlier ones were already decrypted
    target = tmp_path / "out.pdf"
    with pytest.raises(IntegrityError):
        decrypt_to_path(KEY, io.BytesIO(bytes(tampered)), target, AD, segment_size=SEG)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"previous version")
    with pytest.raises(IntegrityError):
        decrypt_to_path(KEY, io.BytesIO(bytes(tampered)), target, AD, segment_size=SEG)
    assert target.read_bytes() == b"previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["out.pdf"]


# --- random access -----------------------------------------------------------------------------

BIG_PT = pseudo_random(700, seed=2)
BIG_CT = enc(BIG_PT)


@settings(deadline=None, max_examples=300)
@given(offset=st.integers(0, 760), length=st.integers(0, 760))
def test_decrypt_range_equals_slicing(offset: int, length: int) -> None:
    got = decrypt_range(KEY, io.BytesIO(BIG_CT), AD, offset, length, segment_size=SEG)
    assert got == BIG_PT[offset : offset + length]


@pytest.mark.parametrize(
    ("offset", "length"), [(0, 10), (MiB - 60, 10), (MiB - 56, 1), (2 * MiB - 80, 30000)]
)
def test_decrypt_range_default_segments(offset: int, length: int) -> None:
    pt = pseudo_random(2 * MiB + 1000, seed=3)
    out = io.BytesIO()
    encrypt_stream(KEY, io.BytesIO(pt), out, AD)
    assert decrypt_range(KEY, out, AD, offset, length) == pt[offset : offset + length]


def test_decrypt_range_only_needs_the_covering_segments() -> None:
    layout = Layout(SEG)
    tampered = bytearray(BIG_CT)
    bad = 5
    tampered[layout.ct_start(bad) + 3] ^= 1
    src = io.BytesIO(bytes(tampered))
    # Segments 1 and 2, away from the tampered one, still read fine...
    start, end = layout.pt_start(1), layout.pt_start(3)
    assert decrypt_range(KEY, src, AD, start, end - start, segment_size=SEG) == BIG_PT[start:end]
    # ...but any range touching segment 5 is refused.
    for offset in (layout.pt_start(bad), layout.pt_start(bad + 1) - 1, layout.pt_start(4) + 47):
        with pytest.raises(IntegrityError):
            decrypt_range(KEY, src, AD, offset, 2, segment_size=SEG)


def test_decrypt_range_checks_the_last_flag() -> None:
    # Truncated at a segment boundary: the new last segment was not sealed as last. Every
    # range is refused, the intact first bytes too: the size they would come with is false.
    cut = BIG_CT[: 5 * SEG]
    last_byte = plaintext_size(len(cut), SEG) - 1
    for offset, length in ((0, 8), (last_byte, 1), (0, 0), (10_000, 5)):
        with pytest.raises(IntegrityError):
            decrypt_range(KEY, io.BytesIO(cut), AD, offset, length, segment_size=SEG)


def test_decrypt_range_clips_like_slicing_and_validates() -> None:
    assert decrypt_range(KEY, io.BytesIO(BIG_CT), AD, 700, 10, segment_size=SEG) == b""
    assert decrypt_range(KEY, io.BytesIO(BIG_CT), AD, 5000, 10, segment_size=SEG) == b""
    assert decrypt_range(KEY, io.BytesIO(BIG_CT), AD, 10, 0, segment_size=SEG) == b""
    with pytest.raises(ValueError):
        decrypt_range(KEY, io.BytesIO(BIG_CT), AD, -1, 10, segment_size=SEG)
    with pytest.raises(ValueError):
        decrypt_range(KEY, io.BytesIO(BIG_CT), AD, 0, -1, segment_size=SEG)
    with pytest.raises(FormatError):  # impossible size: one byte dropped after a full segment
        decrypt_range(KEY, io.BytesIO(BIG_CT[: 5 * SEG + 3]), AD, 0, 1, segment_size=SEG)


def test_decrypting_reader_seek_and_read() -> None:
    src = io.BytesIO(BIG_CT)
    reader = DecryptingReader(KEY, src, AD, segment_size=SEG)
    assert reader.size == len(BIG_PT) and reader.seekable() and reader.readable()
    assert reader.read(5) == BIG_PT[:5]
    assert reader.tell() == 5
    assert reader.read(100) == BIG_PT[5:105]  # spans segments: read() is not short
    assert reader.seek(-10, io.SEEK_END) == len(BIG_PT) - 10
    assert reader.read() == BIG_PT[-10:]
    assert reader.read(1) == b""
    assert reader.seek(-20, io.SEEK_CUR) == len(BIG_PT) - 20
    buf = bytearray(64)
    n = reader.readinto(buf)
    assert 0 < n <= 20 and bytes(buf[:n]) == BIG_PT[680 : 680 + n]
    reader.seek(0)
    assert reader.readall() == BIG_PT
    with pytest.raises(ValueError):
        reader.seek(-1)
    reader.close()
    assert not src.closed  # the source belongs to the caller
    with pytest.raises(ValueError):
        reader.read(1)
    buffered = io.BufferedReader(DecryptingReader(KEY, src, AD, segment_size=SEG))
    buffered.seek(333)
    assert buffered.read(200) == BIG_PT[333:533]


def test_decrypting_reader_refuses_a_bad_file_at_open() -> None:
    assert len(BIG_CT) % SEG == 36  # the last segment: 20 plaintext bytes and the tag
    for cut in (20, 21, 35):  # leaves a bare tag (not canonical), 15 bytes, 1 byte
        with pytest.raises(FormatError):
            DecryptingReader(KEY, io.BytesIO(BIG_CT[:-cut]), AD, segment_size=SEG)
    for cut in (1, 36):  # plausible sizes: the (new) last segment is authenticated at open
        with pytest.raises(IntegrityError):
            DecryptingReader(KEY, io.BytesIO(BIG_CT[:-cut]), AD, segment_size=SEG)
    with pytest.raises(FormatError):
        DecryptingReader(KEY, io.BytesIO(b"\x29" + BIG_CT[1:]), AD, segment_size=SEG)


# --- input validation --------------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(31), bytes(33), bytes(64)])
def test_key_must_be_32_bytes(key: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        enc(b"x", key=key)
    with pytest.raises(ValueError, match="32 bytes"):
        dec(CT, key=key)


def test_bad_types_are_refused() -> None:
    with pytest.raises(TypeError):
        enc(b"x", key=cast(bytes, "k" * 32))
    with pytest.raises(TypeError):
        enc(b"x", ad=cast(bytes, "context"))
    with pytest.raises(TypeError):
        enc(b"x", seg=cast(int, 64.0))


@pytest.mark.parametrize("seg", [0, 56, -1, 1 << 31])
def test_segment_size_bounds(seg: int) -> None:
    with pytest.raises(ValueError):
        enc(b"x", seg=seg)
    with pytest.raises(ValueError):
        ciphertext_size(1, seg)


def test_smallest_segment_size_works() -> None:
    pt = pseudo_random(100)
    assert dec(enc(pt, seg=57), seg=57) == pt


def test_negative_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        ciphertext_size(-1)
    with pytest.raises(ValueError):
        plaintext_size(-1)


# --- known answers -----------------------------------------------------------------------------


def test_known_answer_vectors() -> None:
    doc = json.loads(VECTORS.read_text())
    cases = doc["cases"]
    assert len(cases) >= 5
    for case in cases:
        key, salt, prefix, ad, pt, ct = (
            bytes.fromhex(case[f])
            for f in ("key", "salt", "nonce_prefix", "associated_data", "plaintext", "ciphertext")
        )
        seg = case["segment_size"]
        assert enc(pt, key=key, ad=ad, seg=seg, _rng=fixed_rng(salt, prefix)) == ct, case["name"]
        assert dec(ct, key=key, ad=ad, seg=seg) == pt, case["name"]
        assert decrypt_range(key, io.BytesIO(ct), ad, 0, len(pt), segment_size=seg) == pt


# --- memory ------------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def test_memory_stays_flat_on_a_64_mib_stream(tmp_path: Path) -> None:
    size, block = 64 * MiB, pseudo_random(MiB + 7, seed=4)
    path = tmp_path / "big.enc"
    rss_tracked = sys.platform == "linux" and _reset_peak_rss()
    rss_base = _status_kib("VmRSS") if rss_tracked else None
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        with path.open("wb") as out:
            written = encrypt_stream(KEY, cast(BinaryIO, PatternReader(size, block)), out, AD)
        enc_peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()
        sink = NullSink()
        with path.open("rb") as src:
            assert decrypt_stream(KEY, src, cast(BinaryIO, sink), AD) == size
        dec_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert written == ciphertext_size(size)
    expected = hashlib.sha256()
    reader = PatternReader(size, block)
    chunk = bytearray(MiB)
    while n := reader.readinto(chunk):
        expected.update(chunk[:n])
    assert sink.hash.digest() == expected.digest()
    # Python-level allocations: a couple of segments at most (none, in fact, per segment).
    assert enc_peak < 2 * MiB, enc_peak
    assert dec_peak < 2 * MiB, dec_peak
    if rss_base is not None:  # Linux: resident memory, mapped segment buffers included
        peak = _status_kib("VmHWM")
        assert peak is not None
        assert (peak - rss_base) * 1024 < 16 * MiB, (peak - rss_base) // 1024


# ---- pooled segment buffers -------------------------------------------------------------------


def _pooled() -> list[bytes]:
    with streaming._pool_lock:
        return [bytes(view) for free in streaming._pool.values() for view in free]


def test_pooled_buffers_hold_no_plaintext_after_any_call() -> None:
    """Segment buffers are reused across calls (fresh mappings cost more than the AES): the
    plaintext ones go back wiped, after a round trip, a reader closed, a failed decryption."""
    secret = b"PLAINTEXT-MARKER" * 4096
    ciphertext = enc(secret, seg=4096)
    assert dec(ciphertext, seg=4096) == secret
    with DecryptingReader(KEY, io.BytesIO(ciphertext), AD, segment_size=4096) as reader:
        assert reader.read(100) == secret[:100]
    tampered = bytearray(ciphertext)
    tampered[-20] ^= 1
    with pytest.raises(IntegrityError):
        dec(bytes(tampered), seg=4096)
    pooled = _pooled()
    assert pooled and not any(b"MARKER" in view for view in pooled)
    plain_size = Layout(4096).pt_segment
    assert all(view == bytes(plain_size) for view in streaming._pool[plain_size])


def test_pooled_buffers_are_not_shared_between_threads() -> None:
    plaintexts = [bytes([n]) * (3 * 4096 + n) for n in range(16)]

    def round_trip(data: bytes) -> bool:
        return all(dec(enc(data, seg=4096), seg=4096) == data for _ in range(20))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(round_trip, plaintexts))
    assert len(streaming._pool[4096]) <= streaming.POOLED_BUFFERS
