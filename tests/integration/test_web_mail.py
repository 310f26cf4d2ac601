"""Onboarding by e-mail, through the pages: invitations and self-registration.

The platform runs on its embedded mailer (the outbox folder); the messages are read back from
there and their links followed as a person would.
"""

from __future__ import annotations

import re
import stat
from email import message_from_bytes as _parse
from email import policy
from email.message import Message as EmailMessage
from pathlib import Path

from test_web_auth_rig import (
    ADMIN_EMAIL,
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

from secretum.mail import MailError, Message
from secretum.mail.outbox import OutboxMailer

__all__ = ["web"]  # the fixture

_LINK = re.compile(r"https://\S+(/invite/[A-Za-z0-9_\-]+)")


def message_from_bytes(data: bytes) -> EmailMessage:
    return _parse(data, policy=policy.default)


def outbox(web: Web) -> list[EmailMessage]:
    folder = web.platform.settings.outbox_dir
    return [message_from_bytes(p.read_bytes()) for p in OutboxMailer(folder, sender="").messages()]


def body(message: EmailMessage) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def open_registration(web: Web) -> None:
    settings = web.client.get("/admin/settings")
    web.client.post(
        "/admin/settings",
        data={"csrf_token": csrf_of(settings), "allow_patient_self_registration": "on"},
    )


def test_a_self_registered_patient_confirms_by_mail_and_signs_in(web: Web) -> None:
    admin_with_totp(web)
    open_registration(web)
    visitor = web.new_client()
    form = visitor.get("/register")
    data = {"csrf_token": csrf_of(form), "display_name": "Paul Patient", "email": "paul@ex.org"}
    assert visitor.post("/register", data=data).status_code == 200
    [mail] = outbox(web)
    assert mail["To"] == "paul@ex.org" and "Confirmez" in mail["Subject"]
    text = body(mail)
    link = _LINK.search(text)
    assert link, text
    assert "patient" not in text.lower()  # being a patient somewhere is health data
    assert accept(visitor, link.group(1)).status_code == 200
    signed = sign_in(visitor, "paul@ex.org")
    assert signed.status_code == 303 and signed.headers["location"] == "/"
    assert accept(web.new_client(), link.group(1)).status_code == 410  # the link works once


def test_a_known_address_is_told_by_mail_not_on_the_page(web: Web) -> None:
    admin_with_totp(web)
    open_registration(web)
    visitor = web.new_client()
    form = visitor.get("/register")
    data = {"csrf_token": csrf_of(form), "display_name": "Someone", "email": ADMIN_EMAIL}
    answer = visitor.post("/register", data=data)
    assert answer.status_code == 200 and "/invite/" not in answer.text
    [mail] = outbox(web)
    assert mail["To"] == ADMIN_EMAIL
    assert "déjà un compte" in body(mail) and "/invite/" not in body(mail)


def test_an_invitation_is_mailed_and_its_link_shown(web: Web) -> None:
    admin_with_totp(web)
    page = invite(web, "dpo", "dora@ex.org")
    assert "envoyé par e-mail à dora@ex.org" in text_of(page)
    [mail] = outbox(web)
    assert mail["To"] == "dora@ex.org"
    link = _LINK.search(body(mail))
    assert link and link.group(1) == invitation_path(page)
    assert accept(web.new_client(), link.group(1)).status_code == 200


def test_when_mail_fails_the_administrator_is_told_to_hand_the_link_over(web: Web) -> None:
    class Down:
        def send(self, message: Message) -> None:
            raise MailError("the mail relay refused the message (ConnectionRefusedError)")

    web.platform.services.mailer = Down()
    admin_with_totp(web)
    page = invite(web, "dpo", "dora@ex.org")
    assert page.status_code == 200
    assert "n'a pas pu être envoyé à dora@ex.org" in text_of(page)
    assert accept(web.new_client(), invitation_path(page)).status_code == 200


def test_outbox_files_are_private_and_complete(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path / "outbox", sender="Secretum <no-reply@clinic.test>")
    for i in range(3):
        mailer.send(Message(f"p{i}@ex.org", "Sujet é", f"Corps {i}\n"))
    files = mailer.messages()
    assert len(files) == 3 and not list((tmp_path / "outbox").glob(".*"))  # no partial file
    assert stat.S_IMODE((tmp_path / "outbox").stat().st_mode) == 0o700
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        mail = message_from_bytes(path.read_bytes())
        assert mail["From"] == "Secretum <no-reply@clinic.test>" and mail["Message-ID"]
        assert mail["Subject"] == "Sujet é"
    assert {body(message_from_bytes(p.read_bytes())) for p in files} == {
        f"Corps {i}\n" for i in range(3)
    }


def test_an_outbox_that_cannot_be_written_raises_mail_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    mailer = OutboxMailer(blocked, sender="x@y.z")
    try:
        mailer.send(Message("a@b.c", "s", "t"))
    except MailError as exc:
        assert "a@b.c" not in str(exc)
    else:
        raise AssertionError("MailError expected")
