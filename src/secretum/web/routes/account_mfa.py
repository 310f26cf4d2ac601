"""Second factors: enrolment (passkey, security key, authenticator app), recovery codes shown
once, and step-up (a fresh second factor before a sensitive act).

Routes:

* ``GET /account/mfa`` — choose a factor to add (any session, including the enrolment-only
  session of a user who must set up MFA before anything else);
* ``POST /account/credentials/options|verify`` — WebAuthn registration (JSON, CSRF header);
* ``POST /account/totp/setup`` · ``GET /account/totp/qr.svg`` · ``POST /account/totp/confirm``;
* ``GET /account/recovery-codes`` — the codes issued by a WebAuthn enrolment, once;
* ``GET /account/step-up`` · ``POST /account/step-up/options|verify`` (JSON) ·
  ``POST /account/step-up/totp`` · ``POST /account/step-up/password`` (accounts without a
  second factor where MFA is optional) · ``POST /account/step-up/again`` (sign in again).

A call that strengthens the session (first factor enrolled, step-up) rotates its id: the new
id is set as the cookie before the next page.
"""

from __future__ import annotations

import io
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Form, Request, Response
from fastapi.responses import JSONResponse

from secretum.identity.errors import IdentityError, InvalidInput, StepUpRequired
from secretum.identity.model import CredentialKind
from secretum.web.account_facts import factor_summary, pending_totp
from secretum.web.authflow import (
    STASH,
    AnySession,
    FullSession,
    Holder,
    Problem,
    ceremony_json,
    identity,
    json_problem,
    page,
    problem,
    redirect,
    safe_next,
    step_up_redirect,
)
from secretum.web.deps import clear_session_cookie, now, set_session_cookie

router = APIRouter(prefix="/account", tags=["mfa"])

Code = Annotated[str, Form(max_length=64)]


def _mfa_page(request: Request, holder: Holder, **ctx: Any) -> Response:
    factors = factor_summary(identity(request), holder.session_id, now=now(request))
    return page(
        request,
        "account_mfa.html",
        enrolling=holder.enrolment_only,
        factors=factors,
        **ctx,
    )


@router.get("/mfa")
async def mfa(request: Request, holder: AnySession) -> Response:
    """Add a second factor (the session's user)."""
    return _mfa_page(request, holder)


# -- WebAuthn registration --------------------------------------------------------------------


@router.post("/credentials/options")
async def credential_options(
    request: Request, holder: AnySession, body: Annotated[dict[str, Any], Body()]
) -> JSONResponse:
    """Creation options for a new passkey (``kind=passkey``) or security key."""
    try:
        try:
            kind = CredentialKind(str(body.get("kind", "")))
        except ValueError:
            raise InvalidInput("kind", "passkey or security-key") from None
        start = identity(request).factors.begin_credential_registration(
            holder.session_id, kind, now=now(request)
        )
    except IdentityError as exc:
        return json_problem(request, exc)
    return JSONResponse(ceremony_json(start))


@router.post("/credentials/verify")
async def credential_verify(
    request: Request,
    holder: AnySession,
    ceremony: Annotated[str, Body(max_length=200)],
    credential: Annotated[dict[str, Any], Body()],
    name: Annotated[str | None, Body(max_length=200)] = None,
) -> JSONResponse:
    """Store the new credential (the session's user); recovery codes after the first."""
    try:
        enrolled = identity(request).factors.complete_credential_registration(
            holder.session_id,
            ceremony,
            credential,
            name=name or "",
            now=now(request),
            address=holder.address,
        )
    except IdentityError as exc:
        return json_problem(request, exc)
    target = "/account/security?done=credential-added"
    if enrolled.session is not None and enrolled.recovery_codes:
        key = STASH.put(enrolled.session.session.ref, enrolled.recovery_codes)
        target = f"/account/recovery-codes?k={key}"
    response = JSONResponse({"next": target})
    if enrolled.session is not None:
        set_session_cookie(response, enrolled.session.session_id)
    return response


# -- TOTP ------------------------------------------------------------------------------------


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@router.post("/totp/setup")
async def totp_setup(request: Request, holder: AnySession) -> Response:
    """A new authenticator-app secret: QR code, secret for manual entry, confirmation."""
    try:
        setup = identity(request).factors.begin_totp_setup(holder.session_id, now=now(request))
    except StepUpRequired:
        return step_up_redirect("/account/mfa")
    except IdentityError as exc:
        return _mfa_page(request, holder, problem=problem(request, exc))
    return page(request, "account_totp.html", secret=_grouped(setup.secret))


@router.get("/totp/qr.svg")
async def totp_qr(request: Request, holder: AnySession) -> Response:
    """The QR code of the secret being set up (SVG, never cached)."""
    import segno

    found = pending_totp(identity(request), holder.session_id, now=now(request))
    if found is None:
        return Response(status_code=404, headers={"Cache-Control": "no-store"})
    out = io.BytesIO()
    segno.make(found.uri, error="m").save(
        out, kind="svg", scale=5, border=4, light="#fff", xmldecl=False
    )
    return Response(
        out.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "no-store"}
    )


@router.post("/totp/confirm")
async def totp_confirm(request: Request, holder: AnySession, code: Code = "") -> Response:
    """Activate the new secret once a code from the app matches it."""
    svc = identity(request)
    try:
        enrolled = svc.factors.confirm_totp(
            holder.session_id, "".join(code.split()), now=now(request), address=holder.address
        )
    except StepUpRequired:
        return step_up_redirect("/account/mfa")
    except IdentityError as exc:
        found = problem(request, exc)
        setup = pending_totp(svc, holder.session_id, now=now(request))
        if setup is None:
            return _mfa_page(request, holder, problem=found)
        return page(
            request,
            "account_totp.html",
            status_code=found.status,
            headers=found.headers,
            secret=_grouped(setup.secret),
            problem=found,
        )
    if enrolled.recovery_codes:
        response = page(
            request, "account_recovery_codes.html", codes=enrolled.recovery_codes, next_url="/"
        )
    else:
        response = redirect("/account/security?done=totp-added")
    if enrolled.session is not None:
        set_session_cookie(response, enrolled.session.session_id)
    return response


@router.get("/recovery-codes")
async def recovery_codes(request: Request, caller: FullSession, k: str = "") -> Response:
    """The recovery codes of a WebAuthn enrolment, once; else an offer to make new ones."""
    codes = STASH.take(k, caller.session.ref) if k else None
    return page(request, "account_recovery_codes.html", codes=codes, next_url="/")


# -- step-up ----------------------------------------------------------------------------------


def _step_up_page(
    request: Request, caller: FullSession, target: str, found: Problem | None = None
) -> Response:
    """The step-up page: the factors the account has; the password when it has none and may
    have none (with a link to add a factor); "sign in again" only where it helps (a sign-in
    with a factor is a strong one; a password-only sign-in is not)."""
    svc = identity(request)
    when = now(request)
    return page(
        request,
        "account_step_up.html",
        status_code=found.status if found else 200,
        headers=found.headers if found else None,
        problem=found,
        factors=factor_summary(svc, caller.session_id, now=when),
        password_ok=svc.step_up.password_step_up_allowed(caller.session_id, now=when),
        next=target,
        verify_url=f"/account/step-up/verify?next={quote(target)}",
    )


@router.get("/step-up")
async def step_up_form(request: Request, caller: FullSession, next: str = "/") -> Response:
    """Prove a second factor (or, without one, the password) again before a sensitive act."""
    return _step_up_page(request, caller, safe_next(next))


@router.post("/step-up/options")
async def step_up_options(request: Request, caller: FullSession) -> JSONResponse:
    """WebAuthn options for a step-up (user verification required)."""
    try:
        start = identity(request).step_up.begin_step_up(caller.session_id, now=now(request))
    except IdentityError as exc:
        return json_problem(request, exc)
    return JSONResponse(ceremony_json(start))


@router.post("/step-up/verify")
async def step_up_verify(
    request: Request,
    caller: FullSession,
    ceremony: Annotated[str, Body(max_length=200)],
    credential: Annotated[dict[str, Any], Body()],
    next: str = "/",
) -> JSONResponse:
    """A fresh WebAuthn user verification: the session is strengthened (new id)."""
    try:
        rotated = identity(request).step_up.complete_step_up_webauthn(
            caller.session_id, ceremony, credential, now=now(request), address=caller.address
        )
    except IdentityError as exc:
        return json_problem(request, exc)
    response = JSONResponse({"next": safe_next(next)})
    set_session_cookie(response, rotated.session_id)
    return response


@router.post("/step-up/totp")
async def step_up_totp(
    request: Request,
    caller: FullSession,
    code: Code = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    """A fresh authenticator-app code: the session is strengthened (new id)."""
    target = safe_next(next)
    try:
        rotated = identity(request).step_up.step_up_totp(
            caller.session_id, "".join(code.split()), now=now(request), address=caller.address
        )
    except IdentityError as exc:
        return _step_up_page(request, caller, target, problem(request, exc))
    response = redirect(target)
    set_session_cookie(response, rotated.session_id)
    return response


@router.post("/step-up/password")
async def step_up_password(
    request: Request,
    caller: FullSession,
    password: Annotated[str, Form(max_length=2048)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    """The password again, for an account without a second factor (MFA optional for it):
    the session is strengthened (new id). The service refuses every other account."""
    target = safe_next(next)
    try:
        rotated = identity(request).step_up.step_up_password(
            caller.session_id, password, now=now(request), address=caller.address
        )
    except IdentityError as exc:
        return _step_up_page(request, caller, target, problem(request, exc))
    response = redirect(target)
    set_session_cookie(response, rotated.session_id)
    return response


@router.post("/step-up/again")
async def sign_in_again(
    request: Request, caller: FullSession, next: Annotated[str, Form(max_length=2048)] = "/"
) -> Response:
    """Sign out and sign in again (for accounts without a factor that can step up)."""
    identity(request).sessions.sign_out(caller.session_id, now=now(request), address=caller.address)
    response = redirect(f"/sign-in?next={quote(safe_next(next))}")
    clear_session_cookie(response)
    return response
