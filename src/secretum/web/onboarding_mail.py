"""The e-mails of onboarding, sent from the pages that start it (web layer: links are ours).

Invitation (administrators) and self-registration hand the one-time link to the mail port
(:mod:`secretum.mail`). A message that cannot be handed over is logged (what failed, never
the address) and the caller is told: the administrator then hands the link over by other
means; a registering patient sees the same page as always (it says nothing of addresses).
"""

from __future__ import annotations

from fastapi import Request

from secretum.identity.service_accounts import Invitation
from secretum.logs import get_logger
from secretum.mail import MailError, Message, texts
from secretum.web.deps import platform
from secretum.web.templating import clinic_zone

_log = get_logger("secretum.web.mail")


def invitation_link(request: Request, token: str) -> str:
    return f"{platform(request).settings.base_url}/invite/{token}"


def _send(request: Request, message: Message, kind: str) -> bool:
    try:
        platform(request).services.mailer.send(message)
    except MailError as exc:
        _log.error("mail.failed", kind=kind, reason=str(exc))
        return False
    _log.info("mail.sent", kind=kind)
    return True


def send_invitation(request: Request, to: str, invitation: Invitation) -> bool:
    """Mail the invitation link to ``to``; False if it could not be sent."""
    assert invitation.token is not None
    base = platform(request).settings.base_url
    link = invitation_link(request, invitation.token)
    message = texts.invitation(to, link, invitation.expires_at, base, clinic_zone(request))
    return _send(request, message, "invitation")


def send_registration(request: Request, to: str, invitation: Invitation) -> None:
    """Mail the confirmation link, or (address already has an account) say so to it."""
    base = platform(request).settings.base_url
    if invitation.token is None:
        _send(request, texts.already_registered(to, base), "registration")
        return
    link = invitation_link(request, invitation.token)
    message = texts.registration(to, link, invitation.expires_at, base, clinic_zone(request))
    _send(request, message, "registration")
