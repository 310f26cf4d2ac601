"""The account security page's own acts: password change, sessions, recovery codes, TOTP
removal (step-up), security notices."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from test_web_auth_rig import (
    ADMIN_EMAIL,
    PASSWORD,
    Web,
    accept,
    admin_with_totp,
    csrf_of,
    invitation_path,
    invite,
    sign_in,
    text_of,
    web,
)

__all__ = ["web"]
NEW_PASSWORD = "tortue violette parapluie rapide 7"


def _second_factor(client: TestClient, code: str) -> None:
    page = client.get("/sign-in/second-factor")
    done = client.post("/sign-in/second-factor", data={"csrf_token": csrf_of(page), "code": code})
    assert done.status_code == 303, done.text


def test_password_change_checks_and_ends_the_other_sessions(web: Web) -> None:
    totp = admin_with_totp(web)
    other = web.new_client()
    sign_in(other, ADMIN_EMAIL)
    web.clock.advance(seconds=30)
    _second_factor(other, totp.code(web.clock.now))
    page = web.client.get("/account/security")
    form = {"csrf_token": csrf_of(page), "current": PASSWORD, "new": NEW_PASSWORD}
    mismatch = web.client.post("/account/password", data={**form, "confirm": "something else"})
    assert mismatch.status_code == 400 and "pas identiques" in text_of(mismatch)
    weak = web.client.post(
        "/account/password", data={**form, "new": "password1234", "confirm": "password1234"}
    )
    assert weak.status_code == 400 and "trop faible" in text_of(weak)
    wrong = web.client.post(
        "/account/password", data={**form, "current": "not it at all", "confirm": NEW_PASSWORD}
    )
    assert wrong.status_code == 401
    done = web.client.post("/account/password", data={**form, "confirm": NEW_PASSWORD})
    assert done.headers["location"] == "/account/security?done=password-changed"
    assert "Mot de passe changé" in text_of(web.client.get(done.headers["location"]))
    assert other.get("/account/security").status_code == 401
    assert sign_in(web.new_client(), ADMIN_EMAIL, PASSWORD).status_code == 401
    assert sign_in(web.new_client(), ADMIN_EMAIL, NEW_PASSWORD).status_code == 303


def test_another_session_is_revoked_from_the_list(web: Web) -> None:
    totp = admin_with_totp(web)
    other = web.new_client()
    sign_in(other, ADMIN_EMAIL)
    web.clock.advance(seconds=30)
    _second_factor(other, totp.code(web.clock.now))
    page = web.client.get("/account/security")
    refs = re.findall(r"/account/sessions/([0-9a-f]{64})/revoke", page.text)
    assert len(refs) == 1  # the other one; this session has no button
    done = web.client.post(
        f"/account/sessions/{refs[0]}/revoke", data={"csrf_token": csrf_of(page)}
    )
    assert done.headers["location"] == "/account/security?done=session-revoked"
    assert other.get("/account/security").status_code == 401
    assert web.client.get("/account/security").status_code == 200


def test_new_recovery_codes_and_totp_removal_need_a_fresh_factor(web: Web) -> None:
    totp = admin_with_totp(web)
    page = web.client.get("/account/security")
    fresh = web.client.post("/account/recovery-codes", data={"csrf_token": csrf_of(page)})
    codes = re.findall(r"<span>([^<]+)</span>", fresh.text.split('class="codes"')[1])
    assert len(codes) == 10 and not set(codes) & set(totp.recovery_codes)
    web.clock.advance(minutes=6)
    page = web.client.get("/account/security")
    late = web.client.post("/account/totp/remove", data={"csrf_token": csrf_of(page)})
    assert late.headers["location"] == "/account/step-up?next=/account/security"
    step = web.client.get(late.headers["location"])
    web.client.post(
        "/account/step-up/totp",
        data={"csrf_token": csrf_of(step), "code": totp.code(web.clock.now), "next": "/"},
    )
    page = web.client.get("/account/security")
    refused = web.client.post("/account/totp/remove", data={"csrf_token": csrf_of(page)})
    assert refused.status_code == 400  # an administrator keeps one second factor
    assert "avant de supprimer le dernier" in text_of(refused)


def test_recovery_codes_are_refused_without_a_real_second_factor(web: Web) -> None:
    """A patient without a second factor cannot make recovery codes their only factor."""
    admin_with_totp(web)
    path = invitation_path(invite(web, "patient", "pat@example.org"))
    patient = web.new_client()
    accept(patient, path)
    assert sign_in(patient, "pat@example.org").status_code == 303
    page = patient.get("/account/security")
    assert "/account/recovery-codes" not in page.text  # no button to press
    assert "accompagnent un second facteur" in text_of(page)
    refused = patient.post("/account/recovery-codes", data={"csrf_token": csrf_of(page)})
    assert refused.status_code == 409
    assert "ajoutez d'abord une clé de sécurité" in text_of(refused)
    assert 'class="codes"' not in refused.text


def test_sign_in_from_a_new_device_is_noticed(web: Web) -> None:
    totp = admin_with_totp(web)
    laptop = web.new_client()
    sign_in(laptop, ADMIN_EMAIL)
    web.clock.advance(seconds=30)
    _second_factor(laptop, totp.code(web.clock.now))
    page = text_of(web.client.get("/account/security"))
    assert "Connexion depuis un nouvel appareil" in page


_KEY = re.compile(
    r"\b(?:auth|signin|second|setup|invite|register|mfa|totp|codes|stepup|security|admin|webauthn)"
    r"\.[a-z_\-]+(?:\.[a-z_\-]+)*\b"
)


def test_every_page_is_translated_in_both_languages(web: Web) -> None:
    admin_with_totp(web)
    anonymous = web.new_client()
    pages = [
        (web.client, "/account/security"),
        (web.client, "/account/mfa"),
        (web.client, "/account/step-up?next=/admin/users"),
        (web.client, "/account/recovery-codes"),
        (web.client, "/admin/users"),
        (web.client, "/admin/invitations"),
        (web.client, "/admin/settings"),
        (anonymous, "/sign-in"),
        (anonymous, "/register"),
        (anonymous, "/setup/some-token"),
        (anonymous, "/invite/some-token"),
    ]
    for lang in ("fr-FR,fr", "en-GB,en"):
        for client, path in pages:
            page = client.get(path, headers={"accept-language": lang})
            assert page.status_code in (200, 403, 404, 410), (path, page.status_code)
            body = text_of(page).split('<main id="main">')[1]
            assert not _KEY.search(body), (lang, path, _KEY.search(body))
            assert f'lang="{lang[:2]}"' in page.text
