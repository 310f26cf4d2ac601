"""Helpers of the browser tests: real Chromium (the system's, through Playwright) against a
real ``secretum serve --dev`` over TLS 1.3 on ``https://localhost:<port>`` (WebAuthn needs a
secure context and an RP id matching the host), with CDP virtual authenticators.

The browser trusts the server's certificate by its public key (``--ignore-certificate-errors-
spki-list``): a page with a certificate error would not be a secure context for WebAuthn.
Tests skip, with the reason, when ``/usr/bin/chromium`` is absent (CI installs it).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CHROMIUM = Path("/usr/bin/chromium")


def require_chromium() -> None:
    """Skip a browser test where the system Chromium is missing (a developer's machine), but
    fail where the real peers are required (``SECRETUM_REQUIRE_PEERS=1``: ``.ci/run``): a
    browser test must never pass CI by being skipped."""
    if CHROMIUM.exists():
        return
    message = "browser tests need the system Chromium at /usr/bin/chromium"
    if os.environ.get("SECRETUM_REQUIRE_PEERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running ``secretum serve --dev``: its URL, data directory and first set-up link."""

    url: str
    data_dir: Path
    setup_path: str | None
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    #: The server's environment (SECRETUM_* included): a helper process that opens the same
    #: data directory (e.g. to book an appointment) runs with it.
    env: dict[str, str] = field(default_factory=dict)

    def spki_hash(self) -> str:
        """base64(SHA-256(SubjectPublicKeyInfo)) of the server certificate, for Chromium."""
        return spki_hash(self.data_dir / "pki" / "server.pem")


def spki_hash(pem_file: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of the first certificate in ``pem_file``, for
    Chromium's ``--ignore-certificate-errors-spki-list``."""
    cert = x509.load_pem_x509_certificates(pem_file.read_bytes())[0]
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def _prepare(data_dir: Path, port: int, env: dict[str, str]) -> str | None:
    """Initialise the data directory (development passphrase) and make a set-up link."""
    code = (
        "from secretum.config import Settings\n"
        "from secretum.bootstrap import init_platform, write_dev_passphrase\n"
        "from secretum.web.routes.auth import setup_link\n"
        "s = Settings()\n"
        "p = init_platform(s, write_dev_passphrase(s))\n"
        "print(setup_link(p))\n"
        "p.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    link = out.stdout.strip().splitlines()[-1]
    return link.split(f":{port}", 1)[1] if "/setup/" in link else None


def start_server(
    tmp: Path, name: str, *extra: str, settings: dict[str, str] | None = None
) -> Server:
    """``secretum serve --dev`` (and ``extra`` options, e.g. ``--demo``) on a free port;
    ``settings``: more ``SECRETUM_*`` variables."""
    port = _free_port()
    data = tmp / name
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETUM_")}
    env.update(
        SECRETUM_DATA_DIR=str(data),
        SECRETUM_PORT=str(port),
        SECRETUM_CONFIG=str(tmp / "none.toml"),
        SECRETUM_LOG_LEVEL="WARNING",
        **(settings or {}),
    )
    setup_path = _prepare(data, port, env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "secretum.cli", "serve", "--dev", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(f"https://localhost:{port}", data, setup_path, proc, env=env)

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            server.output.append(line)

    threading.Thread(target=drain, daemon=True).start()
    ctx = ssl.create_default_context(cafile=str(data / "pki" / "ca.pem"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server stopped:\n" + "".join(server.output))
        try:
            httpx.get(f"{server.url}/healthz", verify=ctx, timeout=2)
            break
        except (httpx.HTTPError, ssl.SSLError, OSError):
            time.sleep(0.2)
    else:
        proc.terminate()
        raise RuntimeError("the server did not start:\n" + "".join(server.output))
    # If ``serve`` printed a set-up link of its own, it retired ours: use the printed one.
    printed = re.findall(r"https://[^\s/]+(/setup/[A-Za-z0-9_\-]+)", "".join(server.output))
    if printed:
        server.setup_path = printed[-1]
    return server


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()


def virtual_authenticator(page: Any, *, user_verification: bool = True) -> tuple[Any, str]:
    """Add a CDP virtual authenticator to ``page``'s browser: (cdp session, authenticator id).

    ``user_verification`` True: a platform passkey authenticator (internal, resident keys,
    verifies the user); False: a USB security key that cannot verify the user.
    """
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    options = (
        {
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": True,
            "hasUserVerification": True,
            "isUserVerified": True,
            "automaticPresenceSimulation": True,
        }
        if user_verification
        else {
            "protocol": "ctap2",
            "transport": "usb",
            "hasResidentKey": False,
            "hasUserVerification": False,
            "automaticPresenceSimulation": True,
        }
    )
    found = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return cdp, found["authenticatorId"]


def sign_in_demo(page: Any, server: Server, key: str) -> None:
    """Sign in a demo account: the administrator with the TOTP secret the demo printed, the
    other staff by enrolling a passkey (virtual authenticator) at their first sign-in, the
    patients with their password alone."""
    from secretum.demo import PEOPLE
    from secretum.identity.factors import time_step, totp_code

    person = next(p for p in PEOPLE if p.key == key)
    page.goto(server.url + "/sign-in")
    page.fill("#email", person.email)
    page.fill("#password", person.password)
    page.locator("form[action='/sign-in'] button[type=submit]").click()
    page.wait_for_load_state()
    if urlsplit(page.url).path == "/sign-in/second-factor":
        secret = re.findall(r"TOTP secret: ([A-Z2-7]+)", "".join(server.output))[0]
        page.fill("#totp-code", totp_code(secret, time_step(datetime.now(UTC))))
        page.locator("form:has(#totp-code) button[type=submit]").click()
        page.wait_for_load_state()
    if urlsplit(page.url).path == "/account/mfa":
        page.click("#passkey-create")
        page.wait_for_url(lambda url: urlsplit(url).path == "/account/recovery-codes")
        page.locator("a.button").first.click()
        page.wait_for_load_state()
    assert urlsplit(page.url).path not in ("/sign-in", "/account/mfa"), page.url


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
