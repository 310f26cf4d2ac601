"""Passkeys and security keys in real Chromium (CDP virtual authenticators) against a real
``secretum serve --dev`` over TLS 1.3: register a passkey and sign in without a password; an
unregistered authenticator is refused; an assertion made on another origin is refused; a
security key as the second factor after a password. Screenshots go to ``artifacts/``."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from browser_rig import Server, screenshot, start_server, stop_server, virtual_authenticator
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

pytestmark = pytest.mark.browser

EMAIL = "admin@example.org"
PASSWORD = "cheval agrafe batterie correcte 42"


def _wait_path(page: Any, path: str) -> None:
    """Wait until the page's path (not its query) is ``path``."""
    page.wait_for_url(lambda url: urlsplit(url).path == path)


def _set_up_admin(page: Any, server: Server, *, weak_first: bool = False) -> None:
    assert server.setup_path, "no set-up link: " + "".join(server.output)
    page.goto(server.url + server.setup_path)
    page.get_by_label("Nom et prénom").fill("Alice Admin")
    page.get_by_label("Adresse e-mail", exact=True).fill(EMAIL)
    if weak_first:
        page.get_by_label("Nouveau mot de passe").fill("azertyuiop123")
        page.get_by_label("Confirmez le mot de passe").fill("azertyuiop123")
        page.get_by_role("button", name="Créer le compte administrateur").click()
        page.get_by_role("alert").filter(has_text="trop faible").wait_for()
        assert page.get_by_label("Nouveau mot de passe").get_attribute("aria-invalid") == "true"
        screenshot(page, "setup-weak-password")
    page.get_by_label("Nouveau mot de passe").fill(PASSWORD)
    page.get_by_label("Confirmez le mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Créer le compte administrateur").click()
    page.get_by_text("Compte administrateur créé").wait_for()


def _password_sign_in(page: Any, server: Server) -> None:
    page.goto(server.url + "/sign-in")
    page.get_by_label("Adresse e-mail", exact=True).fill(EMAIL)
    page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Se connecter", exact=True).click()


def _sign_out(page: Any) -> None:
    page.get_by_role("button", name="Se déconnecter").first.click()
    _wait_path(page, "/sign-in")


def _register_passkey(page: Any, server: Server) -> None:
    _set_up_admin(page, server)
    _password_sign_in(page, server)
    _wait_path(page, "/account/mfa")
    page.get_by_role("button", name="Créer une clé d'accès").click()
    _wait_path(page, "/account/recovery-codes")
    assert page.locator("code.codes span").count() == 10
    page.get_by_role("link", name="J'ai mis mes codes en lieu sûr").click()
    _wait_path(page, "/admin/users")


def test_passkey_registration_then_passwordless_sign_in(server: Server, launch: Any) -> None:
    context = launch()
    page = context.new_page()
    virtual_authenticator(page)
    _register_passkey(page, server)
    _sign_out(page)

    page.goto(server.url + "/sign-in?next=/account/security")
    screenshot(page, "sign-in")
    page.get_by_role("button", name="Se connecter avec une clé d'accès").click()
    _wait_path(page, "/account/security")
    assert page.get_by_role("heading", name="Sécurité du compte").is_visible()
    assert page.get_by_role("cell", name="Ma clé d'accès", exact=True).is_visible()
    screenshot(page, "account-security")


def test_unregistered_authenticator_is_refused(server: Server, launch: Any) -> None:
    context = launch()
    page = context.new_page()
    cdp, registered = virtual_authenticator(page)
    _register_passkey(page, server)
    _sign_out(page)

    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": registered})
    _cdp, fresh = virtual_authenticator(page)
    key = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    _cdp.send(  # a passkey for this RP id that the server never registered
        "WebAuthn.addCredential",
        {
            "authenticatorId": fresh,
            "credential": {
                "credentialId": base64.b64encode(b"never-registered-credential-01").decode(),
                "isResidentCredential": True,
                "rpId": "localhost",
                "privateKey": base64.b64encode(pkcs8).decode(),
                "userHandle": base64.b64encode(b"someone-else").decode(),
                "signCount": 1,
            },
        },
    )
    page.goto(server.url + "/sign-in")
    page.get_by_role("button", name="Se connecter avec une clé d'accès").click()
    status = page.locator("#passkey-status")
    status.filter(has_text="n'est pas reconnue").wait_for()
    assert "/sign-in" in page.url
    assert page.context.cookies(server.url) and not any(
        c["name"] == "__Host-secretum-session" for c in page.context.cookies(server.url)
    )


_GET_ON_THIS_ORIGIN = """
async (options) => {
  const b64 = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")
      + "=".repeat((4 - s.length % 4) % 4)), (c) => c.charCodeAt(0));
  const enc = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
      .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  const cred = await navigator.credentials.get({publicKey: {
      ...options, challenge: b64(options.challenge), allowCredentials: []}});
  const r = cred.response;
  return {id: cred.id, rawId: enc(cred.rawId), type: cred.type, clientExtensionResults: {},
    response: {clientDataJSON: enc(r.clientDataJSON),
      authenticatorData: enc(r.authenticatorData), signature: enc(r.signature),
      userHandle: r.userHandle ? enc(r.userHandle) : null}};
}
"""


def _options_from(server: Server) -> tuple[httpx.Client, dict[str, Any], str]:
    """Start a passkey sign-in on ``server`` as a script would (CSRF cookie + token)."""
    trust = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.pem"))
    client = httpx.Client(verify=trust, base_url=server.url)
    page = client.get("/sign-in")
    token = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    start = client.post("/sign-in/passkey/options", json={}, headers={"X-CSRF-Token": token})
    start.raise_for_status()
    client.headers["X-CSRF-Token"] = token
    return client, start.json()["options"], start.json()["ceremony"]


def test_assertion_made_on_another_origin_is_refused(
    server: Server, launch: Any, tmp_path: Path
) -> None:
    other = start_server(tmp_path, "other")  # origin B: https://localhost:<another port>
    context = launch(other)
    try:
        page = context.new_page()
        virtual_authenticator(page)
        _register_passkey(page, server)  # origin A

        # A phishing page on origin B relays a challenge of A: the browser signs for B.
        client, options, ceremony = _options_from(server)
        page.goto(other.url + "/sign-in")
        phished = page.evaluate(_GET_ON_THIS_ORIGIN, options)
        raw = phished["response"]["clientDataJSON"]
        client_data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        assert client_data["origin"] == other.url
        refused = client.post(
            "/sign-in/passkey/verify", json={"ceremony": ceremony, "credential": phished}
        )
        client.close()
        assert refused.status_code == 401 and "error" in refused.json()
        assert "__Host-secretum-session" not in refused.cookies

        # The same authenticator on origin A itself: accepted (the origin made the difference).
        client, options, ceremony = _options_from(server)
        page.goto(server.url + "/sign-in")
        genuine = page.evaluate(_GET_ON_THIS_ORIGIN, options)
        accepted = client.post(
            "/sign-in/passkey/verify", json={"ceremony": ceremony, "credential": genuine}
        )
        client.close()
        assert accepted.status_code == 200, accepted.text
    finally:
        context.browser.close()  # no keep-alive connection holds the 2nd server open
        stop_server(other)


def test_security_key_as_second_factor_after_password(server: Server, launch: Any) -> None:
    context = launch()
    page = context.new_page()
    virtual_authenticator(page, user_verification=False)
    _set_up_admin(page, server, weak_first=True)
    _password_sign_in(page, server)
    _wait_path(page, "/account/mfa")
    screenshot(page, "mfa-setup")
    page.get_by_role("button", name="Enregistrer une clé de sécurité").click()
    _wait_path(page, "/account/recovery-codes")
    page.get_by_role("link", name="J'ai mis mes codes en lieu sûr").click()
    _wait_path(page, "/admin/users")
    _sign_out(page)

    _password_sign_in(page, server)
    _wait_path(page, "/sign-in/second-factor")
    screenshot(page, "second-factor")
    page.get_by_role("button", name="Utiliser ma clé").click()
    _wait_path(page, "/admin/users")
    assert page.get_by_role("heading", name="Comptes").is_visible()
    screenshot(page, "admin-users")
    page.goto(server.url + "/account/security")
    assert page.get_by_role("cell", name="Clé de sécurité", exact=True).is_visible()
    page.get_by_role("button", name="Configurer une application").click()
    _wait_path(page, "/account/totp/setup")
    qr = page.get_by_role("img", name="QR code")
    qr.wait_for()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 100")
    screenshot(page, "totp-setup")
