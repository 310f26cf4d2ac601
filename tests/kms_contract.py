"""Contract tests that every :class:`KeyManagementService` adapter must pass.

Use: subclass :class:`KmsContract` in a test module and give it a ``kms`` fixture returning a
fresh adapter that holds KEK version 1 only (and closes it afterwards). pytest collects the
inherited tests once per subclass, so local, pkcs11 and fake all pass the same checks.
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from secretum.crypto.context import key_wrap_context
from secretum.crypto.errors import (
    CryptoError,
    IntegrityError,
    KeyNotFoundError,
    KeyRetiredError,
)
from secretum.crypto.kms.base import KeyManagementService, WrappedKey

CTX = key_wrap_context("dek", "patient-0001")
OTHER_CTX = key_wrap_context("dek", "patient-0002")
KEY = bytes(range(32))  # a recognisable 256-bit data key

# Hypothesis re-runs the body with the same (function-scoped) kms: fine, a wrap changes
# nothing. Every adapter's subclass runs the same method ("differing executors"): they share
# one example database entry, which is what we want, since all must pass the same examples.
_given_settings = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
)


class KmsContract:
    """The behaviour shared by every adapter; needs a ``kms`` fixture."""

    def test_satisfies_the_protocol(self, kms: KeyManagementService) -> None:
        assert isinstance(kms, KeyManagementService)
        assert isinstance(kms.name, str) and kms.name

    def test_starts_with_version_one(self, kms: KeyManagementService) -> None:
        assert kms.current_version() == 1
        assert kms.versions() == [1]
        assert kms.min_decrypt_version() == 1

    @_given_settings
    @given(key=st.binary(min_size=1, max_size=600), context=st.binary(max_size=200))
    def test_round_trip(self, kms: KeyManagementService, key: bytes, context: bytes) -> None:
        wrapped = kms.wrap(key, context)
        assert wrapped.kek_version == 1
        assert kms.unwrap(wrapped, context) == key
        if len(key) >= 8:
            assert key not in wrapped.blob

    @_given_settings
    @given(key=st.binary(min_size=1, max_size=64), ctx=st.binary(), other=st.binary())
    def test_wrong_context_fails(
        self, kms: KeyManagementService, key: bytes, ctx: bytes, other: bytes
    ) -> None:
        assume(ctx != other)
        with pytest.raises(IntegrityError):
            kms.unwrap(kms.wrap(key, ctx), other)

    def test_blob_layout(self, kms: KeyManagementService) -> None:
        blob = kms.wrap(KEY, CTX).blob
        assert blob[0] == 0x01  # format byte
        assert len(blob) == 1 + 12 + len(KEY) + 16  # nonce, ciphertext, tag

    def test_each_wrap_uses_a_fresh_nonce(self, kms: KeyManagementService) -> None:
        blobs = [kms.wrap(KEY, CTX).blob for _ in range(20)]
        assert len({b[1:13] for b in blobs}) == 20
        assert len(set(blobs)) == 20

    def test_every_flipped_byte_fails(self, kms: KeyManagementService) -> None:
        wrapped = kms.wrap(KEY, CTX)
        for i in range(len(wrapped.blob)):
            for mask in (0x01, 0x80):
                blob = bytearray(wrapped.blob)
                blob[i] ^= mask
                with pytest.raises(IntegrityError):
                    kms.unwrap(WrappedKey(wrapped.kek_version, bytes(blob)), CTX)
        assert kms.unwrap(wrapped, CTX) == KEY

    def test_truncated_or_extended_blobs_fail(self, kms: KeyManagementService) -> None:
        blob = kms.wrap(KEY, CTX).blob
        for bad in (b"", blob[:1], blob[:13], blob[:29], blob[:-1], blob + b"\x00"):
            with pytest.raises(IntegrityError):
                kms.unwrap(WrappedKey(1, bad), CTX)

    def test_relabelled_version_fails(self, kms: KeyManagementService) -> None:
        old = kms.wrap(KEY, CTX)
        assert kms.create_version() == 2
        new = kms.wrap(KEY, CTX)
        with pytest.raises(IntegrityError):
            kms.unwrap(WrappedKey(2, old.blob), CTX)
        with pytest.raises(IntegrityError):
            kms.unwrap(WrappedKey(1, new.blob), CTX)

    @pytest.mark.parametrize("version", [0, -1, 2, 99])
    def test_unknown_version_is_not_found(self, kms: KeyManagementService, version: int) -> None:
        blob = kms.wrap(KEY, CTX).blob
        with pytest.raises(KeyNotFoundError) as caught:
            kms.unwrap(WrappedKey(version, blob), CTX)
        assert not isinstance(caught.value, KeyRetiredError)

    def test_create_version_rotates(self, kms: KeyManagementService) -> None:
        old = kms.wrap(KEY, CTX)
        assert kms.create_version() == 2
        assert kms.current_version() == 2
        assert kms.versions() == [1, 2]
        new = kms.wrap(KEY, CTX)
        assert new.kek_version == 2
        assert kms.unwrap(old, CTX) == KEY
        assert kms.unwrap(new, CTX) == KEY
        assert kms.create_version() == 3
        assert kms.unwrap(new, CTX) == KEY

    def test_retire_below(self, kms: KeyManagementService) -> None:
        old = kms.wrap(KEY, CTX)
        kms.create_version()
        new = kms.wrap(KEY, CTX)
        kms.retire_below(2)
        assert kms.min_decrypt_version() == 2
        assert kms.versions() == [2]
        with pytest.raises(KeyRetiredError):
            kms.unwrap(old, CTX)
        assert kms.unwrap(new, CTX) == KEY
        assert kms.wrap(KEY, CTX).kek_version == 2

    def test_retire_is_idempotent_and_never_goes_back(self, kms: KeyManagementService) -> None:
        kms.create_version()
        kms.retire_below(2)
        kms.retire_below(2)
        with pytest.raises(KeyRetiredError):
            kms.retire_below(1)
        assert kms.min_decrypt_version() == 2
        assert kms.versions() == [2]

    @pytest.mark.parametrize("beyond", [1, 5])
    def test_retiring_the_current_version_is_refused(
        self, kms: KeyManagementService, beyond: int
    ) -> None:
        kms.create_version()
        wrapped = kms.wrap(KEY, CTX)
        with pytest.raises(ValueError, match="current"):
            kms.retire_below(kms.current_version() + beyond)
        assert kms.versions() == [1, 2]
        assert kms.min_decrypt_version() == 1
        assert kms.unwrap(wrapped, CTX) == KEY

    def test_retire_rejects_nonsense(self, kms: KeyManagementService) -> None:
        with pytest.raises(ValueError):
            kms.retire_below(0)
        assert kms.versions() == [1]

    def test_versions_are_never_reused(self, kms: KeyManagementService) -> None:
        kms.create_version()
        kms.retire_below(2)
        assert kms.create_version() == 3
        assert kms.versions() == [2, 3]

    def test_bad_arguments_are_refused(self, kms: KeyManagementService) -> None:
        with pytest.raises(ValueError):
            kms.wrap(b"", CTX)
        with pytest.raises(TypeError):
            kms.wrap("text", CTX)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            kms.wrap(KEY, "context")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            kms.unwrap(kms.wrap(KEY, CTX), "context")  # type: ignore[arg-type]

    def test_no_secret_in_repr_or_errors(self, kms: KeyManagementService) -> None:
        wrapped = kms.wrap(KEY, CTX)
        shown = repr(kms) + str(kms) + repr(wrapped) + str(wrapped)
        with pytest.raises(IntegrityError) as caught:
            kms.unwrap(wrapped, OTHER_CTX)
        shown += str(caught.value) + repr(caught.value)
        for secret in (KEY, wrapped.blob, CTX):
            assert secret.hex() not in shown
            assert repr(secret)[2:-1] not in shown
        assert caught.value.__cause__ is None and caught.value.__suppress_context__

    def test_concurrent_use(self, kms: KeyManagementService) -> None:
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for i in range(25):
                    key = bytes([n, i]) * 16
                    context = CTX + bytes([n])
                    assert kms.unwrap(kms.wrap(key, context), context) == key
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        kms.create_version()
        kms.create_version()
        for thread in threads:
            thread.join()
        assert errors == []
        assert kms.versions() == [1, 2, 3]

    def test_closed_kms_refuses_work(self, kms: KeyManagementService) -> None:
        wrapped = kms.wrap(KEY, CTX)
        kms.close()
        with pytest.raises(CryptoError):
            kms.unwrap(wrapped, CTX)
        with pytest.raises(CryptoError):
            kms.wrap(KEY, CTX)
        kms.close()  # closing twice is harmless
