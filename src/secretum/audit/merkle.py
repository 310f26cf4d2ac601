"""Merkle Tree Hash, compact ranges and proofs of RFC 9162 (Certificate Transparency v2).

Names follow RFC 9162 §2.1: ``MTH(D[n])`` is the Merkle Tree Hash of ``n`` entries, with

* leaf hash ``MTH({d(0)}) = SHA-256(0x00 || d(0))`` (§2.1.1),
* interior node ``SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`` where ``k`` is the largest power
  of two smaller than ``n`` (§2.1.1),
* the empty tree ``MTH({}) = SHA-256()``.

Inclusion proofs (``PATH``, §2.1.3.1, verified by §2.1.3.2) and consistency proofs (``PROOF`` /
``SUBPROOF``, §2.1.4.1, verified by §2.1.4.2) are produced from a list of leaf hashes.

:class:`CompactRange` is the "compact range" (also called frontier) of a tree of size ``n``: the
roots of the perfect subtrees that ``n``'s binary representation splits ``D[0:n]`` into, largest
first. Appending a leaf and computing ``MTH(D[n])`` are O(log n) without rereading any leaf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
#: MTH({}) of RFC 9162 §2.1.1: the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def hash_leaf(entry: bytes) -> bytes:
    """RFC 9162 §2.1.1: ``SHA-256(0x00 || entry)``."""
    return _sha256(LEAF_PREFIX + entry).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: ``SHA-256(0x01 || left || right)``."""
    return _sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``k`` of RFC 9162 §2.1.1), for ``n >= 2``."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """``MTH(D[n])`` (RFC 9162 §2.1.1) of already hashed leaves, computed bottom-up."""
    if not leaf_hashes:
        return EMPTY_ROOT
    crange = CompactRange()
    for leaf in leaf_hashes:
        crange.append(leaf)
    return crange.root()


class CompactRange:
    """The compact range of ``D[0:size]``: roots of its maximal perfect subtrees, left to right.

    ``nodes[i]`` is the root of a perfect subtree whose height is the ``i``-th set bit of
    ``size`` counted from the most significant one. Serialised as the concatenation of the nodes
    (``to_bytes``); the size is stored beside it.
    """

    __slots__ = ("nodes", "size")

    def __init__(self, size: int = 0, nodes: list[bytes] | None = None) -> None:
        nodes = [] if nodes is None else nodes
        if size < 0 or len(nodes) != size.bit_count():
            raise ValueError("a compact range holds one node per set bit of the tree size")
        if any(len(node) != HASH_SIZE for node in nodes):
            raise ValueError(f"compact range nodes are {HASH_SIZE}-byte hashes")
        self.size = size
        self.nodes = nodes

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> CompactRange:
        if len(data) % HASH_SIZE:
            raise ValueError("a serialised compact range is a multiple of 32 bytes")
        nodes = [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
        return cls(size, nodes)

    def to_bytes(self) -> bytes:
        return b"".join(self.nodes)

    def copy(self) -> CompactRange:
        clone = object.__new__(CompactRange)
        clone.size, clone.nodes = self.size, list(self.nodes)
        return clone

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf hash: merge equal-height subtrees as a binary counter carries."""
        node, size, nodes = leaf_hash, self.size, self.nodes
        while size & 1:
            node = _sha256(NODE_PREFIX + nodes.pop() + node).digest()
            size >>= 1
        nodes.append(node)
        self.size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """``append`` each of ``leaf_hashes`` (one loop: sealing folds up to a checkpoint's
        worth of leaves)."""
        nodes, size, sha256, prefix = self.nodes, self.size, _sha256, NODE_PREFIX
        for node in leaf_hashes:
            m = size
            while m & 1:
                node = sha256(prefix + nodes.pop() + node).digest()
                m >>= 1
            nodes.append(node)
            size += 1
        self.size = size

    def root(self) -> bytes:
        """``MTH(D[size])``: fold the subtree roots right to left (RFC 9162 §2.1.1)."""
        if not self.nodes:
            return EMPTY_ROOT
        node = self.nodes[-1]
        for left in reversed(self.nodes[:-1]):
            node = _sha256(NODE_PREFIX + left + node).digest()
        return node


def inclusion_proof(leaf_hashes: Sequence[bytes], leaf_index: int) -> list[bytes]:
    """``PATH(m, D[n])`` of RFC 9162 §2.1.3.1 for ``m = leaf_index``, ``n = len(leaf_hashes)``."""
    if not 0 <= leaf_index < len(leaf_hashes):
        raise ValueError("leaf index must be smaller than the tree size")
    path: list[bytes] = []
    start, end, m = 0, len(leaf_hashes), leaf_index
    while end - start > 1:  # the recursion, unrolled; its path is built leaf-side first
        k = _split(end - start)
        if m < k:
            path.append(root_from_leaf_hashes(leaf_hashes[start + k : end]))
            end = start + k
        else:
            path.append(root_from_leaf_hashes(leaf_hashes[start : start + k]))
            start, m = start + k, m - k
    path.reverse()
    return path


def consistency_proof(leaf_hashes: Sequence[bytes], first: int) -> list[bytes]:
    """``PROOF(m, D[n])`` of RFC 9162 §2.1.4.1 for ``m = first``, ``n = len(leaf_hashes)``."""
    n = len(leaf_hashes)
    if not 0 < first <= n:
        raise ValueError("consistency needs 0 < first <= second")
    proof: list[bytes] = []
    start, end, m, b = 0, n, first, True  # SUBPROOF(m, D[start:end], b)
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(root_from_leaf_hashes(leaf_hashes[start + k : end]))
            end = start + k
        else:
            proof.append(root_from_leaf_hashes(leaf_hashes[start : start + k]))
            start, m, b = start + k, m - k, False
    if not b:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        proof.append(root_from_leaf_hashes(leaf_hashes[start:end]))
    proof.reverse()
    return proof


def _valid_hashes(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def root_from_inclusion_proof(
    leaf_index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes | None:
    """Steps 1-4 of RFC 9162 §2.1.3.2: the root the proof leads to, or None if it is malformed."""
    if not 0 <= leaf_index < tree_size or not _valid_hashes(leaf_hash, *proof):
        return None
    fn, sn, r = leaf_index, tree_size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = _sha256(NODE_PREFIX + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = _sha256(NODE_PREFIX + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: True when ``proof`` proves leaf ``leaf_index`` is in the tree."""
    return root_from_inclusion_proof(leaf_index, tree_size, leaf_hash, proof) == root_hash


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: True when ``proof`` shows tree ``first`` is a prefix of ``second``.

    Degenerate sizes (outside the RFC's ``0 < first < second``): any tree is consistent with the
    empty tree, and a tree with itself, each with an empty proof.
    """
    if not 0 <= first <= second or not _valid_hashes(first_hash, second_hash, *proof):
        return False
    if first == 0 or first == second:
        return not proof and (first == 0 or first_hash == second_hash)
    if not proof:  # step 1
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # step 2: first is an exact power of 2
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1  # step 3
    while fn & 1:  # step 4
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _sha256(NODE_PREFIX + c + fr).digest()
            sr = _sha256(NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = _sha256(NODE_PREFIX + sr + c).digest()
        fn, sn = fn >> 1, sn >> 1
    return fr == first_hash and sr == second_hash and sn == 0  # step 7
