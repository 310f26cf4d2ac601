"""Attacks on the keystore and the key objects (issue 8, item 4).

* An old copy of ``keystore.json`` (a backup, a stolen disk image) and the old passphrase must
  not open what the keystore holds after a passphrase change: the change draws a new file key.
* A weak keystore passphrase is refused where one is chosen (``init``, ``keys passphrase``).
* A ``BlindIndex`` refuses pickling, like the other key objects: a pickle would carry its key.
* A wrong passphrase or PIN ends as one ``error:`` line, never a traceback.
* ``keys shred`` refuses an id that is not a patient's: nothing is shredded.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from secretum.bootstrap import PlatformError, init_platform, open_platform
from secretum.cli import app
from secretum.config import Settings
from secretum.crypto.blind_index import BlindIndex
from secretum.crypto.errors import IntegrityError
from secretum.crypto.kms import local
from secretum.crypto.kms.local import KeystorePassphraseError, LocalKeystoreKMS
from secretum.identity.passwords import PASSPHRASE_MIN_LENGTH

FAST_KDF = {"name": "argon2id", "iterations": 1, "lanes": 1, "memory_cost": 1024}
CTX = b"attack/keystore/context"


def strong() -> str:
    """A generated passphrase that passes the rule (43 random URL-safe characters)."""
    return secrets.token_urlsafe(32)


# --- passphrase change: a new file key -------------------------------------------------------


def _file_key(doc: dict[str, Any], passphrase: str) -> bytes:
    """What the attacker gets from a keystore file and its passphrase: the file key."""
    wrapping = local._derive(doc["kdf"], passphrase.encode())
    return local._open(wrapping, doc["file_key"], local._kdf_aad(doc["kdf"]))


def test_old_copy_and_old_passphrase_open_nothing_after_a_change(tmp_path: Path) -> None:
    """The issue's attack: an old keystore.json plus the old passphrase opened the new keystore,
    KEKs created after the change included."""
    old_pass, new_pass = strong(), strong()
    path = tmp_path / "keys" / "keystore.json"
    kms = LocalKeystoreKMS.create(path, old_pass, kdf=FAST_KDF)
    stolen = tmp_path / "stolen" / "keystore.json"
    stolen.parent.mkdir()
    stolen.write_bytes(path.read_bytes())  # the backup the attacker will have

    kms.change_passphrase(new_pass)
    assert kms.create_version() == 2  # a KEK made after the change
    secret_dek = os.urandom(32)
    wrapped = kms.wrap(secret_dek, CTX)
    assert wrapped.kek_version == 2

    # 1. By hand: the old file key (from the old copy and passphrase) against the new body.
    old_key = _file_key(json.loads(stolen.read_bytes()), old_pass)
    new_doc = json.loads(path.read_bytes())
    with pytest.raises(IntegrityError):
        local._decrypt_body(new_doc, old_key)
    assert _file_key(new_doc, new_pass) != old_key

    # 2. Through the KMS: open the old copy (it opens: what it holds is the backup's), then
    # let it read the new file, as a process started from the copy would.
    attacker = LocalKeystoreKMS.open(stolen, old_pass)
    assert attacker.versions() == [1]
    stolen.write_bytes(path.read_bytes())
    with pytest.raises(KeystorePassphraseError):
        attacker.unwrap(wrapped, CTX)
    with pytest.raises(KeystorePassphraseError):
        LocalKeystoreKMS.open(path, old_pass)
    assert LocalKeystoreKMS.open(path, new_pass).unwrap(wrapped, CTX) == secret_dek


# --- passphrase strength ------------------------------------------------------------------


WEAK = [
    "a",
    "soleil123",
    "azertyuiop123456",  # long enough, but a keyboard walk
    "motdepasse2024!!",  # French words and a year
    "correct horse",  # strong-ish words, too short
]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "SECRETUM_DATA_DIR": str(tmp_path / "data"),
        "SECRETUM_KEYSTORE_PASSPHRASE": strong(),
        "SECRETUM_CONFIG": str(tmp_path / "none.toml"),
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


@pytest.mark.parametrize("weak", WEAK)
def test_init_refuses_a_weak_passphrase(
    weak: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRETUM_KEYSTORE_PASSPHRASE", weak)
    result = CliRunner().invoke(app, ["init"])
    assert result.exit_code == 1, result.output
    assert "too weak" in _one_error_line(result.output)
    if len(weak) < PASSPHRASE_MIN_LENGTH:
        assert f"at least {PASSPHRASE_MIN_LENGTH} characters" in result.output
    if len(weak) > 4:
        assert weak not in result.output  # never echoed
    assert not Path(env["SECRETUM_DATA_DIR"]).exists()  # nothing written
    with pytest.raises(PlatformError, match="too weak"):
        init_platform(Settings(), weak)


def test_the_dev_passphrase_passes_the_rule() -> None:
    from secretum.bootstrap import check_keystore_passphrase

    for _ in range(20):  # what write_dev_passphrase generates for `make run`
        check_keystore_passphrase(secrets.token_urlsafe(32))


def test_keys_passphrase_changes_it_and_refuses_weak_ones(env: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    refused = runner.invoke(app, ["keys", "passphrase"], input="a\na\n")
    assert refused.exit_code == 1 and "too weak" in refused.output
    new = strong()
    done = runner.invoke(app, ["keys", "passphrase"], input=f"{new}\n{new}\n")
    assert done.exit_code == 0, done.output
    assert new not in done.output
    old = runner.invoke(app, ["keys", "status"])  # the environment still has the old one
    assert old.exit_code == 1 and "wrong passphrase" in old.output
    open_platform(passphrase=new).close()


# --- key objects refuse pickling ------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_blind_index_is_not_picklable(protocol: int) -> None:
    key = os.urandom(32)
    index = BlindIndex(key)
    with pytest.raises(TypeError):
        pickle.dumps(index, protocol=protocol)
    with pytest.raises(TypeError):
        copy.deepcopy(index)
    assert key.hex() not in repr(index)


# --- wrong passphrase or PIN: one line ------------------------------------------------------


def _one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error:") and "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize("command", [["keys", "status"], ["keys", "rotate"], ["audit", "verify"]])
def test_wrong_passphrase_is_one_line_through_the_real_command(
    env: dict[str, str], command: list[str]
) -> None:
    assert CliRunner().invoke(app, ["init"]).exit_code == 0
    wrong = "not the passphrase, quite long"
    proc = subprocess.run(
        [sys.executable, "-m", "secretum.cli", *command],
        env={**os.environ, "SECRETUM_KEYSTORE_PASSPHRASE": wrong, "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "wrong passphrase" in line and wrong not in proc.stderr + proc.stdout


def test_wrong_pin_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    """The HSM refusing the PIN (raised by the adapter: SoftHSM2 is not needed here)."""
    adapter = pytest.importorskip("secretum.crypto.kms.pkcs11")
    data = Path(env["SECRETUM_DATA_DIR"])
    (data / "pki").mkdir(parents=True)
    (data / "pki" / "ca.pem").write_text("")  # looks initialised
    monkeypatch.setenv("SECRETUM_KMS", "pkcs11")
    monkeypatch.setenv("SECRETUM_PKCS11_PIN", "0000")

    def refuse(name: str, **params: object) -> None:
        raise adapter.HsmPinError("the token refused the PIN")

    monkeypatch.setattr("secretum.bootstrap.open_kms", refuse)
    result = CliRunner().invoke(app, ["keys", "status"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    line = _one_error_line(result.output)
    assert "refused the PIN" in line and "0000" not in result.output


# --- keys shred: patients only --------------------------------------------------------------


def test_shred_refuses_ids_that_are_not_patients(env: dict[str, str]) -> None:
    from secretum.identity.tables import accounts
    from secretum.keys.tables import data_keys, tombstones

    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert runner.invoke(app, ["demo"]).exit_code == 0
    platform = open_platform()
    try:
        with platform.engine.connect() as conn:
            ids = dict(conn.execute(select(accounts.c.role, accounts.c.user_id)).all())
        with platform.vault_engine.connect() as conn:
            keys_before = conn.execute(select(func.count()).select_from(data_keys)).scalar()
        for victim, says in (
            (ids["practitioner"], "practitioner"),
            (ids["admin"], "admin"),
            ("nobody-at-all", "no patient"),
        ):
            result = runner.invoke(app, ["keys", "shred", victim, "--yes"])
            assert result.exit_code == 1, result.output
            assert says in _one_error_line(result.output)
        with platform.vault_engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(data_keys)).scalar() == (
                keys_before
            )
            assert conn.execute(select(func.count()).select_from(tombstones)).scalar() == 0
        for role in ("practitioner", "admin"):  # their accounts still open
            platform.keyring.data_key(ids[role])
        shredded = runner.invoke(app, ["keys", "shred", ids["patient"], "--yes"])
        assert shredded.exit_code == 0, shredded.output
        assert platform.keyring.is_shredded(ids["patient"])
    finally:
        platform.close()
