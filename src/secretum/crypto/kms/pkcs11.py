"""KMS adapter for an HSM, through PKCS#11 (python-pkcs11).

Each KEK version is an AES-256 secret key generated inside the token: a token object
labelled ``secretum-kek-v{N}``, private, sensitive, never extractable, usable only to encrypt
and decrypt. Wrapping is ``CKM_AES_GCM`` inside the token (random 12-byte IV, 128-bit tag,
associated data binding the context and the KEK version) and yields the same blob format as
the other adapters (see :mod:`.fake`). ``min_decrypt_version`` lives on the token too, in a
private data object ``secretum-kms-state``, so it travels with the HSM; ``retire_below``
destroys the key objects.

PKCS#11 login state is per process and token, so all instances opened on one token in a
process share one logged-in session (reference counted) and one lock: python-pkcs11
sessions are not safe for concurrent use. Other processes (the CLI) may rotate or retire
meanwhile: an unwrap with an unknown version rescans the token at once, and other calls
rescan every ``refresh_seconds``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e

from secretum.crypto.errors import CryptoError, FormatError, IntegrityError, KeyNotFoundError
from secretum.crypto.kms.base import WrappedKey
from secretum.crypto.kms.fake import (
    NONCE_LEN,
    TAG_LEN,
    Rng,
    check_retire,
    check_unwrap_version,
    check_wrap_args,
    open_blob,
    seal_blob,
    wrap_aad,
)

if not hasattr(pkcs11, "GCMParams"):  # AES-GCM parameters: python-pkcs11 0.10.1 has them
    raise ImportError("this python-pkcs11 has no AES-GCM support (pkcs11.GCMParams)", name="pkcs11")

KEK_LABEL_PREFIX: Final = "secretum-kek-v"
STATE_LABEL: Final = "secretum-kms-state"
_KEK_LABEL = re.compile(r"secretum-kek-v([1-9][0-9]{0,8})")
#: the KEK template, on top of python-pkcs11's ENCRYPT|DECRYPT-only capabilities
KEK_TEMPLATE: Final[dict[Attribute, Any]] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
}
# What tokens answer to a GCM tag that does not verify (SoftHSM2: CKR_GENERAL_ERROR).
_AUTH_FAILURES = (
    p11e.GeneralError,
    p11e.EncryptedDataInvalid,
    p11e.EncryptedDataLenRange,
    p11e.FunctionFailed,
)
_STALE_HANDLE = (p11e.ObjectHandleInvalid, p11e.KeyHandleInvalid)


class HsmError(CryptoError):
    """The token cannot be used: not found, refused the PIN, or holds inconsistent objects."""


class HsmPinError(HsmError):
    """The token refused the PIN (or it differs from the one this process logged in with)."""


@dataclass(eq=False)
class _SharedSession:
    session: Any
    pin_check: bytes = field(repr=False)
    salt: bytes = field(repr=False)
    refs: int = 1
    lock: threading.RLock = field(default_factory=threading.RLock)


_SESSIONS: dict[tuple[str, str, bytes], _SharedSession] = {}
_SESSIONS_LOCK = threading.Lock()


def _pin_check(salt: bytes, pin: str) -> bytes:
    return hmac.new(salt, pin.encode("utf-8"), hashlib.sha256).digest()


def _acquire(
    module: str | os.PathLike[str], token_label: str, pin: str
) -> tuple[tuple[str, str, bytes], _SharedSession]:
    """The process-wide logged-in session on that token, opening it if needed."""
    module_path = os.fspath(module)
    with _SESSIONS_LOCK:
        try:
            token = pkcs11.lib(module_path).get_token(token_label=token_label)
        except (p11e.NoSuchToken, p11e.MultipleTokensReturned):
            raise HsmError(f"no single token labelled {token_label!r}") from None
        key = (module_path, token_label, bytes(token.serial))
        shared = _SESSIONS.get(key)
        if shared is not None:
            if not hmac.compare_digest(_pin_check(shared.salt, pin), shared.pin_check):
                raise HsmPinError("the PIN differs from the one this process logged in with")
            shared.refs += 1
            return key, shared
        try:
            session = token.open(rw=True, user_pin=pin)
        except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange, p11e.PinLocked):
            raise HsmPinError("the token refused the PIN") from None
        except p11e.UserAlreadyLoggedIn:
            raise HsmError("another part of this process is logged in to the token") from None
        salt = os.urandom(16)
        _SESSIONS[key] = shared = _SharedSession(session, _pin_check(salt, pin), salt)
        return key, shared


def _release(key: tuple[str, str, bytes], shared: _SharedSession) -> None:
    with _SESSIONS_LOCK:
        shared.refs -= 1
        if shared.refs == 0:
            _SESSIONS.pop(key, None)
            with shared.lock:
                shared.session.close()  # logs out, then closes


class Pkcs11KMS:
    """KEKs that live in a PKCS#11 token. Use :meth:`create` or :meth:`open`."""

    name = "pkcs11"

    def __init__(
        self,
        key: tuple[str, str, bytes],
        shared: _SharedSession,
        *,
        rng: Rng,
        clock: Callable[[], float],
        refresh_seconds: float,
    ) -> None:
        self._key, self._shared, self._lock = key, shared, shared.lock
        self._rng, self._clock, self._refresh_seconds = rng, clock, refresh_seconds
        self._keys: dict[int, Any] = {}
        self._min = 1
        self._loaded_at = float("-inf")
        self._closed = False

    def __repr__(self) -> str:
        return f"Pkcs11KMS(token={self._key[1]!r}, versions={sorted(self._keys)}, min={self._min})"

    def __reduce__(self) -> Any:
        raise TypeError("Pkcs11KMS cannot be pickled")

    @classmethod
    def open(
        cls,
        module_path: str | os.PathLike[str],
        token_label: str,
        pin: str,
        *,
        rng: Rng = os.urandom,
        clock: Callable[[], float] = time.monotonic,
        refresh_seconds: float = 5.0,
    ) -> Pkcs11KMS:
        """Log in to the token; KeyNotFoundError if it holds no Secretum KEK yet."""
        self = cls(
            *_acquire(module_path, token_label, pin),
            rng=rng,
            clock=clock,
            refresh_seconds=refresh_seconds,
        )
        try:
            with self._lock:
                self._scan()
                if not self._keys:
                    raise KeyNotFoundError("the token holds no Secretum KEK: create one first")
        except BaseException:
            self.close()
            raise
        return self

    @classmethod
    def create(
        cls,
        module_path: str | os.PathLike[str],
        token_label: str,
        pin: str,
        *,
        rng: Rng = os.urandom,
        clock: Callable[[], float] = time.monotonic,
        refresh_seconds: float = 5.0,
    ) -> Pkcs11KMS:
        """Generate KEK version 1 in the token; HsmError if it already holds Secretum KEKs."""
        self = cls(
            *_acquire(module_path, token_label, pin),
            rng=rng,
            clock=clock,
            refresh_seconds=refresh_seconds,
        )
        try:
            with self._lock:
                if self._find_keks() or self._find_states():
                    raise HsmError("the token already holds Secretum KEKs")
                self._generate(1)
                self._scan()
        except BaseException:
            self.close()
            raise
        return self

    # -- token access (call with the lock held) ---------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise CryptoError("this pkcs11 KMS was closed")

    @property
    def _session(self) -> Any:
        self._check_open()
        return self._shared.session

    def _find_keks(self) -> dict[int, Any]:
        found: dict[int, Any] = {}
        query = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES}
        for obj in self._session.get_objects(query):
            match = _KEK_LABEL.fullmatch(obj[Attribute.LABEL])
            if match:
                if int(match[1]) in found:
                    raise HsmError(f"two token objects are labelled {match[0]}")
                found[int(match[1])] = obj
        return found

    def _find_states(self) -> list[Any]:
        query = {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: STATE_LABEL}
        return list(self._session.get_objects(query))

    def _scan(self) -> None:
        """Re-read the KEKs and min_decrypt_version from the token."""
        states = []
        for obj in self._find_states():
            try:
                states.append(int(json.loads(obj[Attribute.VALUE])["min_decrypt_version"]))
            except (ValueError, KeyError, TypeError):
                raise FormatError("the token's Secretum state object is malformed") from None
        self._min = max(states, default=1)  # several only after a crash mid-update: min grows
        self._keys = {v: k for v, k in self._find_keks().items() if v >= self._min}
        self._loaded_at = self._clock()

    def _sync(self, *, force: bool = False) -> None:
        if force or self._clock() - self._loaded_at >= self._refresh_seconds:
            self._scan()
        else:
            self._check_open()

    def _generate(self, version: int) -> None:
        label = f"{KEK_LABEL_PREFIX}{version}"
        key = self._session.generate_key(
            KeyType.AES,
            256,
            label=label,
            store=True,
            capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
            template=KEK_TEMPLATE,
        )
        query = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
        if len(list(self._session.get_objects(query))) > 1:
            key.destroy()
            raise HsmError(f"another process created KEK version {version} meanwhile: retry")

    def _write_state(self, min_decrypt: int) -> None:
        """Create the new state object first, then drop the old ones (crash safe)."""
        old = self._find_states()
        self._session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.LABEL: STATE_LABEL,
                Attribute.APPLICATION: "secretum",
                Attribute.VALUE: json.dumps({"min_decrypt_version": min_decrypt}).encode(),
            }
        )
        for obj in old:
            obj.destroy()

    def _current(self) -> int:
        if not self._keys:
            raise KeyNotFoundError("the token holds no Secretum KEK")
        return max(self._keys)

    def _gcm(self, version: int, op: str, data: bytes, iv: bytes, aad: bytes) -> bytes:
        """One GCM operation inside the token with KEK ``version``."""
        check_unwrap_version(version, self._keys, self._min)
        param = pkcs11.GCMParams(iv, aad, TAG_LEN * 8)
        method = getattr(self._keys[version], op)
        return bytes(method(data, mechanism=Mechanism.AES_GCM, mechanism_param=param))

    # -- the KeyManagementService protocol -----------------------------------------------

    def current_version(self) -> int:
        """The version new wraps use."""
        with self._lock:
            self._sync()
            return self._current()

    def versions(self) -> list[int]:
        """KEK versions held in the token, ascending."""
        with self._lock:
            self._sync()
            return sorted(self._keys)

    def min_decrypt_version(self) -> int:
        """Versions below this were retired (stored on the token)."""
        with self._lock:
            self._sync()
            return self._min

    def create_version(self) -> int:
        """Generate a new KEK inside the token, make it current and return its version."""
        with self._lock:
            self._sync(force=True)
            new = max(self._current(), self._min - 1) + 1
            self._generate(new)
            self._scan()
            return new

    def retire_below(self, version: int) -> None:
        """Destroy the token's KEK objects below ``version`` (never the current one)."""
        with self._lock:
            self._sync(force=True)
            check_retire(version, self._keys, self._min)
            if version > self._min:
                self._write_state(version)  # first: a crash now leaves them unusable anyway
            for held, key in self._find_keks().items():
                if held < version:
                    key.destroy()
            self._scan()

    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        """Encrypt ``key`` inside the token under the current KEK."""
        check_wrap_args(key, context)
        with self._lock:
            self._sync()
            iv = self._rng(NONCE_LEN)
            if len(iv) != NONCE_LEN:
                raise CryptoError("random source returned a short read")
            try:
                version = self._current()
                sealed = self._gcm(version, "encrypt", key, iv, wrap_aad(version, context))
            except _STALE_HANDLE:  # retired by another process: rescan, use the new current
                self._sync(force=True)
                version = self._current()
                sealed = self._gcm(version, "encrypt", key, iv, wrap_aad(version, context))
        return WrappedKey(version, seal_blob(iv, sealed))

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        """Decrypt inside the token; IntegrityError unless blob, version and context match."""
        if not isinstance(context, bytes):
            raise TypeError("context must be bytes")
        version = wrapped.kek_version
        with self._lock:
            self._sync()
            if version not in self._keys and isinstance(version, int) and version >= self._min:
                self._sync(force=True)  # created by another process since the last scan?
            check_unwrap_version(version, self._keys, self._min)
            iv, sealed = open_blob(wrapped.blob)
            aad = wrap_aad(version, context)
            try:
                try:
                    return self._gcm(version, "decrypt", sealed, iv, aad)
                except _STALE_HANDLE:  # destroyed by another process: rescan (then Retired)
                    self._sync(force=True)
                    return self._gcm(version, "decrypt", sealed, iv, aad)
            except _AUTH_FAILURES:
                raise IntegrityError("wrapped key did not authenticate") from None

    def close(self) -> None:
        """Release this instance's share of the token session (logs out with the last one)."""
        with self._lock:
            if self._closed:
                return
            self._closed, self._keys = True, {}
        _release(self._key, self._shared)
