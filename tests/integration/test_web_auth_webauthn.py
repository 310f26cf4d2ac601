"""WebAuthn through the JSON endpoints the pages use (a software authenticator plays the
browser): passkey enrolment and passwordless sign-in, wrong origin, security key as second
factor, recovery codes shown once, rename and revoke with step-up."""

from __future__ import annotations

import json
import re
from typing import Any

from test_web_auth_rig import (
    ADMIN_EMAIL,
    BASE,
    Web,
    csrf_of,
    setup_admin,
    sign_in,
    text_of,
    web,
)

from identity_authenticator import SoftAuthenticator

__all__ = ["web"]


def _token(web: Web, page: str = "/account/mfa") -> str:
    return csrf_of(web.client.get(page))


def _register(web: Web, key: SoftAuthenticator, kind: str, name: str, **create: Any) -> Any:
    headers = {"X-CSRF-Token": _token(web)}
    start = web.client.post("/account/credentials/options", json={"kind": kind}, headers=headers)
    assert start.status_code == 200, start.text
    credential = key.create(json.dumps(start.json()["options"]), **create)
    return web.client.post(
        "/account/credentials/verify",
        json={"ceremony": start.json()["ceremony"], "credential": credential, "name": name},
        headers=headers,
    )


def _passkey_sign_in(web: Web, key: SoftAuthenticator, **get: Any) -> Any:
    client = web.new_client()
    headers = {"X-CSRF-Token": csrf_of(client.get("/sign-in"))}
    start = client.post("/sign-in/passkey/options", json={}, headers=headers)
    credential = key.get(json.dumps(start.json()["options"]), **get)
    answer = client.post(
        "/sign-in/passkey/verify?next=/account/security",
        json={"ceremony": start.json()["ceremony"], "credential": credential},
        headers=headers,
    )
    return client, answer


def _admin_with_passkey(web: Web) -> SoftAuthenticator:
    setup_admin(web)
    sign_in(web.client, ADMIN_EMAIL)
    key = SoftAuthenticator(origin=BASE)
    enrolled = _register(web, key, "passkey", "Laptop")
    assert enrolled.status_code == 200, enrolled.text
    target = enrolled.json()["next"]
    assert target.startswith("/account/recovery-codes?k=")
    codes = web.client.get(target)
    assert len(re.findall(r"<span>[^<]+</span>", codes.text.split('class="codes"')[1])) == 10
    again = web.client.get(target)
    assert "déjà été affichés" in text_of(again)  # shown once
    return key


def test_passkey_enrolment_then_passwordless_sign_in(web: Web) -> None:
    key = _admin_with_passkey(web)
    client, answer = _passkey_sign_in(web, key)
    assert answer.status_code == 200 and answer.json() == {"next": "/account/security"}
    page = client.get("/account/security")
    assert page.status_code == 200 and "Laptop" in page.text and "Clé d'accès" in text_of(page)


def test_assertion_for_another_origin_or_unknown_key_is_refused(web: Web) -> None:
    key = _admin_with_passkey(web)
    _client, phished = _passkey_sign_in(web, key, origin="https://localhost:9443")
    assert phished.status_code == 401 and "error" in phished.json()
    other = SoftAuthenticator(origin=BASE)  # a key this site never registered
    other.create(json.dumps({"rp": {"id": "localhost"}, "user": {"id": "AAAA"}, "challenge": "AA"}))
    _client, unknown = _passkey_sign_in(web, other)
    assert unknown.status_code == 401
    assert "n'est pas reconnue" in unknown.json()["error"]


def test_security_key_as_second_factor(web: Web) -> None:
    setup_admin(web)
    sign_in(web.client, ADMIN_EMAIL)
    key = SoftAuthenticator(origin=BASE)
    enrolled = _register(web, key, "security-key", "USB key", user_verified=False)
    assert enrolled.status_code == 200, enrolled.text
    client = web.new_client()
    first = sign_in(client, ADMIN_EMAIL)
    assert first.headers["location"].startswith("/sign-in/second-factor")
    page = client.get(first.headers["location"])
    assert 'data-options="/sign-in/second-factor/options"' in page.text
    headers = {"X-CSRF-Token": csrf_of(page)}
    start = client.post("/sign-in/second-factor/options", json={}, headers=headers)
    assert start.status_code == 200
    credential = key.get(json.dumps(start.json()["options"]), user_verified=False)
    done = client.post(
        "/sign-in/second-factor/verify?next=/admin/users",
        json={"ceremony": start.json()["ceremony"], "credential": credential},
        headers=headers,
    )
    assert done.status_code == 200 and done.json() == {"next": "/admin/users"}
    assert client.get("/admin/users").status_code == 200


def test_rename_and_revoke_with_step_up(web: Web) -> None:
    key = _admin_with_passkey(web)
    second = _register(web, SoftAuthenticator(origin=BASE), "passkey", "Phone")
    assert second.status_code == 200 and second.json()["next"].endswith("credential-added")
    page = web.client.get("/account/security")
    refs = re.findall(r"/account/credentials/([0-9a-f]{64})/rename", page.text)
    assert len(refs) == 2
    renamed = web.client.post(
        f"/account/credentials/{refs[1]}/rename",
        data={"csrf_token": csrf_of(page), "name": "Old phone"},
    )
    assert renamed.status_code == 303
    assert "Old phone" in web.client.get("/account/security").text
    web.clock.advance(minutes=6)
    page = web.client.get("/account/security")
    assert "confirmez d'abord votre identité" in text_of(page)
    late = web.client.post(
        f"/account/credentials/{refs[1]}/revoke", data={"csrf_token": csrf_of(page)}
    )
    assert late.headers["location"] == "/account/step-up?next=/account/security"
    step = web.client.get(late.headers["location"])
    headers = {"X-CSRF-Token": csrf_of(step)}
    start = web.client.post("/account/step-up/options", json={}, headers=headers)
    credential = key.get(json.dumps(start.json()["options"]))
    done = web.client.post(
        "/account/step-up/verify?next=/account/security",
        json={"ceremony": start.json()["ceremony"], "credential": credential},
        headers=headers,
    )
    assert done.status_code == 200 and done.json() == {"next": "/account/security"}
    page = web.client.get("/account/security")
    revoked = web.client.post(
        f"/account/credentials/{refs[1]}/revoke", data={"csrf_token": csrf_of(page)}
    )
    assert revoked.headers["location"] == "/account/security?done=revoked"
    page = text_of(web.client.get("/account/security?done=revoked"))
    assert "Old phone" not in page and "Clé supprimée." in page
    last = web.client.post(
        f"/account/credentials/{refs[0]}/revoke",
        data={"csrf_token": csrf_of(web.client.get("/account/security"))},
    )
    assert last.status_code == 400 and "avant de supprimer le dernier" in text_of(last)


def test_step_up_json_refusal_says_where_to_go(web: Web) -> None:
    _admin_with_passkey(web)
    web.clock.advance(minutes=6)
    headers = {"X-CSRF-Token": _token(web)}
    late = web.client.post(
        "/account/credentials/options", json={"kind": "passkey"}, headers=headers
    )
    assert late.status_code == 403
    assert late.json()["step_up"] == "/account/step-up"
