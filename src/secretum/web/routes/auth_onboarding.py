"""Getting an account: first administrator set-up, invitation acceptance, self-registration.

Routes (public; POSTs check the pre-sign-in double-submit CSRF cookie):

* ``GET|POST /setup/{token}`` — create the first administrator with the one-time link that
  ``secretum serve`` prints (:func:`secretum.web.routes.auth.setup_link`);
* ``GET|POST /invite/{token}`` — an invited person (or a self-registered patient following
  the confirmation link) chooses a password;
* ``GET|POST /register`` — a patient asks for an account, if the platform allows it.

Self-registration answers with the same page whatever happens (new address, known address,
malformed address that still looks like one), and logs nothing: the form must not tell which
addresses have accounts. The confirmation link goes by e-mail (:mod:`secretum.mail`), to the
address only: showing it on screen would let anyone create accounts for addresses they do not
own. An address that already has an account is told so by e-mail, not on the page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from secretum.identity.errors import IdentityError, InvalidInput, RegistrationClosed
from secretum.web import admin_settings
from secretum.web.authflow import Problem, identity, problem, public_page
from secretum.web.deps import AnonymousCSRF, client_address, now, platform
from secretum.web.i18n import translate
from secretum.web.onboarding_mail import send_registration
from secretum.web.templating import language

router = APIRouter(tags=["onboarding"])

Text = Annotated[str, Form(max_length=320)]
Secret = Annotated[str, Form(max_length=2048)]


def _mismatch(request: Request) -> Problem:
    text = translate(language(request), "auth.err.password-mismatch")
    return Problem("password-mismatch", text, 400, field="password_confirm")


def _done(request: Request, title: str, text: str, link: str | None = None) -> Response:
    return public_page(request, "auth_message.html", title=title, text=text, link=link)


# -- first administrator ----------------------------------------------------------------------


def _dead_link(request: Request, exc: IdentityError) -> Response:
    """A link that cannot work (unknown, expired, used) is said so at once, not after the
    visitor has chosen a password."""
    found = problem(request, exc)
    return public_page(
        request,
        "auth_message.html",
        status_code=found.status,
        title="auth.link.dead",
        message=found.text,
        link="/sign-in",
    )


@router.get("/setup/{token}")
async def setup_form(request: Request, token: str) -> Response:
    """The first-administrator form (anyone holding a live link; checked again on POST)."""
    try:
        identity(request).accounts.check_setup_link(token, now=now(request))
    except IdentityError as exc:
        return _dead_link(request, exc)
    return public_page(request, "auth_setup.html", token=token)


@router.post("/setup/{token}", dependencies=[AnonymousCSRF])
async def setup(
    request: Request,
    token: str,
    display_name: Text = "",
    email: Text = "",
    password: Secret = "",
    password_confirm: Secret = "",
) -> Response:
    """Create the first administrator (one service call: token, strength, audit inside)."""
    form = {"display_name": display_name, "email": email}
    if password != password_confirm:
        found = _mismatch(request)
        return public_page(
            request, "auth_setup.html", status_code=400, token=token, problem=found, form=form
        )
    try:
        identity(request).accounts.complete_setup(
            token,
            email=email,
            display_name=display_name,
            password=password,
            now=now(request),
            address=client_address(request),
        )
    except IdentityError as exc:
        found = problem(request, exc)
        return public_page(
            request,
            "auth_setup.html",
            status_code=found.status,
            token=token,
            problem=found,
            form=form,
        )
    return _done(request, "setup.done.title", "setup.done.text", "/sign-in")


# -- invitations ------------------------------------------------------------------------------


@router.get("/invite/{token}")
async def invitation_form(request: Request, token: str) -> Response:
    """Choose a password (anyone holding a live link; checked again on POST)."""
    try:
        identity(request).accounts.check_invitation_link(token, now=now(request))
    except IdentityError as exc:
        return _dead_link(request, exc)
    return public_page(request, "auth_invite.html", token=token)


@router.post("/invite/{token}", dependencies=[AnonymousCSRF])
async def accept_invitation(
    request: Request, token: str, password: Secret = "", password_confirm: Secret = ""
) -> Response:
    """Set the password and activate the account; then the person signs in."""
    if password != password_confirm:
        found = _mismatch(request)
        return public_page(request, "auth_invite.html", status_code=400, token=token, problem=found)
    try:
        identity(request).accounts.accept_invitation(
            token, password=password, now=now(request), address=client_address(request)
        )
    except IdentityError as exc:
        found = problem(request, exc)
        return public_page(
            request, "auth_invite.html", status_code=found.status, token=token, problem=found
        )
    return _done(request, "invite.done.title", "invite.done.text", "/sign-in")


# -- patient self-registration ----------------------------------------------------------------


@router.get("/register")
async def registration_form(request: Request) -> Response:
    """Ask for a patient account (anyone), when the platform allows it."""
    settings = admin_settings.current(platform(request))
    if not settings.allow_patient_self_registration:
        found = problem(request, RegistrationClosed())
        return public_page(request, "auth_register.html", status_code=403, closed=found)
    return public_page(request, "auth_register.html")


@router.post("/register", dependencies=[AnonymousCSRF])
async def register(request: Request, display_name: Text = "", email: Text = "") -> Response:
    """One answer for every address (see the module docstring); only a closed registration
    or a field that is not an e-mail address / a name is said so."""
    admin_settings.current(platform(request))
    try:
        asked = identity(request).accounts.register_patient(
            email=email,
            display_name=display_name,
            now=now(request),
            address=client_address(request),
        )
    except RegistrationClosed as exc:
        found = problem(request, exc)
        return public_page(request, "auth_register.html", status_code=403, closed=found)
    except InvalidInput as exc:
        found = problem(request, exc)
        form = {"display_name": display_name, "email": email}
        return public_page(request, "auth_register.html", status_code=400, problem=found, form=form)
    except IdentityError:  # e.g. a concurrent registration of the same address: same answer
        return _done(request, "register.done.title", "register.done.text")
    # The confirmation link (or, for an address with an account, a word saying so) goes by
    # e-mail only: nothing on this page depends on the address.
    assert asked.email is not None
    send_registration(request, asked.email, asked)
    return _done(request, "register.done.title", "register.done.text")
