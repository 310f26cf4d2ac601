"""Signed tree heads (RFC 9162 §4.9/§4.10) and the append-only witness file."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secretum.audit.checkpoint import Checkpoint, WitnessFile, key_id, tree_head_data

KEY = Ed25519PrivateKey.generate()
ROOT = bytes(range(32))


def test_tree_head_data_is_the_tls_encoding() -> None:
    data = tree_head_data(1_700_000_000_123, 42, ROOT)
    assert data[:16] == struct.pack(">QQ", 1_700_000_000_123, 42)
    assert data[16] == 32 and data[17:49] == ROOT and data[49:] == b"\x00\x00"
    with pytest.raises(ValueError):
        tree_head_data(0, 1, b"short")


def test_sign_and_verify() -> None:
    cp = Checkpoint.sign(KEY, 42, ROOT, 1_700_000_000_123)
    assert cp.key_id == key_id(KEY.public_key())
    assert cp.verify([KEY.public_key()])
    other = Ed25519PrivateKey.generate().public_key()
    assert not cp.verify([other])  # unknown key id
    assert cp.verify([other, KEY.public_key()])  # rotation: the right key is picked
    for forged in (
        Checkpoint(43, cp.root_hash, cp.timestamp_ms, cp.key_id, cp.signature),
        Checkpoint(42, bytes(32), cp.timestamp_ms, cp.key_id, cp.signature),
        Checkpoint(42, cp.root_hash, cp.timestamp_ms + 1, cp.key_id, cp.signature),
        Checkpoint(42, cp.root_hash, cp.timestamp_ms, cp.key_id, bytes(64)),
    ):
        assert not forged.verify([KEY.public_key()])


def test_line_round_trip_and_malformed_lines() -> None:
    cp = Checkpoint.sign(KEY, 7, ROOT, 1)
    assert Checkpoint.from_line(cp.to_line()) == cp
    assert "\n" not in cp.to_line()
    for bad in ("", "{}", "not json", cp.to_line().replace('"v":1', '"v":2'), cp.to_line()[:-5]):
        with pytest.raises(ValueError, match="witness line"):
            Checkpoint.from_line(bad)


def test_witness_appends_only_newer_checkpoints(tmp_path: Path) -> None:
    witness = WitnessFile(tmp_path / "witness.log")
    assert witness.read().checkpoints == [] and witness.last_size() == 0
    cps = [Checkpoint.sign(KEY, n, ROOT, n) for n in (5, 10, 15)]
    assert witness.append(cps[:2]) == 10
    assert witness.append(cps) == 15  # 5 and 10 are not written twice
    assert witness.read().checkpoints == cps
    assert len((tmp_path / "witness.log").read_text().splitlines()) == 3


def test_witness_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "witness.log"
    witness = WitnessFile(path)
    witness.append([Checkpoint.sign(KEY, 5, ROOT, 5)])
    with path.open("a") as f:
        f.write('{"key_id":"ab')  # a crash in the middle of a write
    assert witness.last_size() == 5
    witness.append([Checkpoint.sign(KEY, 9, ROOT, 9)])
    read = witness.read()
    assert [c.tree_size for c in read.checkpoints] == [5, 9]
    assert read.malformed_lines == [2]


def test_concurrent_writers_neither_interleave_nor_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "witness.log"
    cps = [Checkpoint.sign(KEY, n, ROOT, n) for n in range(1, 41)]

    def writer() -> None:
        for i in range(0, 40, 4):
            WitnessFile(path).append(cps[: i + 4])

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    read = WitnessFile(path).read()
    assert read.malformed_lines == []
    assert [c.tree_size for c in read.checkpoints] == list(range(1, 41))
