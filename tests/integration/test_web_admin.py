"""Administration pages: accounts (lock, unlock, disable, reset MFA), invitations, settings;
who may reach them; the step-up before sensitive acts."""

from __future__ import annotations

import json
import re

from test_web_auth_rig import (
    ADMIN_EMAIL,
    PASSWORD,
    Web,
    accept,
    admin_with_totp,
    csrf_of,
    enrol_totp,
    invitation_path,
    invite,
    sign_in,
    text_of,
    web,
)

from secretum.audit.store import read_entries
from secretum.web.admin_settings import settings_path

__all__ = ["web"]


def _user_id(web: Web, marker: str) -> str:
    page = web.client.get("/admin/users")
    row = next(r for r in page.text.split("<tr>") if marker in r)
    found = re.search(r"/admin/users/([0-9a-f]{32})/", row)
    assert found
    return found.group(1)


def _post(web: Web, path: str, page: str = "/admin/users", **data: str) -> object:
    form = web.client.get(page)
    return web.client.post(path, data={"csrf_token": csrf_of(form), **data})


def test_admin_invites_a_practitioner_and_manages_the_account(web: Web) -> None:
    admin_with_totp(web)
    bad = invite(web, "practitioner", "doc@example.org", specialty="radiology", rpps="12345678901")
    assert bad.status_code == 400 and "clé de contrôle" in text_of(bad)
    assert 'value="doc@example.org"' in bad.text  # the form keeps what was typed
    link = invite(web, "practitioner", "doc@example.org", specialty="radiology", rpps="10000000009")
    doctor = web.new_client()
    assert accept(doctor, invitation_path(link)).status_code == 200
    users = text_of(web.client.get("/admin/users"))
    assert "Ann Other" in users and "doc@example.org" in users and "Radiologie" in users

    doc_id = _user_id(web, "doc@example.org")
    assert _post(web, f"/admin/users/{doc_id}/status", status="locked").status_code == 303
    refused = sign_in(doctor, "doc@example.org")
    assert refused.status_code == 403 and "n'est pas actif" in text_of(refused)
    assert _post(web, f"/admin/users/{doc_id}/status", status="active").status_code == 303
    assert sign_in(doctor, "doc@example.org").headers["location"] == "/account/mfa"
    enrol_totp(web, doctor)
    assert _post(web, f"/admin/users/{doc_id}/reset-mfa").status_code == 303
    assert doctor.get("/account/security").status_code == 401  # sessions ended
    assert sign_in(doctor, "doc@example.org").headers["location"] == "/account/mfa"
    bogus = _post(web, f"/admin/users/{doc_id}/status", status="invited")
    assert bogus.status_code == 400


def test_patients_appear_without_their_name(web: Web) -> None:
    admin_with_totp(web)
    accept(web.new_client(), invitation_path(invite(web, "patient", "pat@example.org")))
    users = text_of(web.client.get("/admin/users"))
    assert "pat@example.org" not in users and "Patient" in users


def test_pending_invitation_gets_a_new_link(web: Web) -> None:
    totp = admin_with_totp(web)
    first = invitation_path(invite(web, "patient", "pat@example.org"))
    web.clock.advance(days=8)  # the link expired; so did the session
    assert web.client.get("/admin/invitations").status_code == 401
    sign_in(web.client, ADMIN_EMAIL)
    page = web.client.get("/sign-in/second-factor")
    web.client.post(
        "/sign-in/second-factor",
        data={"csrf_token": csrf_of(page), "code": totp.code(web.clock.now)},
    )
    pending = web.client.get("/admin/invitations")
    user_id = re.search(r"/admin/invitations/([0-9a-f]{32})/renew", pending.text)
    assert user_id
    renewed = web.client.post(
        f"/admin/invitations/{user_id.group(1)}/renew", data={"csrf_token": csrf_of(pending)}
    )
    second = invitation_path(renewed)
    assert second != first
    assert "envoyé par e-mail à l'adresse du compte" in text_of(renewed)  # not shown again
    assert accept(web.new_client(), first).status_code == 410
    assert accept(web.new_client(), second).status_code == 200


def test_step_up_with_totp_returns_to_the_page(web: Web) -> None:
    totp = admin_with_totp(web)
    web.clock.advance(minutes=6)
    assert web.client.get("/admin/users").headers["location"].startswith("/account/step-up")
    step = web.client.get("/account/step-up?next=/admin/users")
    assert "Confirmez votre identité" in text_of(step)
    wrong = web.client.post(
        "/account/step-up/totp",
        data={"csrf_token": csrf_of(step), "code": "000000", "next": "/admin/users"},
    )
    assert wrong.status_code == 401
    done = web.client.post(
        "/account/step-up/totp",
        data={
            "csrf_token": csrf_of(step),
            "code": totp.code(web.clock.now),
            "next": "/admin/users",
        },
    )
    assert done.status_code == 303 and done.headers["location"] == "/admin/users"
    assert web.client.get("/admin/users").status_code == 200


def test_settings_are_saved_audited_and_applied(web: Web) -> None:
    admin_with_totp(web)
    saved = _post(web, "/admin/settings", page="/admin/settings", mfa_required_for_patients="on")
    assert saved.status_code == 303
    stored = json.loads(settings_path(web.platform).read_text())
    assert stored == {"allow_patient_self_registration": False, "mfa_required_for_patients": True}
    assert settings_path(web.platform).stat().st_mode & 0o077 == 0
    page = text_of(web.client.get("/admin/settings?done=settings"))
    assert "Réglages enregistrés" in page
    with web.platform.engine.connect() as conn:
        entries = list(read_entries(conn))
    assert any(
        e["subtype"] == "110129" and e["resource_id"] == "identity-settings" for e in entries
    )

    link = invite(web, "patient", "pat@example.org")
    patient = web.new_client()
    accept(patient, invitation_path(link))
    assert sign_in(patient, "pat@example.org").headers["location"] == "/account/mfa"


def test_only_administrators_reach_the_admin_pages(web: Web) -> None:
    admin_with_totp(web)
    link = invite(web, "patient", "pat@example.org")
    patient = web.new_client()
    accept(patient, invitation_path(link))
    assert sign_in(patient, "pat@example.org").headers["location"] == "/"
    for path in ("/admin/users", "/admin/invitations", "/admin/settings"):
        assert patient.get(path).status_code == 403
    anonymous = web.new_client()
    assert anonymous.get("/admin/users", headers={"accept": "text/html"}).status_code == 303
    assert anonymous.get("/admin/users").status_code == 401
    token = csrf_of(patient.get("/account/security"))
    forged = patient.post(
        "/admin/settings",
        data={"csrf_token": token, "allow_patient_self_registration": "on"},
    )
    assert forged.status_code == 403
    assert not settings_path(web.platform).exists()


def test_step_up_then_admin_changes_status_of_an_old_session(web: Web) -> None:
    totp = admin_with_totp(web)
    accept(web.new_client(), invitation_path(invite(web, "dpo", "dpo@example.org")))
    dpo_id = _user_id(web, "dpo@example.org")
    web.clock.advance(minutes=6)
    form = web.client.get("/account/security")
    late = web.client.post(
        f"/admin/users/{dpo_id}/status", data={"csrf_token": csrf_of(form), "status": "locked"}
    )
    assert late.status_code == 303 and late.headers["location"].startswith("/account/step-up")
    step = web.client.get(late.headers["location"])
    web.client.post(
        "/account/step-up/totp",
        data={"csrf_token": csrf_of(step), "code": totp.code(web.clock.now), "next": "/"},
    )
    assert _post(web, f"/admin/users/{dpo_id}/status", status="locked").status_code == 303
    assert "bloqué" in text_of(web.client.get("/admin/users"))
    assert PASSWORD
