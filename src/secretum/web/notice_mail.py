"""E-mails that tell a patient to sign in because something changed in their account.

The message says nothing about health (no purpose, no practitioner, no care): only that a
consent was recorded on their behalf (:func:`secretum.mail.texts.consent_recorded`). The
address is opened from the account (sealed with the patient's key). A message that cannot be
handed over is logged (what failed, never the address); the notice in the account remains.
"""

from __future__ import annotations

from secretum.bootstrap import Platform
from secretum.logs import get_logger
from secretum.mail import MailError, texts

_log = get_logger("secretum.web.mail")


def send_consent_recorded(platform: Platform, patient_id: str) -> bool:
    """Mail the patient that a consent was recorded for them; False if it was not sent."""
    identity = platform.services.identity
    with platform.engine.connect() as conn:
        row = identity.core.accounts.by_id(conn, patient_id)
    if row is None:  # a patient record without an account: the notice is all there is
        return False
    to = identity.core.accounts.open_personal(row).email
    try:
        platform.services.mailer.send(texts.consent_recorded(to, platform.settings.base_url))
    except MailError as exc:
        _log.error("mail.failed", kind="consent-recorded", reason=str(exc))
        return False
    _log.info("mail.sent", kind="consent-recorded")
    return True
