"""Pkcs11KMS against a SoftHSM2 token made at test time: the KMS contract, plus HSM checks.

SoftHSM2 reads ``SOFTHSM2_CONF`` in ``C_Initialize``, and python-pkcs11 caches each loaded
module per process (``pkcs11.lib(path)`` returns the same, initialised object), so the token
is made once per test session, in a temporary directory, *before* the module is first loaded.
Each test then starts from a token wiped of Secretum objects.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e

from kms_contract import CTX, KEY, KmsContract
from secretum.crypto.errors import KeyNotFoundError, KeyRetiredError
from secretum.crypto.kms import KeyManagementService, WrappedKey, open_kms
from secretum.crypto.kms import pkcs11 as adapter
from secretum.crypto.kms.pkcs11 import HsmError, HsmPinError, Pkcs11KMS

pytestmark = pytest.mark.hsm

LABEL, PIN, SO_PIN = "secretum-test", "1234", "123456"
MODULES = (
    os.environ.get("SECRETUM_TEST_SOFTHSM_MODULE", ""),
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


@dataclass(frozen=True)
class Hsm:
    module: str
    label: str
    pin: str

    def open(self, **kwargs: Any) -> Pkcs11KMS:
        return Pkcs11KMS.open(self.module, self.label, self.pin, **kwargs)


def _softhsm_or_skip() -> tuple[str, str]:
    util = shutil.which("softhsm2-util")
    module = next((m for m in MODULES if m and Path(m).is_file()), None)
    if util and module:
        return util, module
    reason = "SoftHSM2 is not installed (apt install softhsm2)"
    if os.environ.get("CI"):  # CI installs it: never skip silently there
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hsm]:
    util, module = _softhsm_or_skip()
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(conf))  # before the module's C_Initialize
        subprocess.run(
            [util, "--init-token", "--free", "--label", LABEL, "--pin", PIN, "--so-pin", SO_PIN],
            check=True,
            capture_output=True,
        )
        lib = pkcs11.lib(module)
        try:
            lib.get_token(token_label=LABEL)
        except p11e.NoSuchToken:  # loaded earlier in this process with another config
            lib.reinitialize()
        yield Hsm(module, LABEL, PIN)


def _raw_session(hsm: Hsm, **kwargs: Any) -> Any:
    return pkcs11.lib(hsm.module).get_token(token_label=hsm.label).open(**kwargs)


@pytest.fixture
def clean_token(softhsm: Hsm) -> Iterator[Hsm]:
    """The token without Secretum objects; fails a test that leaves an instance open."""
    assert not adapter._SESSIONS, "a previous test left a Pkcs11KMS open"
    with _raw_session(softhsm, rw=True, user_pin=PIN) as session:
        for obj in list(session.get_objects()):
            if str(obj[Attribute.LABEL]).startswith("secretum-"):
                obj.destroy()
    yield softhsm
    assert not adapter._SESSIONS, "this test left a Pkcs11KMS open"


@pytest.fixture
def opened(clean_token: Hsm) -> Iterator[list[Pkcs11KMS]]:
    """Instances to close at teardown."""
    instances: list[Pkcs11KMS] = []
    yield instances
    for kms in instances:
        kms.close()


@pytest.fixture
def kms(clean_token: Hsm, opened: list[Pkcs11KMS]) -> Pkcs11KMS:
    kms = Pkcs11KMS.create(clean_token.module, clean_token.label, clean_token.pin)
    opened.append(kms)
    return kms


class TestPkcs11Contract(KmsContract):
    pass  # the module-level ``kms`` fixture applies


def _find(session: Any, label: str) -> list[Any]:
    return list(session.get_objects({Attribute.LABEL: label}))


def test_kek_is_generated_inside_and_cannot_leave(kms: Pkcs11KMS, softhsm: Hsm) -> None:
    with _raw_session(softhsm) as session:  # logged in already: this process holds the login
        (kek,) = _find(session, "secretum-kek-v1")
        assert kek[Attribute.CLASS] == ObjectClass.SECRET_KEY
        assert kek[Attribute.KEY_TYPE] == KeyType.AES and kek[Attribute.VALUE_LEN] == 32
        expected = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.ALWAYS_SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.NEVER_EXTRACTABLE: True,
            Attribute.LOCAL: True,  # generated on the token, never imported
            Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True,
            Attribute.WRAP: False,
            Attribute.UNWRAP: False,
            Attribute.SIGN: False,
            Attribute.DERIVE: False,
        }
        assert {a: kek[a] for a in expected} == expected
        with pytest.raises(p11e.AttributeSensitive):
            kek[Attribute.VALUE]
        with pytest.raises(p11e.PKCS11Error):
            kek[Attribute.EXTRACTABLE] = True
        wrapper = session.generate_key(KeyType.AES, 256, template={Attribute.WRAP: True})
        with pytest.raises(p11e.KeyUnextractable):
            wrapper.wrap_key(kek, mechanism=Mechanism.AES_KEY_WRAP)


def test_state_travels_with_the_token(kms: Pkcs11KMS, softhsm: Hsm) -> None:
    old = kms.wrap(KEY, CTX)
    kms.create_version()
    kms.retire_below(2)
    kms.close()
    with _raw_session(softhsm, user_pin=PIN) as session:
        assert _find(session, "secretum-kek-v1") == []  # destroyed, not just hidden
        (state,) = _find(session, "secretum-kms-state")
        assert json.loads(state[Attribute.VALUE]) == {"min_decrypt_version": 2}
    reopened = softhsm.open()
    try:
        assert reopened.min_decrypt_version() == 2 and reopened.versions() == [2]
        with pytest.raises(KeyRetiredError):
            reopened.unwrap(old, CTX)
    finally:
        reopened.close()


def test_open_needs_a_kek(clean_token: Hsm) -> None:
    with pytest.raises(KeyNotFoundError):
        clean_token.open()


def test_create_refuses_a_token_in_use(kms: Pkcs11KMS, softhsm: Hsm) -> None:
    with pytest.raises(HsmError):
        Pkcs11KMS.create(softhsm.module, softhsm.label, softhsm.pin)
    assert kms.versions() == [1]


def test_wrong_pin_is_refused(clean_token: Hsm, opened: list[Pkcs11KMS]) -> None:
    with pytest.raises(HsmPinError):
        Pkcs11KMS.create(clean_token.module, clean_token.label, "4321")
    opened.append(Pkcs11KMS.create(clean_token.module, clean_token.label, clean_token.pin))
    with pytest.raises(HsmPinError):  # already logged in: checked against the first PIN
        Pkcs11KMS.open(clean_token.module, clean_token.label, "4321")


def test_unknown_token(softhsm: Hsm) -> None:
    with pytest.raises(HsmError):
        Pkcs11KMS.open(softhsm.module, "no-such-token", PIN)


def test_instances_share_the_token(kms: Pkcs11KMS, softhsm: Hsm, opened: list[Pkcs11KMS]) -> None:
    now = [0.0]
    other = softhsm.open(clock=lambda: now[0], refresh_seconds=60)
    opened.append(other)
    old = other.wrap(KEY, CTX)
    kms.create_version()
    assert other.current_version() == 1  # cached until the refresh interval ends ...
    assert other.unwrap(kms.wrap(KEY, CTX), CTX) == KEY  # ... but an unknown version rescans
    now[0] = 61.0
    assert other.current_version() == 2
    kms.retire_below(2)
    with pytest.raises(KeyRetiredError):  # its handle went stale: rescanned, then refused
        other.unwrap(old, CTX)
    kms.close()
    assert other.unwrap(other.wrap(KEY, CTX), CTX) == KEY  # the session outlives one instance


def test_rotation_by_another_process_is_seen(kms: Pkcs11KMS, softhsm: Hsm) -> None:
    code = (
        "import json, sys\n"
        "from secretum.crypto.kms.pkcs11 import Pkcs11KMS\n"
        "k = Pkcs11KMS.open(*sys.argv[1:4])\n"
        "v = k.create_version(); w = k.wrap(b'k' * 32, bytes.fromhex(sys.argv[4]))\n"
        "print(json.dumps([v, w.kek_version, w.blob.hex()])); k.close()\n"
    )
    argv = [softhsm.module, softhsm.label, softhsm.pin, CTX.hex()]
    result = subprocess.run(
        [sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True
    )
    version, kek_version, blob = json.loads(result.stdout)
    assert version == kek_version == 2
    assert kms.unwrap(WrappedKey(2, bytes.fromhex(blob)), CTX) == b"k" * 32
    assert kms.versions() == [1, 2]


def test_factory_opens_the_hsm(kms: Pkcs11KMS, softhsm: Hsm, opened: list[Pkcs11KMS]) -> None:
    other = open_kms("pkcs11", module_path=softhsm.module, token_label=LABEL, pin=PIN)
    assert isinstance(other, Pkcs11KMS)
    opened.append(other)
    assert isinstance(other, KeyManagementService)
    assert other.unwrap(kms.wrap(KEY, CTX), CTX) == KEY
    assert PIN not in repr(other)


def test_retirement_by_another_process_is_seen(kms: Pkcs11KMS, softhsm: Hsm) -> None:
    old = kms.wrap(KEY, CTX)
    kms.create_version()
    assert kms.unwrap(old, CTX) == KEY  # v1's handle is cached in this process
    code = (
        "import sys\n"
        "from secretum.crypto.kms.pkcs11 import Pkcs11KMS\n"
        "k = Pkcs11KMS.open(*sys.argv[1:4]); k.retire_below(2); k.close()\n"
    )
    argv = [softhsm.module, softhsm.label, softhsm.pin]
    subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True)
    with pytest.raises(KeyRetiredError):  # at once, not only after refresh_seconds
        kms.unwrap(old, CTX)
    assert kms.wrap(KEY, CTX).kek_version == 2


def test_python_pkcs11_caches_the_module(softhsm: Hsm) -> None:
    # why the token is made once per session: SOFTHSM2_CONF is read only at first load
    assert pkcs11.lib(softhsm.module) is pkcs11.lib(softhsm.module)
