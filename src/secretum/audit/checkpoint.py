"""Signed checkpoints (tree heads) and the witness file that keeps a copy outside the database.

A checkpoint is the RFC 9162 §4.9 ``TreeHeadDataV2`` of the log, signed with Ed25519 as the
signed tree head of §4.10. The signed bytes are its TLS encoding (RFC 8446 §3)::

    uint64 timestamp;                      /* ms since the epoch, UTC */
    uint64 tree_size;
    opaque root_hash<32..2^8-1>;           /* one length byte, then MTH(D[tree_size]) */
    Extension sth_extensions<0..2^16-1>;   /* always empty: two zero bytes */

The private key is handed in by the caller (it comes from the keystore); this module never
loads keys. ``key_id`` is the hex SHA-256 of the raw 32-byte public key, so a verifier holding
several keys (rotation) knows which one to use.

The **witness file** receives one JSON line per signed tree head, appended and made durable
(``fdatasync``) before the action that committed the entries is answered (see
:mod:`secretum.audit.witnessing`): a head per flush of the witness flusher, covering every
transaction of audit entries committed before it, and every checkpoint signed in the database.
Several processes (instances of the server, CLI commands) may share the file on one machine:

* each head is one ``write`` of one whole line on a descriptor opened with ``O_APPEND``, under an
  exclusive ``flock`` (which also lets a writer mend a torn last line, left by a crash, before it
  appends: the next line never glues onto it);
* lines are **not** in tree-size order: two processes that commit one after the other may reach
  the file in the other order. Each line is still a true statement ("the log had this root at
  this size"), and verify checks the database against every one of them, in any order;
* the same size may appear twice (two processes, or a checkpoint and a head), with the same
  root: only two different roots at one size are a fork.

``fdatasync`` runs after the lock is released, so the processes' flushes overlap.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from secretum.audit.merkle import HASH_SIZE

_HEAD = struct.Struct(">QQB")
_TAIL_BYTES = 4096


class WitnessError(RuntimeError):
    """Audit entries committed, but their signed tree head did not reach the witness file: the
    action must not be reported as done (and must not be retried: it committed)."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """Hex SHA-256 of the raw public key."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def tree_head_data(timestamp_ms: int, tree_size: int, root_hash: bytes) -> bytes:
    """TLS encoding of ``TreeHeadDataV2`` (RFC 9162 §4.9) with no extensions."""
    if len(root_hash) != HASH_SIZE:
        raise ValueError("root hash must be 32 bytes")
    return _HEAD.pack(timestamp_ms, tree_size, len(root_hash)) + root_hash + b"\x00\x00"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: ``MTH(D[tree_size]) == root_hash`` at ``timestamp_ms``."""

    tree_size: int
    root_hash: bytes
    timestamp_ms: int
    key_id: str
    signature: bytes

    @classmethod
    def sign(
        cls, key: Ed25519PrivateKey, tree_size: int, root_hash: bytes, timestamp_ms: int
    ) -> Checkpoint:
        """Sign ``TreeHeadDataV2`` (RFC 9162 §4.10) with ``key``."""
        signature = key.sign(tree_head_data(timestamp_ms, tree_size, root_hash))
        return cls(tree_size, root_hash, timestamp_ms, key_id(key.public_key()), signature)

    def verify(self, public_keys: Sequence[Ed25519PublicKey]) -> bool:
        """True if one of ``public_keys`` (the one whose id matches) signed this tree head."""
        for public_key in public_keys:
            if key_id(public_key) != self.key_id:
                continue
            try:
                data = tree_head_data(self.timestamp_ms, self.tree_size, self.root_hash)
                public_key.verify(self.signature, data)
            except (InvalidSignature, ValueError):
                return False
            return True
        return False

    def to_line(self) -> str:
        """One witness line: compact JSON with sorted keys, no newline."""
        return json.dumps(
            {
                "key_id": self.key_id,
                "root_hash": self.root_hash.hex(),
                "signature": base64.b64encode(self.signature).decode("ascii"),
                "timestamp_ms": self.timestamp_ms,
                "tree_size": self.tree_size,
                "v": 1,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_line(cls, line: str) -> Checkpoint:
        """Parse a witness line; ValueError if it is not one."""
        try:
            obj = json.loads(line)
            fields = (obj["tree_size"], obj["timestamp_ms"], obj["key_id"], obj["v"])
            if obj["v"] != 1 or not all(isinstance(x, int) for x in fields[:2]):
                raise ValueError("unsupported checkpoint line")
            root = bytes.fromhex(obj["root_hash"])
            signature = base64.b64decode(obj["signature"], validate=True)
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed witness line: {exc.__class__.__name__}") from None
        if len(root) != HASH_SIZE or not isinstance(obj["key_id"], str):
            raise ValueError("malformed witness line: bad root hash or key id")
        return cls(obj["tree_size"], root, obj["timestamp_ms"], obj["key_id"], signature)


@dataclass(frozen=True, slots=True)
class WitnessRead:
    """The witness file as read: its checkpoints (in file order) and unreadable line numbers."""

    checkpoints: list[Checkpoint]
    malformed_lines: list[int]


class WitnessFile:
    """Append-only file of checkpoint lines, outside the database."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def read(self) -> WitnessRead:
        """All checkpoints of the file; a missing file is an empty witness."""
        checkpoints: list[Checkpoint] = []
        bad: list[int] = []
        try:
            text = self.path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return WitnessRead([], [])
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                checkpoints.append(Checkpoint.from_line(line))
            except ValueError:
                bad.append(number)
        return WitnessRead(checkpoints, bad)

    def last_size(self) -> int:
        """Tree size of the last readable line (0 when empty): reads only the file's tail."""
        try:
            with self.path.open("rb") as f:
                return _last_size(f.fileno())
        except FileNotFoundError:
            return 0

    def append_head(self, head: Checkpoint, *, sync: bool = True) -> None:
        """Append one signed tree head (see :meth:`append_heads`)."""
        self.append_heads([head], sync=sync)

    def append_heads(self, heads: Sequence[Checkpoint], *, sync: bool = True) -> None:
        """Append signed tree heads in one ``write``, whatever the sizes already there (module
        doc: heads may arrive out of order between processes); on disk when this returns,
        unless ``sync`` is False (then :meth:`sync` must follow before anyone is told)."""
        if not heads:
            return
        data = "".join(head.to_line() + "\n" for head in heads).encode("ascii")
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                end = os.fstat(fd).st_size
                if end and os.pread(fd, 1, end - 1) != b"\n":  # a torn line from a crash
                    data = b"\n" + data
                if os.write(fd, data) != len(data):  # O_APPEND: one write, at the end
                    raise OSError("short write to the witness file")
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            if sync:
                os.fdatasync(fd)  # after the unlock: the flushes of several processes overlap
        finally:
            os.close(fd)
            if created:
                _fsync_dir(self.path.parent)

    def append(self, checkpoints: Iterable[Checkpoint]) -> int:
        """Append the checkpoints larger than the last line, durably; return the new last size.

        Runs under an exclusive lock, so concurrent writers (threads or processes sharing the
        path) neither interleave nor duplicate lines.
        """
        created = not self.path.exists()
        if created:  # its folder too, owner-only (a fresh data directory has none)
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            last = _last_size(fd)
            lines = []
            for cp in sorted(checkpoints, key=lambda c: c.tree_size):
                if cp.tree_size > last:
                    lines.append(cp.to_line() + "\n")
                    last = cp.tree_size
            if lines:
                end = os.lseek(fd, 0, os.SEEK_END)
                if end and os.pread(fd, 1, end - 1) != b"\n":  # a torn line from a crash
                    lines.insert(0, "\n")
                os.write(fd, "".join(lines).encode("ascii"))
                os.fsync(fd)
            return last
        finally:
            os.close(fd)  # also releases the lock
            if created:
                _fsync_dir(self.path.parent)


def _last_size(fd: int) -> int:
    end = os.lseek(fd, 0, os.SEEK_END)
    start = max(0, end - _TAIL_BYTES)
    tail = os.pread(fd, end - start, start).decode("ascii", errors="replace")
    for line in reversed(tail.splitlines()[1 if start else 0 :]):
        try:
            return Checkpoint.from_line(line).tree_size
        except ValueError:
            continue
    return 0


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
