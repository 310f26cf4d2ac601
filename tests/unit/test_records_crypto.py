"""Sealed records: round trips, and every way of breaking them is refused."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secretum.crypto.context import FileContext, RecordContext, encode_fields
from secretum.crypto.errors import FormatError, IntegrityError
from secretum.crypto.keys import DataKey
from secretum.crypto.records import OVERHEAD, key_id_of, open_sealed, seal

KEY, MATERIAL = DataKey.generate()
OTHER, _ = DataKey.generate()
CTX = RecordContext("Observation", "obs-1", "pat-1", 1)
ids = st.text(min_size=1, max_size=40)


@given(
    payload=st.binary(max_size=4096),
    rtype=ids,
    rid=ids,
    pid=ids,
    version=st.integers(min_value=0, max_value=2**62),
)
def test_round_trip(payload: bytes, rtype: str, rid: str, pid: str, version: int) -> None:
    ctx = RecordContext(rtype, rid, pid, version)
    sealed = seal(KEY, payload, ctx)
    assert len(sealed) == len(payload) + OVERHEAD
    assert open_sealed(KEY, sealed, ctx) == payload
    assert key_id_of(sealed) == KEY.key_id


def test_fresh_nonce_each_time() -> None:
    assert seal(KEY, b"same", CTX) != seal(KEY, b"same", CTX)


def test_every_flipped_byte_is_detected() -> None:
    sealed = seal(KEY, b"tension 12/8, traitement inchange", CTX)
    for i in range(len(sealed)):
        for mask in (0x01, 0x80):
            tampered = bytearray(sealed)
            tampered[i] ^= mask
            with pytest.raises(IntegrityError):
                open_sealed(KEY, bytes(tampered), CTX)


@pytest.mark.parametrize(
    "other",
    [
        RecordContext("Condition", "obs-1", "pat-1", 1),
        RecordContext("Observation", "obs-2", "pat-1", 1),
        RecordContext("Observation", "obs-1", "pat-2", 1),
        RecordContext("Observation", "obs-1", "pat-1", 2),
    ],
    ids=["type", "record", "patient", "version"],
)
def test_moved_to_another_context_is_refused(other: RecordContext) -> None:
    with pytest.raises(IntegrityError):
        open_sealed(KEY, seal(KEY, b"x", CTX), other)


def test_wrong_key_is_refused() -> None:
    with pytest.raises(IntegrityError):
        open_sealed(OTHER, seal(KEY, b"x", CTX), CTX)
    # same key id, different material: the tag catches it
    impostor = DataKey(KEY.key_id, bytes(32))
    with pytest.raises(IntegrityError):
        open_sealed(impostor, seal(KEY, b"x", CTX), CTX)


@pytest.mark.parametrize("blob", [b"", b"\x01" * (OVERHEAD - 1), b"\x02" + b"\x00" * OVERHEAD])
def test_not_a_sealed_record(blob: bytes) -> None:
    with pytest.raises(FormatError):
        open_sealed(KEY, blob, CTX)


def test_truncated_is_refused() -> None:
    sealed = seal(KEY, b"abcdef", CTX)
    with pytest.raises(IntegrityError):
        open_sealed(KEY, sealed[:-1], CTX)


def test_keys_never_show_their_bytes() -> None:
    text = repr(KEY) + str(KEY)
    assert MATERIAL.hex() not in text and KEY.file_key.hex() not in text
    with pytest.raises(TypeError):
        pickle.dumps(KEY)


def test_record_and_file_contexts_never_collide() -> None:
    assert RecordContext("a", "b", "c", 1).encode() != FileContext("a", "b", "c", 1).encode()


@given(
    st.lists(st.one_of(st.text(), st.binary(), st.integers(-(2**63), 2**63 - 1)), max_size=6),
    st.lists(st.one_of(st.text(), st.binary(), st.integers(-(2**63), 2**63 - 1)), max_size=6),
)
def test_context_encoding_is_injective(a: list[object], b: list[object]) -> None:
    if [(type(x), x) for x in a] != [(type(x), x) for x in b]:
        assert encode_fields(*a) != encode_fields(*b)  # type: ignore[arg-type]


def test_context_rejects_ambiguous_types() -> None:
    with pytest.raises(TypeError):
        encode_fields(True)
    with pytest.raises(TypeError):
        encode_fields(1.5)  # type: ignore[arg-type]
