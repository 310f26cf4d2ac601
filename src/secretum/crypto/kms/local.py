"""KMS adapter backed by a keystore file encrypted under a passphrase.

The keystore is JSON. Its body (KEK versions, their creation times, ``min_decrypt_version``)
is sealed with AES-256-GCM under a random *file key*; the file key is sealed under a key
derived from the passphrase (Argon2id, or scrypt where cryptography lacks Argon2id). The KDF
name and parameters are stored in the file, so :meth:`LocalKeystoreKMS.change_passphrase` can
raise them later.

A passphrase change draws a **new file key** and re-seals the body under it. Re-sealing the
old file key would have left every old copy of the file a way in: its old passphrase gives the
old file key, which would open every later version of the keystore, KEKs created after the
change included. The price: a process that opened the keystore before the change can no
longer follow it (it holds the old file key and the old passphrase, exactly what an old copy
gives): its next call raises :class:`KeystorePassphraseError`, and it must be restarted with
the new passphrase. (An old copy still opens the KEKs it holds itself: see the README on
backups.) The strength of a new passphrase is the application's rule, checked where it is
chosen (``secretum init``, ``secretum keys passphrase``), not here.

Writes are atomic and durable (temp file in the same directory, fsync, ``os.replace``, fsync
of the directory), the file is mode 0600, and mutations take an exclusive ``flock`` on
``<path>.lock`` so that several processes can share one keystore. Every call first re-reads
the (small) file and reloads it if its bytes changed, which every rewrite does (fresh nonces):
a rotation done by the CLI is seen by a running server on its next call. (Comparing mtimes
would be cheaper but can miss a rewrite within one timestamp tick.)

The engine (versions, retirement, the wrap format) is :class:`~.fake.MemoryKeyring`.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import tempfile
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from secretum.crypto.context import encode_fields
from secretum.crypto.errors import CryptoError, FormatError, IntegrityError
from secretum.crypto.kms.fake import NONCE_LEN, Clock, Kek, MemoryKeyring, Rng, new_kek, utcnow

FILE_FORMAT: Final = "secretum-keystore"
FILE_FORMAT_VERSION: Final = 1
#: RFC 9106 second recommended option: ~130 ms here.
DEFAULT_ARGON2ID: Final[dict[str, Any]] = {
    "name": "argon2id",
    "iterations": 3,
    "lanes": 4,
    "memory_cost": 64 * 1024,
}
#: used where cryptography has no Argon2id (< 44): 64 MiB, ~170 ms here.
DEFAULT_SCRYPT: Final[dict[str, Any]] = {"name": "scrypt", "n": 2**16, "r": 8, "p": 1}


class KeystoreError(CryptoError):
    """The keystore file is missing, already exists, or cannot be read or written."""


class KeystorePassphraseError(KeystoreError):
    """The passphrase does not open the keystore."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object) -> bytes:
    if not isinstance(value, str):
        raise FormatError("keystore field is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise FormatError("keystore field is not base64 text") from None


def _field(doc: object, name: str, kind: type) -> Any:
    if not isinstance(doc, dict) or not isinstance(doc.get(name), kind):
        raise FormatError(f"keystore field {name!r} is missing or malformed")
    return doc[name]


def _passphrase_bytes(passphrase: bytes | str) -> bytes:
    raw = (
        unicodedata.normalize("NFC", passphrase).encode("utf-8")
        if isinstance(passphrase, str)
        else passphrase
    )
    if not isinstance(raw, bytes) or not raw:
        raise ValueError("the keystore passphrase must be a non-empty str or bytes")
    return raw


def default_kdf() -> dict[str, Any]:
    """Argon2id when this cryptography build has it, else scrypt."""
    try:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        Argon2id(salt=b"\0" * 16, length=32, iterations=1, lanes=1, memory_cost=8)
    except (ImportError, UnsupportedAlgorithm):
        return dict(DEFAULT_SCRYPT)
    return dict(DEFAULT_ARGON2ID)


def _derive(kdf: dict[str, Any], passphrase: bytes) -> bytes:
    """The key that seals the file key. Parameters come from the file: bound them (DoS)."""
    salt = _unb64(kdf.get("salt"))
    ints = {k: v for k, v in kdf.items() if isinstance(v, int) and not isinstance(v, bool)}
    if kdf.get("name") == "argon2id" and ints.keys() >= {"iterations", "lanes", "memory_cost"}:
        if not (ints["iterations"] <= 64 and ints["lanes"] <= 64 and ints["memory_cost"] <= 2**22):
            raise FormatError("keystore KDF parameters are out of bounds")
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        return Argon2id(
            salt=salt,
            length=32,
            iterations=ints["iterations"],
            lanes=ints["lanes"],
            memory_cost=ints["memory_cost"],
        ).derive(passphrase)
    if kdf.get("name") == "scrypt" and ints.keys() >= {"n", "r", "p"}:
        if not (ints["n"] <= 2**22 and ints["r"] <= 32 and ints["p"] <= 16):
            raise FormatError("keystore KDF parameters are out of bounds")
        return Scrypt(salt=salt, length=32, n=ints["n"], r=ints["r"], p=ints["p"]).derive(
            passphrase
        )
    raise FormatError("unknown keystore KDF")


def _kdf_aad(kdf: dict[str, Any]) -> bytes:
    canonical = json.dumps(kdf, sort_keys=True, separators=(",", ":"))
    return encode_fields("secretum/keystore/file-key", FILE_FORMAT_VERSION, canonical)


_BODY_AAD: Final = encode_fields("secretum/keystore/body", FILE_FORMAT_VERSION)


def _seal(key: bytes, plaintext: bytes, aad: bytes, rng: Rng) -> dict[str, str]:
    nonce = rng(NONCE_LEN)
    return {"nonce": _b64(nonce), "ciphertext": _b64(AESGCM(key).encrypt(nonce, plaintext, aad))}


def _open(key: bytes, sealed: object, aad: bytes) -> bytes:
    nonce, ciphertext = (
        _unb64(_field(sealed, "nonce", str)),
        _unb64(_field(sealed, "ciphertext", str)),
    )
    if len(nonce) != NONCE_LEN:
        raise FormatError("keystore nonce has the wrong length")
    return AESGCM(key).decrypt(nonce, ciphertext, aad)  # raises InvalidTag


def _parse_header(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FormatError("keystore file is not JSON") from None
    if (
        _field(doc, "format", str) != FILE_FORMAT
        or doc.get("format_version") != FILE_FORMAT_VERSION
    ):
        raise FormatError("not a Secretum keystore of a known version")
    _field(doc, "kdf", dict)
    return dict(doc)


def _decrypt_body(doc: dict[str, Any], file_key: bytes) -> tuple[dict[int, Kek], int]:
    """Open the body with ``file_key``: IntegrityError if it does not authenticate."""
    try:
        body = json.loads(_open(file_key, doc.get("body"), _BODY_AAD))
    except InvalidTag:
        raise IntegrityError("keystore body did not authenticate") from None
    except ValueError:  # authenticated but not JSON: written by something else
        raise FormatError("keystore body is malformed") from None
    keks: dict[int, Kek] = {}
    for item in _field(body, "keks", list):
        version = _field(item, "version", int)
        try:
            created = datetime.fromisoformat(_field(item, "created", str))
        except ValueError:
            raise FormatError("keystore KEK creation time is malformed") from None
        keks[version] = new_kek(version, created, _unb64(item.get("key")))
    min_decrypt = _field(body, "min_decrypt_version", int)
    if not keks or min(keks) < max(min_decrypt, 1):
        raise FormatError("keystore KEK versions are inconsistent")
    return keks, min_decrypt


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` (mode 0600) atomically and durably.

    ``exclusive`` fails with FileExistsError instead of replacing an existing file.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


class LocalKeystoreKMS(MemoryKeyring):
    """KEKs kept in a passphrase-protected keystore file. Use :meth:`create` or :meth:`open`."""

    name = "local"

    def __init__(self, path: Path, passphrase: bytes, *, rng: Rng, now: Clock) -> None:
        super().__init__(rng=rng, now=now)
        self._path = path
        self._passphrase = passphrase
        self._file_key = b""
        self._kdf: dict[str, Any] = {}
        self._sealed_file_key: object = None
        self._seen: bytes | None = None

    def __repr__(self) -> str:
        return f"LocalKeystoreKMS(path={str(self._path)!r}, versions={sorted(self._keks)})"

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        passphrase: bytes | str,
        *,
        rng: Rng = os.urandom,
        now: Clock = utcnow,
        kdf: Mapping[str, Any] | None = None,
    ) -> LocalKeystoreKMS:
        """Create a keystore holding KEK version 1; KeystoreError if ``path`` exists.

        ``kdf`` overrides the KDF parameters, e.g. ``{"name": "scrypt", "n": 2**14, "r": 8,
        "p": 1}``; the default is :func:`default_kdf`. A missing directory is made mode 0700.
        """
        target = Path(path)
        if not target.parent.exists():
            target.parent.mkdir(parents=True)
            target.parent.chmod(0o700)
        self = cls(target, _passphrase_bytes(passphrase), rng=rng, now=now)
        with self._lock, _file_lock(target):
            if target.exists():
                raise KeystoreError("a keystore already exists at that path")
            self._file_key = rng(32)
            self._set_passphrase(self._passphrase, kdf or default_kdf())
            try:
                self._commit({1: self._generate(1)}, 1, exclusive=True)
            except FileExistsError:
                raise KeystoreError("a keystore already exists at that path") from None
        return self

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        passphrase: bytes | str,
        *,
        rng: Rng = os.urandom,
        now: Clock = utcnow,
    ) -> LocalKeystoreKMS:
        """Open an existing keystore; KeystorePassphraseError if the passphrase is wrong."""
        self = cls(Path(path), _passphrase_bytes(passphrase), rng=rng, now=now)
        with self._lock:
            self._refresh()
        return self

    @property
    def path(self) -> Path:
        """Where the keystore file is."""
        return self._path

    def kdf_parameters(self) -> dict[str, Any]:
        """The KDF name and cost parameters stored in the file (without the salt)."""
        with self._lock:
            self._refresh()
            return {k: v for k, v in self._kdf.items() if k != "salt"}

    def change_passphrase(
        self, passphrase: bytes | str, *, kdf: Mapping[str, Any] | None = None
    ) -> None:
        """Seal the keystore under a new passphrase (and new KDF parameters, if given).

        A new random file key is drawn: the body (every KEK) is re-sealed under it and it is
        sealed under the new passphrase, so an old copy of the file and the old passphrase
        open nothing written from now on. Other processes that opened the keystore before
        cannot follow (see the module docstring): restart them with the new passphrase.
        """
        new = _passphrase_bytes(passphrase)
        with self._lock, self._mutating():
            saved = (self._passphrase, self._kdf, self._sealed_file_key, self._file_key)
            try:
                params = kdf or {k: v for k, v in self._kdf.items() if k != "salt"}
                self._file_key = self._rng(32)
                self._set_passphrase(new, params)
                self._commit(self._keks, self._min)
            except BaseException:
                self._passphrase, self._kdf, self._sealed_file_key, self._file_key = saved
                raise

    def _set_passphrase(self, passphrase: bytes, kdf: Mapping[str, Any]) -> None:
        self._kdf = {**kdf, "salt": _b64(self._rng(16))}
        wrapping_key = _derive(self._kdf, passphrase)
        self._sealed_file_key = _seal(wrapping_key, self._file_key, _kdf_aad(self._kdf), self._rng)
        self._passphrase = passphrase

    def _read(self) -> bytes:
        try:
            return self._path.read_bytes()
        except FileNotFoundError:
            raise KeystoreError("the keystore file is gone") from None

    def _refresh(self) -> None:
        """Reload the keystore if its bytes changed since we last read or wrote them."""
        raw = self._read()
        if raw == self._seen:
            return
        doc = _parse_header(raw)
        try:  # the file key survives every rewrite but a passphrase change: try ours first
            if not self._file_key:
                raise IntegrityError("no file key yet")
            keks, min_decrypt = _decrypt_body(doc, self._file_key)
        except IntegrityError:
            try:
                wrapping_key = _derive(doc["kdf"], self._passphrase)
                file_key = _open(wrapping_key, doc.get("file_key"), _kdf_aad(doc["kdf"]))
            except InvalidTag:
                if self._file_key:  # we opened it before: someone changed the passphrase
                    raise KeystorePassphraseError(
                        "the keystore passphrase was changed since this process opened it: "
                        "restart it with the new passphrase"
                    ) from None
                raise KeystorePassphraseError(
                    "cannot open the keystore: wrong passphrase, or its header was altered"
                ) from None
            keks, min_decrypt = _decrypt_body(doc, file_key)
            self._file_key = file_key
        self._kdf, self._sealed_file_key = doc["kdf"], doc.get("file_key")
        self._keks, self._min, self._seen = keks, min_decrypt, raw

    @contextmanager
    def _mutating(self) -> Iterator[None]:
        self._check_open()
        with _file_lock(self._path):
            self._refresh()
            yield

    def close(self) -> None:
        """Forget the key material and the passphrase."""
        with self._lock:
            super().close()
            self._file_key, self._passphrase, self._sealed_file_key = b"", b"", None

    def _commit(self, keks: dict[int, Kek], min_decrypt: int, *, exclusive: bool = False) -> None:
        body = {
            "min_decrypt_version": min_decrypt,
            "keks": [
                {"version": k.version, "created": k.created.isoformat(), "key": _b64(k.key)}
                for k in sorted(keks.values(), key=lambda k: k.version)
            ],
        }
        doc = {
            "format": FILE_FORMAT,
            "format_version": FILE_FORMAT_VERSION,
            "kdf": self._kdf,
            "file_key": self._sealed_file_key,
            "body": _seal(self._file_key, json.dumps(body).encode(), _BODY_AAD, self._rng),
        }
        raw = json.dumps(doc, indent=1).encode() + b"\n"
        atomic_write(self._path, raw, exclusive=exclusive)
        self._keks, self._min, self._seen = keks, min_decrypt, raw
