"""Outgoing e-mail: the port, the messages Secretum sends, and two adapters.

Secretum mails only what lets a person reach their account — an invitation, the confirmation
link of a self-registration — and never health data: no diagnosis, no record, no name of a
practitioner or of a care relationship. A message holds a one-time link (its token is the
secret, valid until ``expires_at``) and says who sends it and until when the link works.

* :class:`Mailer` — the port: ``send(message)``; raises :class:`MailError` when the message
  could not be handed over (the caller decides what the person is told).
* :class:`~secretum.mail.outbox.OutboxMailer` — the embedded default: each message becomes an
  ``.eml`` file (owner-only) in ``<data_dir>/outbox``, for a development machine or for a relay
  that picks files up.
* :class:`~secretum.mail.smtp.SmtpMailer` — an SMTP relay over TLS 1.3 only (implicit TLS or
  STARTTLS, certificate and host name checked), with authentication if the URL has a user.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from secretum.config import Settings


class MailError(Exception):
    """The message could not be handed to the mail system (nothing says it was delivered)."""


@dataclass(frozen=True)
class Message:
    """One plain-text e-mail to one address."""

    to: str
    subject: str
    text: str

    def to_email(self, sender: str) -> EmailMessage:
        """As an RFC 5322 message from ``sender`` (UTF-8, with Date and Message-ID)."""
        mail = EmailMessage()
        mail["From"] = sender
        mail["To"] = self.to
        mail["Subject"] = self.subject
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        domain = sender.rpartition("@")[2].strip("> ") or "localhost"
        mail["Message-ID"] = make_msgid(domain=domain)
        mail.set_content(self.text)
        return mail


class Mailer(Protocol):
    def send(self, message: Message) -> None: ...


def build_mailer(settings: Settings) -> Mailer:
    """The mailer the settings name: SMTP if ``smtp_url`` is set, else the outbox folder."""
    if settings.smtp_url is not None:
        from secretum.mail.smtp import SmtpMailer

        return SmtpMailer.from_url(settings.smtp_url.get_secret_value(), sender=settings.mail_from)
    from secretum.mail.outbox import OutboxMailer

    return OutboxMailer(settings.outbox_dir, sender=settings.mail_from)
