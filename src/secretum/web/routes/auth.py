"""Sign-in and sign-out pages, the passwordless (passkey) ceremony, and the first-start link.

Routes (all public ones check the pre-sign-in double-submit CSRF cookie on POST):

* ``GET /sign-in`` · ``POST /sign-in`` — e-mail and password; then either signed in, or the
  second-factor page (the pending ticket rides in a short-lived ``__Host-`` cookie);
* ``GET|POST /sign-in/second-factor`` — TOTP or recovery code; ``POST
  /sign-in/second-factor/options|verify`` — the security-key ceremony (JSON);
* ``POST /sign-in/passkey/options|verify`` — passwordless sign-in (JSON);
* ``POST /sign-out`` — any session, even one that may only enrol a second factor.

Failures never say whether an e-mail address has an account (the service answers
"invalid-credentials" whatever went wrong). :func:`setup_link` is what ``secretum serve``
prints at first start, while no administrator exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Form, Request, Response
from fastapi.responses import JSONResponse

from secretum.identity.errors import ChallengeExpired, IdentityError, SetupClosed
from secretum.identity.service_signin import SecondFactorRequired
from secretum.web import admin_settings
from secretum.web.authflow import (
    MaybeAnySession,
    after_sign_in,
    ceremony_json,
    clear_pending_cookie,
    identity,
    json_problem,
    land,
    problem,
    public_page,
    read_pending,
    redirect,
    safe_next,
    set_pending_cookie,
    trust_cookie,
)
from secretum.web.deps import (
    DEVICE_COOKIE,
    AnonymousCSRF,
    clear_session_cookie,
    client_address,
    now,
    platform,
)

if TYPE_CHECKING:
    from secretum.bootstrap import Platform

router = APIRouter(tags=["sign-in"])


def setup_link(platform: Platform) -> str | None:
    """The one-time link that creates the first administrator, or None once one exists.

    Each call makes a new token (the previous one stops working); the link expires after
    ``IdentitySettings.setup_token_ttl`` (24 h). ``secretum serve`` prints it at start.
    """
    try:
        token = platform.services.identity.accounts.create_setup_token(None, platform.clock())
    except SetupClosed:
        return None
    return f"{platform.settings.base_url}/setup/{token}"


def _sign_in_page(request: Request, next_url: str, **ctx: Any) -> Response:
    return public_page(
        request,
        "auth_sign_in.html",
        next=next_url,
        passkey_verify=f"/sign-in/passkey/verify?next={quote(next_url)}",
        registration_open=admin_settings.current(platform(request)).allow_patient_self_registration,
        **ctx,
    )


@router.get("/sign-in")
async def sign_in_form(
    request: Request, holder: MaybeAnySession, next: str = "/", expired: int = 0
) -> Response:
    """The sign-in page (anyone). Already signed in: straight on."""
    if holder is not None:
        return redirect("/account/mfa" if holder.enrolment_only else safe_next(next))
    found = problem(request, ChallengeExpired()) if expired else None
    return _sign_in_page(request, safe_next(next), problem=found)


@router.post("/sign-in", dependencies=[AnonymousCSRF])
async def sign_in(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=2048)] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Password step (anyone, with the pre-sign-in CSRF cookie)."""
    next_url = safe_next(next)
    admin_settings.current(platform(request))
    try:
        result = identity(request).sign_in.sign_in_password(
            email,
            password,
            now=now(request),
            address=client_address(request),
            device_id=request.cookies.get(DEVICE_COOKIE),
            device_cookie=trust_cookie(request),
        )
    except IdentityError as exc:
        found = problem(request, exc)
        return _sign_in_page(
            request,
            next_url,
            problem=found,
            email=email,
            status_code=found.status,
            headers=found.headers,
        )
    if isinstance(result, SecondFactorRequired):
        response = redirect(f"/sign-in/second-factor?next={quote(next_url)}")
        ttl = max(1, int((result.expires_at - now(request)).total_seconds()))
        set_pending_cookie(response, result.ticket, result.methods, ttl)
        return response
    response = redirect(after_sign_in(result, next_url))
    land(response, result)
    return response


# -- second factor ----------------------------------------------------------------------------


def _second_factor_page(
    request: Request, next_url: str, methods: tuple[str, ...], **ctx: Any
) -> Response:
    return public_page(
        request,
        "auth_second_factor.html",
        methods=methods,
        next=next_url,
        key_verify=f"/sign-in/second-factor/verify?next={quote(next_url)}",
        **ctx,
    )


def _expired(next_url: str) -> Response:
    response = redirect(f"/sign-in?next={quote(next_url)}&expired=1")
    clear_pending_cookie(response)
    return response


@router.get("/sign-in/second-factor")
async def second_factor_form(request: Request, next: str = "/") -> Response:
    """Second-factor page (holder of a pending sign-in cookie)."""
    next_url = safe_next(next)
    pending = read_pending(request)
    if pending is None:
        return redirect(f"/sign-in?next={quote(next_url)}")
    return _second_factor_page(request, next_url, pending[1])


@router.post("/sign-in/second-factor", dependencies=[AnonymousCSRF])
async def second_factor(
    request: Request,
    method: Annotated[str, Form()] = "totp",
    code: Annotated[str, Form(max_length=64)] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Complete a pending sign-in with a TOTP or a recovery code."""
    next_url = safe_next(next)
    pending = read_pending(request)
    if pending is None:
        return redirect(f"/sign-in?next={quote(next_url)}")
    ticket, methods = pending
    svc = identity(request)
    kwargs: dict[str, Any] = {
        "now": now(request),
        "address": client_address(request),
        "device_id": request.cookies.get(DEVICE_COOKIE),
        "device_cookie": trust_cookie(request),
    }
    code = "".join(code.split())
    try:
        if method == "recovery-code":
            result = svc.sign_in.complete_sign_in_recovery_code(ticket, code, **kwargs)
        else:
            result = svc.sign_in.complete_sign_in_totp(ticket, code, **kwargs)
    except ChallengeExpired:
        return _expired(next_url)
    except IdentityError as exc:
        found = problem(request, exc)
        return _second_factor_page(
            request,
            next_url,
            methods,
            problem=found,
            method=method,
            status_code=found.status,
            headers=found.headers,
        )
    response = redirect(after_sign_in(result, next_url))
    land(response, result)
    return response


@router.post("/sign-in/second-factor/options", dependencies=[AnonymousCSRF])
async def second_factor_options(request: Request) -> JSONResponse:
    """WebAuthn request options for the security-key step of the pending sign-in."""
    pending = read_pending(request)
    try:
        if pending is None:
            raise ChallengeExpired()
        start = identity(request).sign_in.second_factor_options(pending[0], now=now(request))
    except IdentityError as exc:
        return json_problem(request, exc)
    return JSONResponse(ceremony_json(start))


@router.post("/sign-in/second-factor/verify", dependencies=[AnonymousCSRF])
async def second_factor_verify(
    request: Request,
    ceremony: Annotated[str, Body(max_length=200)],
    credential: Annotated[dict[str, Any], Body()],
    next: str = "/",
) -> JSONResponse:
    """Complete the pending sign-in with a security key (or passkey) assertion."""
    pending = read_pending(request)
    try:
        if pending is None:
            raise ChallengeExpired()
        result = identity(request).sign_in.complete_sign_in_security_key(
            pending[0],
            ceremony,
            credential,
            now=now(request),
            address=client_address(request),
            device_id=request.cookies.get(DEVICE_COOKIE),
            device_cookie=trust_cookie(request),
        )
    except IdentityError as exc:
        return json_problem(request, exc)
    response = JSONResponse({"next": after_sign_in(result, next)})
    land(response, result)
    return response


# -- passkeys ---------------------------------------------------------------------------------


@router.post("/sign-in/passkey/options", dependencies=[AnonymousCSRF])
async def passkey_options(request: Request) -> JSONResponse:
    """Options for a passwordless sign-in with a discoverable credential (anyone)."""
    try:
        start = identity(request).sign_in.begin_passkey_sign_in(now=now(request))
    except IdentityError as exc:
        return json_problem(request, exc)
    return JSONResponse(ceremony_json(start))


@router.post("/sign-in/passkey/verify", dependencies=[AnonymousCSRF])
async def passkey_verify(
    request: Request,
    ceremony: Annotated[str, Body(max_length=200)],
    credential: Annotated[dict[str, Any], Body()],
    next: str = "/",
) -> JSONResponse:
    """Passwordless sign-in: the assertion of a registered passkey (anyone)."""
    admin_settings.current(platform(request))
    try:
        result = identity(request).sign_in.complete_passkey_sign_in(
            ceremony,
            credential,
            now=now(request),
            address=client_address(request),
            device_id=request.cookies.get(DEVICE_COOKIE),
            device_cookie=trust_cookie(request),
        )
    except IdentityError as exc:
        return json_problem(request, exc)
    response = JSONResponse({"next": after_sign_in(result, next)})
    land(response, result)
    return response


# -- sign-out ---------------------------------------------------------------------------------


@router.post("/sign-out")
async def sign_out(request: Request, holder: MaybeAnySession) -> Response:
    """End this session (its holder, CSRF checked); without a session, just go to sign-in."""
    if holder is not None:
        identity(request).sessions.sign_out(
            holder.session_id, now=now(request), address=holder.address
        )
    response = redirect("/sign-in")
    clear_session_cookie(response)
    return response
