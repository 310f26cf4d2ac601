"""LocalKeystoreKMS: the KMS contract, plus the keystore file's own guarantees."""

from __future__ import annotations

import base64
import json
import os
import pickle
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kms_contract import CTX, KEY, KmsContract
from secretum.crypto.context import encode_fields
from secretum.crypto.errors import CryptoError, FormatError, IntegrityError, KeyRetiredError
from secretum.crypto.kms import local
from secretum.crypto.kms.local import KeystoreError, KeystorePassphraseError, LocalKeystoreKMS

#: cheap KDFs for tests: the cost is read back from the file, so open() stays cheap too
FAST_SCRYPT = {"name": "scrypt", "n": 2**10, "r": 8, "p": 1}
FAST_ARGON2 = {"name": "argon2id", "iterations": 1, "lanes": 1, "memory_cost": 1024}
PASS = "correct horse battery staple"


class RecordingRng:
    """os.urandom that remembers what it handed out (to look for key bytes in the file)."""

    def __init__(self) -> None:
        self.draws: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        self.draws.append(os.urandom(n))
        return self.draws[-1]

    def key_draws(self) -> list[bytes]:
        return [d for d in self.draws if len(d) == 32]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / "keystore.json"


@pytest.fixture
def make(path: Path) -> Iterator[Callable[..., LocalKeystoreKMS]]:
    opened: list[LocalKeystoreKMS] = []

    def make(**kwargs: object) -> LocalKeystoreKMS:
        kwargs.setdefault("kdf", FAST_SCRYPT)
        kms = LocalKeystoreKMS.create(path, PASS, **kwargs)  # type: ignore[arg-type]
        opened.append(kms)
        return kms

    yield make
    for kms in opened:
        kms.close()


class TestLocalContract(KmsContract):
    @pytest.fixture(params=[FAST_SCRYPT, FAST_ARGON2], ids=["scrypt", "argon2id"])
    def kms(self, path: Path, request: pytest.FixtureRequest) -> Iterator[LocalKeystoreKMS]:
        kms = LocalKeystoreKMS.create(path, PASS, kdf=request.param)
        yield kms
        kms.close()


def _doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_bytes())
    return doc


def _rewrite(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    doc = _doc(path)
    edit(doc)
    path.write_text(json.dumps(doc))


def _flip_b64(value: str, index: int = 0) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_create_then_open(make: Callable[..., LocalKeystoreKMS], path: Path) -> None:
    wrapped = make().wrap(KEY, CTX)
    reopened = LocalKeystoreKMS.open(path, PASS.encode())
    assert reopened.unwrap(wrapped, CTX) == KEY
    assert reopened.versions() == [1]


def test_str_passphrases_are_nfc_normalised(path: Path) -> None:
    LocalKeystoreKMS.create(path, "caf\u00e9", kdf=FAST_SCRYPT)
    assert LocalKeystoreKMS.open(path, "cafe\u0301").versions() == [1]


def test_wrong_passphrase_is_refused(make: Callable[..., LocalKeystoreKMS], path: Path) -> None:
    make()
    with pytest.raises(KeystorePassphraseError) as caught:
        LocalKeystoreKMS.open(path, "Correct horse battery staple")
    assert "orse" not in str(caught.value)
    assert caught.value.__suppress_context__


def test_empty_passphrase_is_refused(path: Path) -> None:
    with pytest.raises(ValueError):
        LocalKeystoreKMS.create(path, "")
    assert not path.exists()


def test_create_refuses_an_existing_keystore(
    make: Callable[..., LocalKeystoreKMS], path: Path
) -> None:
    make()
    before = path.read_bytes()
    with pytest.raises(KeystoreError):
        LocalKeystoreKMS.create(path, "other", kdf=FAST_SCRYPT)
    assert path.read_bytes() == before


def test_open_a_missing_keystore(path: Path) -> None:
    with pytest.raises(KeystoreError):
        LocalKeystoreKMS.open(path, PASS)


def test_file_holds_no_key_material_in_clear(
    make: Callable[..., LocalKeystoreKMS], path: Path
) -> None:
    rng = RecordingRng()
    kms = make(rng=rng)
    kms.create_version()
    raw = path.read_bytes()
    assert len(rng.key_draws()) == 3  # the file key and two KEKs
    for key in rng.key_draws():
        for shown in (key, key.hex().encode(), base64.b64encode(key), base64.b64encode(key)[:24]):
            assert shown not in raw
    assert b"min_decrypt_version" not in raw and b"keks" not in raw
    assert set(_doc(path)) == {"format", "format_version", "kdf", "file_key", "body"}


def test_file_and_directory_modes(make: Callable[..., LocalKeystoreKMS], path: Path) -> None:
    make().create_version()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["keystore.json", "keystore.json.lock"]


def test_tampered_body_is_detected(make: Callable[..., LocalKeystoreKMS], path: Path) -> None:
    running = make()
    _rewrite(path, lambda d: d["body"].update(ciphertext=_flip_b64(d["body"]["ciphertext"])))
    with pytest.raises(IntegrityError):
        LocalKeystoreKMS.open(path, PASS)
    with pytest.raises(IntegrityError):  # a running instance reloads and notices too
        running.wrap(KEY, CTX)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["kdf"].update(salt=_flip_b64(d["kdf"]["salt"])),
        lambda d: d["kdf"].update(n=2**11),
        lambda d: d["file_key"].update(ciphertext=_flip_b64(d["file_key"]["ciphertext"], 40)),
    ],
    ids=["salt", "kdf-cost", "file-key"],
)
def test_tampered_header_is_detected(
    make: Callable[..., LocalKeystoreKMS], path: Path, edit: Callable[[dict[str, Any]], None]
) -> None:
    make()
    _rewrite(path, edit)
    with pytest.raises(KeystorePassphraseError):
        LocalKeystoreKMS.open(path, PASS)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b'{"format": "other", "format_version": 1, "kdf": {}}',
        b'{"format": "secretum-keystore", "format_version": 9, "kdf": {}}',
    ],
)
def test_garbage_is_a_format_error(path: Path, content: bytes) -> None:
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(FormatError):
        LocalKeystoreKMS.open(path, PASS)


def test_absurd_kdf_cost_is_refused(make: Callable[..., LocalKeystoreKMS], path: Path) -> None:
    make()
    _rewrite(path, lambda d: d["kdf"].update(n=2**30))
    with pytest.raises(FormatError):
        LocalKeystoreKMS.open(path, PASS)


def test_kdf_parameters_are_stored(make: Callable[..., LocalKeystoreKMS], path: Path) -> None:
    kms = make(kdf={"name": "scrypt", "n": 2**11, "r": 8, "p": 1})
    assert kms.kdf_parameters() == {"name": "scrypt", "n": 2**11, "r": 8, "p": 1}
    assert _doc(path)["kdf"]["n"] == 2**11
    assert LocalKeystoreKMS.open(path, PASS).kdf_parameters()["n"] == 2**11


def test_default_kdf_is_strong() -> None:
    kdf = local.default_kdf()
    if kdf["name"] == "argon2id":
        assert kdf["memory_cost"] >= 64 * 1024 and kdf["iterations"] >= 3
    else:
        assert kdf["name"] == "scrypt" and kdf["n"] >= 2**16


def test_change_passphrase_and_raise_the_cost(
    make: Callable[..., LocalKeystoreKMS], path: Path
) -> None:
    kms = make()
    server = LocalKeystoreKMS.open(path, PASS)
    wrapped = kms.wrap(KEY, CTX)
    kms.change_passphrase("new passphrase", kdf=FAST_ARGON2)
    assert kms.kdf_parameters() == FAST_ARGON2
    with pytest.raises(KeystorePassphraseError):
        LocalKeystoreKMS.open(path, PASS)
    assert LocalKeystoreKMS.open(path, "new passphrase").unwrap(wrapped, CTX) == KEY
    kms.create_version()
    assert kms.current_version() == 2
    # A process opened before the change holds the old file key and passphrase, no more than
    # an old copy of the file gives: it cannot follow, and says to restart it.
    with pytest.raises(KeystorePassphraseError, match="restart"):
        server.current_version()
    restarted = LocalKeystoreKMS.open(path, "new passphrase")
    assert restarted.current_version() == 2 and restarted.unwrap(wrapped, CTX) == KEY


def test_change_passphrase_draws_a_new_file_key(
    make: Callable[..., LocalKeystoreKMS], path: Path
) -> None:
    rng = RecordingRng()
    kms = make(rng=rng)
    before = set(rng.key_draws())
    kms.change_passphrase("another long passphrase", kdf=FAST_SCRYPT)
    drawn = [d for d in rng.key_draws() if d not in before]
    assert drawn and kms._file_key in drawn  # a fresh 32-byte draw, not the old file key
    assert kms._file_key not in before


def test_second_instance_sees_changes(make: Callable[..., LocalKeystoreKMS], path: Path) -> None:
    cli = make()
    server = LocalKeystoreKMS.open(path, PASS)
    old = server.wrap(KEY, CTX)
    assert cli.create_version() == 2
    assert server.current_version() == 2
    assert server.unwrap(cli.wrap(KEY, CTX), CTX) == KEY
    cli.retire_below(2)
    with pytest.raises(KeyRetiredError):
        server.unwrap(old, CTX)
    assert server.versions() == [2]


def test_rotation_by_another_process_is_seen(
    make: Callable[..., LocalKeystoreKMS], path: Path
) -> None:
    server = make()
    code = (
        "import sys; from secretum.crypto.kms.local import LocalKeystoreKMS as K\n"
        "k = K.open(sys.argv[1], sys.argv[2]); print(k.create_version())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), PASS], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "2"
    assert server.current_version() == 2


def test_concurrent_writers_lose_no_update(
    make: Callable[..., LocalKeystoreKMS], path: Path
) -> None:
    instances = [make(), LocalKeystoreKMS.open(path, PASS), LocalKeystoreKMS.open(path, PASS)]
    created: list[int] = []

    def rotate(kms: LocalKeystoreKMS) -> None:
        for _ in range(5):
            created.append(kms.create_version())

    threads = [threading.Thread(target=rotate, args=(k,)) for k in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(created) == list(range(2, 17))
    assert LocalKeystoreKMS.open(path, PASS).versions() == list(range(1, 17))


def test_retire_removes_the_key_material(make: Callable[..., LocalKeystoreKMS], path: Path) -> None:
    rng = RecordingRng()
    kms = make(rng=rng)
    kms.create_version()
    kms.retire_below(2)
    body, aad = _doc(path)["body"], encode_fields("secretum/keystore/body", 1)
    plain = None
    for key in rng.key_draws():  # one of the draws is the file key: open the body with it
        try:
            plain = AESGCM(key).decrypt(
                base64.b64decode(body["nonce"]), base64.b64decode(body["ciphertext"]), aad
            )
        except Exception:
            continue
    assert plain is not None
    stored = [k["key"] for k in json.loads(plain)["keks"]]
    file_key, kek1, kek2 = rng.key_draws()
    assert stored == [base64.b64encode(kek2).decode()]
    assert base64.b64encode(kek1) not in plain and file_key != kek1


def test_failed_write_changes_nothing(
    make: Callable[..., LocalKeystoreKMS], path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kms = make()
    before = path.read_bytes()

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(local.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        kms.create_version()
    monkeypatch.undo()
    assert kms.versions() == [1]
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["keystore.json", "keystore.json.lock"]


def test_time_is_a_parameter(make: Callable[..., LocalKeystoreKMS], path: Path) -> None:
    when = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    make(now=lambda: when)
    assert LocalKeystoreKMS.open(path, PASS).created_at(1) == when


def test_secrets_stay_out_of_repr_and_pickle(
    make: Callable[..., LocalKeystoreKMS], path: Path
) -> None:
    kms = make()
    assert PASS not in repr(kms) and str(path) in repr(kms)
    with pytest.raises(TypeError):
        pickle.dumps(kms)


def test_deleted_keystore_is_an_error(make: Callable[..., LocalKeystoreKMS], path: Path) -> None:
    kms = make()
    path.unlink()
    with pytest.raises(KeystoreError):
        kms.current_version()


def test_closed_keystore_forgets_everything(make: Callable[..., LocalKeystoreKMS]) -> None:
    kms = make()
    kms.close()
    with pytest.raises(CryptoError):
        kms.create_version()
