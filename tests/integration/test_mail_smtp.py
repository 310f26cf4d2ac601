"""Mail through a real SMTP relay (aiosmtpd on loopback) over real TLS handshakes.

The relay's certificate comes from a CA made here; the mailer trusts that CA only. What must
hold: implicit TLS and STARTTLS deliver, with authentication; TLS 1.2, a relay without
STARTTLS, an unknown CA and wrong credentials are refused with MailError, and nothing goes out
in clear.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message as EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from secretum.mail import MailError, Message
from secretum.mail.smtp import SmtpMailer
from secretum.pki import (
    create_root_ca,
    generate_leaf_key,
    issue_server_certificate,
    write_certificates_pem,
    write_private_key_pem,
)

NOW = datetime.now(UTC)
SENDER = "Secretum <no-reply@clinic.test>"
MESSAGE = Message("alice@example.test", "Votre compte", "Lien : https://x.test/invite/abc\n")


@dataclass
class Relay:
    """What the relay received: (mail from, recipients, parsed message) per delivery."""

    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    clear_commands: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
    ok = isinstance(auth, LoginPassword) and (auth.login, auth.password) == (b"relay", b"s3cret")
    return AuthResult(success=ok, handled=False)  # (not handled: aiosmtpd answers 535)


@dataclass
class Pki:
    cafile: Path
    certfile: Path
    keyfile: Path
    other_cafile: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("smtp-pki")
    ca, other = create_root_ca(NOW), create_root_ca(NOW, common_name="Other CA")
    key = generate_leaf_key()
    cert = issue_server_certificate(ca, ["localhost", "127.0.0.1"], key.public_key(), NOW)
    return Pki(
        write_certificates_pem(base / "ca.pem", [ca.certificate]),
        write_certificates_pem(base / "relay.pem", [cert]),
        write_private_key_pem(base / "relay.key", key),
        write_certificates_pem(base / "other.pem", [other.certificate]),
    )


def _server_tls(pki: Pki, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.certfile, pki.keyfile)
    if maximum is not None:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = maximum
    return ctx


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def relay_factory() -> Iterator[Any]:
    started: list[Controller] = []

    def start(*, implicit: ssl.SSLContext | None = None, starttls: ssl.SSLContext | None = None):
        relay, port = Relay(), _port()
        # (aiosmtpd cannot see implicit TLS, which wraps it: it would hide AUTH; aio-libs/
        # aiosmtpd#281. With STARTTLS it refuses AUTH before the handshake.)
        kwargs: dict[str, Any] = {
            "authenticator": _authenticator,
            "auth_require_tls": implicit is None,
        }
        if starttls is not None:
            kwargs |= {"tls_context": starttls, "require_starttls": True}
        controller = Controller(
            relay, hostname="127.0.0.1", port=port, ssl_context=implicit, **kwargs
        )
        controller.start()
        started.append(controller)
        return relay, port

    yield start
    for controller in started:
        controller.stop()


def _mailer(scheme: str, port: int, cafile: Path, user: str = "relay:s3cret") -> SmtpMailer:
    url = f"{scheme}://{user}@localhost:{port}"
    return SmtpMailer.from_url(url, sender=SENDER, cafile=str(cafile))


def test_implicit_tls_delivers_with_authentication(pki: Pki, relay_factory: Any) -> None:
    relay, port = relay_factory(implicit=_server_tls(pki))
    _mailer("smtps", port, pki.cafile).send(MESSAGE)
    [(sender, rcpts, message)] = relay.received
    assert sender == "no-reply@clinic.test" and rcpts == ["alice@example.test"]
    assert message["Subject"] == "Votre compte" and message["Message-ID"]
    assert "https://x.test/invite/abc" in message.get_payload(decode=True).decode()


def test_starttls_delivers(pki: Pki, relay_factory: Any) -> None:
    relay, port = relay_factory(starttls=_server_tls(pki))
    _mailer("smtp", port, pki.cafile).send(MESSAGE)
    assert len(relay.received) == 1


def test_a_tls_1_2_relay_is_refused(pki: Pki, relay_factory: Any) -> None:
    relay, port = relay_factory(implicit=_server_tls(pki, maximum=ssl.TLSVersion.TLSv1_2))
    with pytest.raises(MailError):
        _mailer("smtps", port, pki.cafile).send(MESSAGE)
    relay, port = relay_factory(starttls=_server_tls(pki, maximum=ssl.TLSVersion.TLSv1_2))
    with pytest.raises(MailError):
        _mailer("smtp", port, pki.cafile).send(MESSAGE)
    assert relay.received == []


def test_a_relay_without_starttls_gets_nothing_in_clear(pki: Pki, relay_factory: Any) -> None:
    relay, port = relay_factory()  # plain SMTP, no STARTTLS offered
    with pytest.raises(MailError, match="STARTTLS"):
        _mailer("smtp", port, pki.cafile).send(MESSAGE)
    assert relay.received == []


def test_an_unknown_certificate_authority_is_refused(pki: Pki, relay_factory: Any) -> None:
    relay, port = relay_factory(implicit=_server_tls(pki))
    with pytest.raises(MailError):
        _mailer("smtps", port, pki.other_cafile).send(MESSAGE)
    assert relay.received == []


def test_wrong_credentials_are_refused_without_saying_them(pki: Pki, relay_factory: Any) -> None:
    relay, port = relay_factory(implicit=_server_tls(pki))
    with pytest.raises(MailError) as refused:
        _mailer("smtps", port, pki.cafile, user="relay:wrong-password").send(MESSAGE)
    assert "wrong-password" not in str(refused.value) and "alice" not in str(refused.value)
    assert relay.received == []


def test_the_url_must_name_an_smtp_relay() -> None:
    for url in ("http://host", "smtp://", "ftp://user@host:21"):
        with pytest.raises(ValueError):
            SmtpMailer.from_url(url, sender=SENDER)
    mailer = SmtpMailer.from_url("smtp://u%40x:p%3Aw@relay.test", sender=SENDER)
    assert (mailer.host, mailer.port, mailer.implicit_tls) == ("relay.test", 587, False)
    assert SmtpMailer.from_url("smtps://relay.test", sender=SENDER).port == 465
