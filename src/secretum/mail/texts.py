"""The messages Secretum sends, in French then English, and nothing about health.

They name neither a role (being invited as a *patient* of a clinic is already health data)
nor a practitioner: only the platform's address, the one-time link and until when it works
(in the clinic's time zone, named beside the time: a message is read out of context).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from secretum.localtime import labelled
from secretum.mail import Message


def invitation(
    to: str, link: str, expires_at: datetime, platform_url: str, tz: ZoneInfo
) -> Message:
    """An administrator invited ``to``: choose a password through ``link``."""
    until, until_en = labelled(expires_at, "fr", tz), labelled(expires_at, "en", tz)
    text = f"""Bonjour,

Un compte Secretum vous attend sur {platform_url}.
Pour le créer, ouvrez ce lien et choisissez votre mot de passe :

{link}

Ce lien ne sert qu'une fois et expire le {until}. Si vous n'attendiez pas ce message,
ignorez-le : aucun compte ne sera activé.

---

Hello,

A Secretum account is waiting for you at {platform_url}.
To create it, open this link and choose your password:

{link}

This link works once and expires on {until_en}. If you did not expect this message, ignore it:
no account will be activated.
"""
    return Message(to, "Votre compte Secretum / Your Secretum account", text)


def registration(
    to: str, link: str, expires_at: datetime, platform_url: str, tz: ZoneInfo
) -> Message:
    """Someone asked for an account with the address ``to``: confirm it through ``link``."""
    until, until_en = labelled(expires_at, "fr", tz), labelled(expires_at, "en", tz)
    text = f"""Bonjour,

Une demande de compte Secretum a été faite avec cette adresse sur {platform_url}.
Pour la confirmer, ouvrez ce lien et choisissez votre mot de passe :

{link}

Ce lien ne sert qu'une fois et expire le {until}. Si vous n'êtes pas à l'origine de cette
demande, ignorez ce message : aucun compte ne sera activé.

---

Hello,

An account was requested with this address at {platform_url}.
To confirm it, open this link and choose your password:

{link}

This link works once and expires on {until_en}. If you did not ask for it, ignore this message:
no account will be activated.
"""
    return Message(to, "Confirmez votre compte Secretum / Confirm your Secretum account", text)


def already_registered(to: str, platform_url: str) -> Message:
    """Someone asked for an account with ``to``, which has one: say so to that address only
    (the registration page answers the same in every case)."""
    text = f"""Bonjour,

Une demande de compte Secretum a été faite avec cette adresse sur {platform_url},
qui a déjà un compte. Connectez-vous sur {platform_url}/sign-in ; si vous avez perdu
l'accès, adressez-vous à votre établissement. Si vous n'êtes pas à l'origine de cette
demande, ignorez ce message.

---

Hello,

An account was requested with this address at {platform_url}, which already has one.
Sign in at {platform_url}/sign-in; if you lost access, ask your practice. If you did not
ask for it, ignore this message.
"""
    return Message(to, "Votre compte Secretum / Your Secretum account", text)


def consent_recorded(to: str, platform_url: str) -> Message:
    """A practitioner recorded a consent on the patient's behalf (a paper form): say only that
    something changed in the account, never what, by whom, or for which care."""
    text = f"""Bonjour,

Un consentement a été enregistré pour vous sur {platform_url}, à partir d'un formulaire papier.
Connectez-vous pour le consulter. Si vous n'avez pas signé ce formulaire, vous pouvez retirer
ce consentement depuis votre compte.

---

Hello,

A consent was recorded on your behalf at {platform_url}, from a paper form.
Sign in to see it. If you did not sign this form, you can withdraw the consent from your
account.
"""
    return Message(to, "Votre compte Secretum / Your Secretum account", text)


# -- the agenda: an appointment booked, moved, cancelled, coming -------------------------------
# Only that there is an appointment and when (in the clinic's zone, named): no practitioner, no
# specialty, no reason, no modality. "Sign in to see it" is the rest of the message.


def _appointment_message(to: str, platform_url: str, fr: str, en: str, subject: str) -> Message:
    text = f"""Bonjour,

{fr}
Connectez-vous sur {platform_url} pour le voir.

---

Hello,

{en}
Sign in at {platform_url} to see it.
"""
    return Message(to, subject, text)


_SUBJECT = "Votre rendez-vous Secretum / Your Secretum appointment"


def appointment_booked(to: str, at: datetime, platform_url: str, tz: ZoneInfo) -> Message:
    """An appointment was booked for ``at``."""
    return _appointment_message(
        to,
        platform_url,
        f"Vous avez un rendez-vous le {labelled(at, 'fr', tz)}.",
        f"You have an appointment on {labelled(at, 'en', tz)}.",
        _SUBJECT,
    )


def appointment_moved(
    to: str, was: datetime, at: datetime, platform_url: str, tz: ZoneInfo
) -> Message:
    """An appointment at ``was`` now takes place at ``at``."""
    return _appointment_message(
        to,
        platform_url,
        f"Votre rendez-vous du {labelled(was, 'fr', tz)} a été déplacé au "
        f"{labelled(at, 'fr', tz)}.",
        f"Your appointment of {labelled(was, 'en', tz)} was moved to {labelled(at, 'en', tz)}.",
        _SUBJECT,
    )


def appointment_cancelled(to: str, was: datetime, platform_url: str, tz: ZoneInfo) -> Message:
    """The appointment at ``was`` was cancelled."""
    return _appointment_message(
        to,
        platform_url,
        f"Votre rendez-vous du {labelled(was, 'fr', tz)} a été annulé.",
        f"Your appointment of {labelled(was, 'en', tz)} was cancelled.",
        _SUBJECT,
    )


def appointment_reminder(to: str, at: datetime, platform_url: str, tz: ZoneInfo) -> Message:
    """A reminder: an appointment at ``at`` is coming."""
    return _appointment_message(
        to,
        platform_url,
        f"Rappel : vous avez un rendez-vous le {labelled(at, 'fr', tz)}.",
        f"Reminder: you have an appointment on {labelled(at, 'en', tz)}.",
        "Rappel de rendez-vous Secretum / Secretum appointment reminder",
    )
