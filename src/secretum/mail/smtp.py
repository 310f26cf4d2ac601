"""Mail through an SMTP relay, over TLS 1.3 only, with the standard library's ``smtplib``.

The relay is named by a URL: ``smtps://user:password@host:465`` (TLS from the first byte) or
``smtp://user:password@host:587`` (STARTTLS, required: a relay that does not offer it is
refused, never used in clear). The relay's certificate must chain to the system's trust store
(or to ``cafile``) and name the host; TLS below 1.3 is refused, as everywhere in Secretum.
"""

from __future__ import annotations

import smtplib
import ssl
from urllib.parse import unquote, urlsplit

from secretum.mail import MailError, Message

TIMEOUT_SECONDS = 15.0


class SmtpMailer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        implicit_tls: bool,
        username: str | None = None,
        password: str | None = None,
        cafile: str | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.sender = sender
        self.implicit_tls = implicit_tls
        self._username, self._password = username, password
        self._tls = ssl.create_default_context(cafile=cafile)
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_3

    @classmethod
    def from_url(cls, url: str, *, sender: str, cafile: str | None = None) -> SmtpMailer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("the SMTP URL must look like smtps://user:pass@host:465")
        implicit = parts.scheme == "smtps"
        return cls(
            parts.hostname,
            parts.port or (465 if implicit else 587),
            sender=sender,
            implicit_tls=implicit,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            cafile=cafile,
        )

    def send(self, message: Message) -> None:
        mail = message.to_email(self.sender)
        try:
            with self._connect() as smtp:
                if self._username is not None:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            # (never the message, the address or the credentials: only what failed)
            raise MailError(f"the mail relay refused the message ({type(exc).__name__})") from exc

    def _connect(self) -> smtplib.SMTP:
        if self.implicit_tls:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=TIMEOUT_SECONDS, context=self._tls
            )
        smtp = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_SECONDS)
        try:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise MailError("the mail relay does not offer STARTTLS: not sent in clear")
            smtp.starttls(context=self._tls)
            smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        return smtp
