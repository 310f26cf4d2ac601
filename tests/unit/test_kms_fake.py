"""FakeKMS against the KMS contract, plus the factory in :mod:`secretum.crypto.kms`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import secretum.crypto.kms as kms_pkg
from kms_contract import CTX, KEY, KmsContract
from secretum.crypto.errors import IntegrityError
from secretum.crypto.kms import (
    FakeKMS,
    KeyManagementService,
    KmsBackendUnavailableError,
    LocalKeystoreKMS,
    WrappedKey,
    create_kms,
    open_kms,
)

FAST_KDF = {"name": "scrypt", "n": 2**10, "r": 8, "p": 1}


class TestFakeContract(KmsContract):
    @pytest.fixture
    def kms(self) -> Iterator[FakeKMS]:
        kms = FakeKMS()
        yield kms
        kms.close()


def test_seeded_fake_is_deterministic() -> None:
    first, second = FakeKMS(seed=7), FakeKMS(seed=7)
    assert first.wrap(KEY, CTX) == second.wrap(KEY, CTX)
    assert first.wrap(KEY, CTX) != FakeKMS(seed=8).wrap(KEY, CTX)
    assert second.unwrap(first.wrap(KEY, CTX), CTX) == KEY


def test_fake_takes_an_rng_and_a_clock() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    draws: list[int] = []

    def rng(n: int) -> bytes:
        draws.append(n)
        return bytes(n)

    fake = FakeKMS(rng, now=lambda: when)
    fake.wrap(KEY, CTX)
    assert draws == [32, 12]
    assert fake.created_at(1) == when
    with pytest.raises(ValueError):
        FakeKMS(rng, seed=1)


def test_fake_cannot_be_pickled() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(FakeKMS())


# --- the factory --------------------------------------------------------------------


def test_factory_creates_and_opens_local(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    created = create_kms("local", path=path, passphrase="pw", kdf=FAST_KDF)
    assert isinstance(created, LocalKeystoreKMS)
    wrapped = created.wrap(KEY, CTX)
    opened = open_kms("local", path=path, passphrase="pw")
    assert isinstance(opened, KeyManagementService)
    assert opened.unwrap(wrapped, CTX) == KEY


def test_factory_makes_fakes_only_fresh() -> None:
    assert isinstance(create_kms("fake", seed=1), FakeKMS)
    with pytest.raises(ValueError, match="memory"):
        open_kms("fake")


def test_factory_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="local, pkcs11, fake"):
        open_kms("vault")


def test_pkcs11_missing_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pkcs11", None)  # makes `import pkcs11` fail
    monkeypatch.delitem(sys.modules, "secretum.crypto.kms.pkcs11", raising=False)
    with pytest.raises(KmsBackendUnavailableError, match="pip install 'python-pkcs11"):
        open_kms("pkcs11", module_path="x.so", token_label="t", pin="1")
    with pytest.raises(KmsBackendUnavailableError):
        kms_pkg.Pkcs11KMS  # noqa: B018 - the lazy attribute


def test_importing_the_package_does_not_load_pkcs11() -> None:
    code = (
        "import sys, secretum.crypto.kms as k\n"
        "assert 'pkcs11' not in sys.modules, 'eager import'\n"
        "k.Pkcs11KMS\n"
        "assert 'pkcs11' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_version_is_bound_as_associated_data() -> None:
    # with an rng of zeros every KEK version holds the same key: only the AAD tells them apart
    fake = FakeKMS(lambda n: bytes(n))
    old = fake.wrap(KEY, CTX)
    fake.create_version()
    with pytest.raises(IntegrityError):
        fake.unwrap(WrappedKey(2, old.blob), CTX)
    assert fake.unwrap(old, CTX) == KEY
