"""Secretum file encryption against Tink itself (``tink`` package): Tink decrypts what we
write, we decrypt what Tink writes, with the same raw 32-byte key in a Tink keyset."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import tink
from tink import secret_key_access, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

from secretum.crypto.context import FileContext
from secretum.crypto.errors import IntegrityError
from secretum.crypto.streaming import (
    ciphertext_size,
    decrypt_range,
    decrypt_stream,
    encrypt_stream,
)

MiB = 1 << 20
KEY = hashlib.sha256(b"secretum/test/tink-interop").digest()
VECTORS = Path(__file__).parents[1] / "vectors" / "streaming_aes256_gcm_hkdf_1mb.json"
TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey"

streaming_aead.register()


def tink_keyset(key: bytes, segment_size: int = MiB) -> tink_pb2.Keyset:
    """A keyset holding our raw key as an AesGcmHkdfStreamingKey (AES256_GCM_HKDF_1MB)."""
    proto_key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(version=0, key_value=key)
    proto_key.params.ciphertext_segment_size = segment_size
    proto_key.params.derived_key_size = 32
    proto_key.params.hkdf_hash_type = common_pb2.SHA256
    keyset = tink_pb2.Keyset(primary_key_id=1234)
    entry = keyset.key.add()
    entry.key_data.type_url = TYPE_URL
    entry.key_data.value = proto_key.SerializeToString()
    entry.key_data.key_material_type = tink_pb2.KeyData.SYMMETRIC
    entry.status = tink_pb2.ENABLED
    entry.key_id = 1234
    entry.output_prefix_type = tink_pb2.RAW
    return keyset


def tink_primitive(key: bytes, segment_size: int = MiB) -> Any:
    serialized = tink_keyset(key, segment_size).SerializeToString()
    handle = tink.proto_keyset_format.parse(serialized, secret_key_access.TOKEN)
    return handle.primitive(streaming_aead.StreamingAead)


class _Captured(io.BytesIO):
    """Tink closes its destination: keep what was written."""

    value = b""

    def close(self) -> None:
        self.value = self.getvalue()
        super().close()


def tink_encrypt(pt: bytes, ad: bytes, segment_size: int = MiB) -> bytes:
    out = _Captured()
    with tink_primitive(KEY, segment_size).new_encrypting_stream(out, ad) as stream:
        view = memoryview(pt)
        for start in range(0, len(pt), 300_000):  # several writes, not segment-aligned
            stream.write(view[start : start + 300_000])
    return out.value


def tink_decrypt(ct: bytes, ad: bytes, segment_size: int = MiB) -> bytes:
    with tink_primitive(KEY, segment_size).new_decrypting_stream(io.BytesIO(ct), ad) as stream:
        data: bytes = stream.read()
    return data


def ours_encrypt(pt: bytes, ad: bytes, segment_size: int = MiB) -> bytes:
    out = io.BytesIO()
    encrypt_stream(KEY, io.BytesIO(pt), out, ad, segment_size=segment_size)
    return out.getvalue()


def ours_decrypt(ct: bytes, ad: bytes, segment_size: int = MiB) -> bytes:
    out = io.BytesIO()
    decrypt_stream(KEY, io.BytesIO(ct), out, ad, segment_size=segment_size)
    return out.getvalue()


def plaintext(size: int) -> bytes:
    out = bytearray()
    block = size.to_bytes(8, "big")
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


SIZES = [
    0,
    1,
    1000,
    MiB - 57,  # one byte short of filling the first segment
    MiB - 56,  # exactly the first segment
    MiB - 55,  # one byte into the second segment
    2 * MiB - 72,  # exactly two segments
    2 * MiB + 12345,  # more than 2 MiB: three segments
]
ADS = {"empty": b"", "file context": FileContext("scan", "file-42", "patient-7", 3).encode()}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("ad", ADS.values(), ids=ADS.keys())
def test_tink_decrypts_secretum(size: int, ad: bytes) -> None:
    pt = plaintext(size)
    ct = ours_encrypt(pt, ad)
    assert tink_decrypt(ct, ad) == pt


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("ad", ADS.values(), ids=ADS.keys())
def test_secretum_decrypts_tink(size: int, ad: bytes) -> None:
    pt = plaintext(size)
    ct = tink_encrypt(pt, ad)
    # RAW output prefix: no 5-byte Tink key-id prefix, the header comes first.
    assert len(ct) == ciphertext_size(size) and ct[0] == 40
    assert ours_decrypt(ct, ad) == pt
    offset = size // 3
    assert decrypt_range(KEY, io.BytesIO(ct), ad, offset, 70_000) == pt[offset : offset + 70_000]


@pytest.mark.parametrize("segment_size", [64, 4096])
def test_other_segment_sizes_both_ways(segment_size: int) -> None:
    pt = plaintext(10 * segment_size + 7)
    ad = ADS["file context"]
    assert tink_decrypt(ours_encrypt(pt, ad, segment_size), ad, segment_size) == pt
    assert ours_decrypt(tink_encrypt(pt, ad, segment_size), ad, segment_size) == pt


def test_keyset_is_raw_and_tink_refuses_the_wrong_associated_data() -> None:
    keyset = tink_keyset(KEY)
    assert keyset.key[0].output_prefix_type == tink_pb2.RAW
    ct = ours_encrypt(b"compte rendu", b"right")
    with pytest.raises(tink.TinkError):
        tink_decrypt(ct, b"wrong")
    with pytest.raises(IntegrityError):
        ours_decrypt(tink_encrypt(b"compte rendu", b"right"), b"wrong")


def test_tink_decrypts_the_known_answer_vectors() -> None:
    cases = json.loads(VECTORS.read_text())["cases"]
    assert len(cases) >= 5
    for case in cases:
        key, ad, pt, ct = (
            bytes.fromhex(case[f]) for f in ("key", "associated_data", "plaintext", "ciphertext")
        )
        segment_size = case["segment_size"]
        stream = tink_primitive(key, segment_size).new_decrypting_stream(io.BytesIO(ct), ad)
        with stream:
            assert stream.read() == pt, case["name"]
