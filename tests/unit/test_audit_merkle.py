"""RFC 9162 Merkle tree: known answers from tests/vectors/rfc9162_merkle.json, and properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secretum.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    hash_children,
    hash_leaf,
    inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "rfc9162_merkle.json").read_text(encoding="utf-8")
)
LEAVES = [bytes.fromhex(x) for x in VECTORS["leaves"]]
LEAF_HASHES = [hash_leaf(x) for x in LEAVES]
ROOTS = [bytes.fromhex(x) for x in VECTORS["roots"]]


def _hexes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def reference_mth(leaves: list[bytes]) -> bytes:
    """MTH straight from the recursive definition of RFC 9162 §2.1.1."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hash_children(reference_mth(leaves[:k]), reference_mth(leaves[k:]))


def test_leaf_hashes_match_vectors() -> None:
    assert [h.hex() for h in LEAF_HASHES] == VECTORS["leaf_hashes"]


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_roots_match_vectors(size: int) -> None:
    assert root_from_leaf_hashes(LEAF_HASHES[:size]) == ROOTS[size]
    crange = CompactRange()
    for leaf in LEAF_HASHES[:size]:
        crange.append(leaf)
    assert crange.root() == ROOTS[size]
    again = CompactRange.from_bytes(size, crange.to_bytes())
    assert again.root() == ROOTS[size]


@pytest.mark.parametrize(
    "case", VECTORS["inclusion"], ids=lambda c: f"{c['leaf_index']}@{c['tree_size']}"
)
def test_inclusion_vectors(case: dict[str, object]) -> None:
    index, size = int(case["leaf_index"]), int(case["tree_size"])  # type: ignore[call-overload]
    expected = _hexes(case["proof"])  # type: ignore[arg-type]
    assert inclusion_proof(LEAF_HASHES[:size], index) == expected
    assert verify_inclusion(index, size, LEAF_HASHES[index], expected, ROOTS[size])
    assert not verify_inclusion(index, size, LEAF_HASHES[index], expected, ROOTS[size - 1])
    if expected:
        assert not verify_inclusion(index, size, LEAF_HASHES[index], expected[:-1], ROOTS[size])


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: f"{c['size1']}-{c['size2']}")
def test_consistency_vectors(case: dict[str, object]) -> None:
    first, second = int(case["size1"]), int(case["size2"])  # type: ignore[call-overload]
    expected = _hexes(case["proof"])  # type: ignore[arg-type]
    assert consistency_proof(LEAF_HASHES[:second], first) == expected
    assert verify_consistency(first, second, ROOTS[first], ROOTS[second], expected)
    if expected:
        assert not verify_consistency(first, second, ROOTS[second], ROOTS[first], expected)


def test_degenerate_consistency() -> None:
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert verify_consistency(3, 3, ROOTS[3], ROOTS[3], [])
    assert not verify_consistency(3, 3, ROOTS[3], ROOTS[4], [])
    assert not verify_consistency(3, 3, ROOTS[3], ROOTS[3], [ROOTS[3]])
    assert not verify_consistency(4, 3, ROOTS[4], ROOTS[3], [])
    assert not verify_consistency(1, 2, ROOTS[1], ROOTS[2], [])


def test_malformed_inputs_are_rejected() -> None:
    assert not verify_inclusion(0, 0, LEAF_HASHES[0], [], EMPTY_ROOT)
    assert not verify_inclusion(2, 2, LEAF_HASHES[0], [LEAF_HASHES[1]], ROOTS[2])
    assert not verify_inclusion(0, 2, LEAF_HASHES[0], [b"short"], ROOTS[2])
    with pytest.raises(ValueError, match="one node per set bit"):
        CompactRange(3, [ROOTS[1]])
    with pytest.raises(ValueError):
        inclusion_proof(LEAF_HASHES[:3], 3)
    with pytest.raises(ValueError):
        consistency_proof(LEAF_HASHES[:3], 0)


leaf_lists = st.lists(st.binary(max_size=8), min_size=1, max_size=70, unique=True).map(
    lambda xs: [hash_leaf(x) for x in xs]
)


def _flip(proof: list[bytes], data: st.DataObject) -> list[bytes]:
    """The proof with one bit of one element flipped."""
    i = data.draw(st.integers(0, len(proof) - 1))
    pos, bit = data.draw(st.integers(0, 31)), data.draw(st.integers(0, 7))
    element = bytearray(proof[i])
    element[pos] ^= 1 << bit
    return [*proof[:i], bytes(element), *proof[i + 1 :]]


@given(leaf_lists)
def test_compact_range_equals_recursive_definition(leaves: list[bytes]) -> None:
    crange = CompactRange()
    for n, leaf in enumerate(leaves, start=1):
        crange.append(leaf)
        assert len(crange.nodes) == n.bit_count()
    assert crange.root() == reference_mth(leaves) == root_from_leaf_hashes(leaves)


@given(leaf_lists, st.data())
def test_compact_range_resumes_from_its_bytes(leaves: list[bytes], data: st.DataObject) -> None:
    """What sealing does: the compact range stored at some size, extended by the leaves after."""
    k = data.draw(st.integers(0, len(leaves)))
    sealed = CompactRange()
    sealed.extend(leaves[:k])
    resumed = CompactRange.from_bytes(k, sealed.to_bytes())
    resumed.extend(leaves[k:])
    assert resumed.size == len(leaves)
    assert resumed.root() == reference_mth(leaves)


@given(leaf_lists, st.data())
def test_every_inclusion_proof_verifies_and_a_tampered_one_does_not(
    leaves: list[bytes], data: st.DataObject
) -> None:
    size = len(leaves)
    root = reference_mth(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(leaves, index)
    assert verify_inclusion(index, size, leaves[index], proof, root)
    assert not verify_inclusion(index, size, hash_leaf(b"forged"), proof, root)
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda j: j != index))
        assert not verify_inclusion(other, size, leaves[index], proof, root)
        assert not verify_inclusion(index, size, leaves[index], _flip(proof, data), root)
        assert not verify_inclusion(index, size, leaves[index], proof[:-1], root)
        assert not verify_inclusion(index, size, leaves[index], [*proof, root], root)


@given(leaf_lists, st.data())
def test_every_consistency_proof_verifies_and_a_tampered_one_does_not(
    leaves: list[bytes], data: st.DataObject
) -> None:
    second = len(leaves)
    first = data.draw(st.integers(1, second))
    proof = consistency_proof(leaves, first)
    root1, root2 = reference_mth(leaves[:first]), reference_mth(leaves)
    assert verify_consistency(first, second, root1, root2, proof)
    if proof:
        assert not verify_consistency(first, second, root1, root2, _flip(proof, data))
        assert not verify_consistency(first, second, root1, root2, proof[:-1])
        assert not verify_consistency(first, second, root1, hash_leaf(b"other"), proof)
        assert not verify_consistency(first, second, hash_leaf(b"other"), root2, proof)
