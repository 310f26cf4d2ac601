"""Getting an account through the web pages: first administrator, invitations (expiry, single
use), weak passwords, patient self-registration."""

from __future__ import annotations

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

from secretum.web.routes.auth import setup_link

__all__ = ["web"]


def test_weak_password_is_refused_with_feedback_in_both_languages(web: Web) -> None:
    path = (setup_link(web.platform) or "").removeprefix(web.platform.settings.base_url)
    page = web.client.get(path)
    form = {
        "csrf_token": csrf_of(page),
        "display_name": "Alice Admin",
        "email": ADMIN_EMAIL,
        "password": "password1234",
        "password_confirm": "password1234",
    }
    refused = web.client.post(path, data=form)
    assert refused.status_code == 400
    text = text_of(refused)
    assert "Ce mot de passe est trop faible" in text
    assert "C'est l'un des" in text or "très courant" in text  # zxcvbn's warning, in French
    assert 'aria-invalid="true"' in refused.text and 'value="Alice Admin"' in refused.text
    english = web.client.post(path, data=form, headers={"accept-language": "en-GB,en;q=0.8"})
    assert "This password is too weak" in text_of(english)
    assert "common password" in text_of(english)
    short = web.client.post(path, data={**form, "password": "Kx7#", "password_confirm": "Kx7#"})
    assert "Utilisez au moins 12 caractères." in text_of(short)
    mismatch = web.client.post(path, data={**form, "password": PASSWORD})
    assert mismatch.status_code == 400 and "pas identiques" in text_of(mismatch)
    # the link still works once a good password is given; then never again
    done = web.client.post(path, data={**form, "password": PASSWORD, "password_confirm": PASSWORD})
    assert done.status_code == 200 and "Compte administrateur créé" in text_of(done)
    again = web.client.post(path, data={**form, "password": PASSWORD, "password_confirm": PASSWORD})
    assert again.status_code == 410 and "déjà configurée" in text_of(again)


def test_unknown_setup_token_is_refused(web: Web) -> None:
    setup_link(web.platform)
    page = web.client.get("/setup/not-a-token")
    # Said at once: no form to fill in for a link that cannot work.
    assert page.status_code == 404 and "n'est pas valide" in text_of(page)
    assert 'name="password"' not in page.text
    refused = web.client.post(
        "/setup/not-a-token",
        data={
            "csrf_token": csrf_of(page),
            "display_name": "Mallory",
            "email": "mallory@example.org",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
    )
    assert refused.status_code == 404 and "n'est pas valide" in text_of(refused)


def test_invitation_works_once(web: Web) -> None:
    admin_with_totp(web)
    link_page = invite(
        web,
        "practitioner",
        "doc@example.org",
        specialty="radiology",
        rpps="10000000009",
    )
    assert link_page.status_code == 200, text_of(link_page)
    assert "Valable jusqu'au 08/03/2030 10:00." in text_of(link_page)
    assert "Les heures sont en heure de Paris." in text_of(link_page)
    path = invitation_path(link_page)
    invitee = web.new_client()
    done = accept(invitee, path)
    assert done.status_code == 200 and "Compte activé" in text_of(done)
    twice = accept(web.new_client(), path)
    assert twice.status_code == 410 and "déjà été acceptée" in text_of(twice)
    used = web.new_client().get(path)
    assert used.status_code == 410 and "déjà été acceptée" in text_of(used)
    assert 'name="password"' not in used.text
    signed = sign_in(invitee, "doc@example.org")
    assert signed.headers["location"] == "/account/mfa"  # practitioners must enrol MFA


def test_expired_invitation_is_refused(web: Web) -> None:
    admin_with_totp(web)
    path = invitation_path(invite(web, "patient", "pat@example.org"))
    assert 'name="password"' in web.new_client().get(path).text
    web.clock.advance(days=7, seconds=1)
    form = web.new_client().get(path)
    assert form.status_code == 410 and "Cette invitation a expiré" in text_of(form)
    assert 'name="password"' not in form.text
    expired = accept(web.new_client(), path)
    assert expired.status_code == 410
    assert "Cette invitation a expiré" in text_of(expired)
    assert sign_in(web.new_client(), "pat@example.org").status_code == 401


def test_invitation_with_a_weak_password_can_be_retried(web: Web) -> None:
    admin_with_totp(web)
    path = invitation_path(invite(web, "dpo", "dpo@example.org"))
    invitee = web.new_client()
    weak = accept(invitee, path, "azertyuiop12")
    assert weak.status_code == 400 and "trop faible" in text_of(weak)
    assert accept(invitee, path).status_code == 200


def test_self_registration_answers_alike_and_shows_no_link(web: Web) -> None:
    admin_with_totp(web)
    visitor = web.new_client()
    closed = visitor.get("/register")
    assert closed.status_code == 403 and "n'est pas ouverte" in text_of(closed)
    settings = web.client.get("/admin/settings")
    saved = web.client.post(
        "/admin/settings",
        data={"csrf_token": csrf_of(settings), "allow_patient_self_registration": "on"},
    )
    assert saved.status_code == 303
    form = visitor.get("/register")
    assert form.status_code == 200
    assert 'href="/register"' in visitor.get("/sign-in").text
    answers = []
    for email in ("new@example.org", ADMIN_EMAIL, "new@example.org"):
        answer = visitor.post(
            "/register",
            data={"csrf_token": csrf_of(form), "display_name": "Paul Patient", "email": email},
        )
        assert answer.status_code == 200
        assert "/invite/" not in answer.text
        answers.append(answer.text.split('<main id="main">')[1])
    assert answers[0] == answers[1] == answers[2]
    malformed = visitor.post(
        "/register",
        data={"csrf_token": csrf_of(form), "display_name": "Paul", "email": "not-an-address"},
    )
    assert malformed.status_code == 400 and "adresse e-mail complète" in text_of(malformed)
