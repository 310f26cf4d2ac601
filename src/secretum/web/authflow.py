"""What the sign-in, account and administration pages share (web layer, no domain logic).

* :data:`AnySession` / :data:`MaybeAnySession` — like :data:`~secretum.web.deps.SignedIn`, but
  also accept an *enrolment-only* session (MFA required, nothing enrolled yet): the pages that
  enrol a second factor, sign out and the home redirect need it. CSRF is checked the same way.
* the pending sign-in cookie (password proved, second factor awaited), short-lived;
* the trusted-device cookie (:data:`TRUST_COOKIE`): the signed device tokens of the accounts
  that completed a sign-in in this browser (:mod:`secretum.identity.devices`), so that an
  attacker's failures elsewhere never lock this browser out;
* :func:`problem` — an :class:`~secretum.identity.errors.IdentityError` as a translated message,
  its details (zxcvbn advice) and an HTTP status; never says whether an e-mail has an account;
* :func:`safe_next` — only local paths are followed after sign-in (no open redirect);
* :class:`CodeStash` — recovery codes issued by a WebAuthn registration (a JSON call), kept
  in this process for one display on the next page.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from secretum.access.model import Role
from secretum.identity.errors import (
    IdentityError,
    InvalidInput,
    Throttled,
    WeakPassword,
)
from secretum.identity.model import Session
from secretum.identity.service import Identity
from secretum.identity.service_base import WebAuthnStart
from secretum.identity.service_signin import SignedIn as SignInResult
from secretum.localtime import labelled
from secretum.web import i18n
from secretum.web.deps import (
    CSRF_COOKIE,
    Caller,
    NotSignedIn,
    _form_token,
    _same,
    anonymous_csrf_token,
    client_address,
    live_session,
    now,
    services,
    set_device_cookie,
    set_session_cookie,
)
from secretum.web.templating import clinic_zone, language, render

PENDING_COOKIE = "__Host-secretum-pending"
TRUST_COOKIE = "__Host-secretum-trust"
TRUST_MAX_AGE = 400 * 24 * 3600  # the longest browsers keep a cookie
STEP_UP_PATH = "/account/step-up"


def identity(request: Request) -> Identity:
    """The identity service of the running platform."""
    return services(request).identity


# -- sessions that may be enrolment-only ------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """The session of this request, possibly limited to enrolling a second factor."""

    session_id: str
    session: Session
    address: str | None

    @property
    def enrolment_only(self) -> bool:
        return self.session.enrolment_only


async def optional_holder(request: Request) -> Holder | None:
    """The live session named by the cookie (CSRF checked on unsafe methods), or None."""
    found = await live_session(request)
    return None if found is None else Holder(*found, client_address(request))


async def require_holder(holder: Annotated[Holder | None, Depends(optional_holder)]) -> Holder:
    if holder is None:
        raise NotSignedIn
    return holder


AnySession = Annotated[Holder, Depends(require_holder)]
MaybeAnySession = Annotated[Holder | None, Depends(optional_holder)]


async def require_full(holder: AnySession) -> Caller:
    """A fully signed-in caller; an enrolment-only session is sent to the MFA set-up."""
    if holder.enrolment_only:
        raise HTTPException(status_code=303, headers={"Location": "/account/mfa"})
    return Caller(holder.session_id, holder.session, holder.session.to_actor(), holder.address)


async def require_admin(caller: Annotated[Caller, Depends(require_full)]) -> Caller:
    """An administrator (the service checks again, with the step-up rule)."""
    if caller.actor.role is not Role.ADMIN:
        raise HTTPException(status_code=403, detail="not for this role")
    return caller


#: Signed in, second factor enrolled where required (same as ``deps.SignedIn``, but an
#: enrolment-only session is redirected to ``/account/mfa`` rather than refused).
FullSession = Annotated[Caller, Depends(require_full)]
Admin = Annotated[Caller, Depends(require_admin)]


async def any_csrf(request: Request, holder: MaybeAnySession) -> Holder | None:
    """For forms shown both before and after sign-in (language): the session's CSRF token
    if signed in, else the pre-sign-in double-submit cookie."""
    if holder is None and not _same(
        await _form_token(request), request.cookies.get(CSRF_COOKIE, "")
    ):
        raise HTTPException(status_code=403, detail="CSRF token missing or invalid")
    return holder


AnyCSRF = Annotated[Holder | None, Depends(any_csrf)]


# -- redirects and cookies --------------------------------------------------------------------


def safe_next(value: str | None, default: str = "/") -> str:
    """``value`` if it is a path on this site (``/x``), else ``default``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 0x20 for c in value):
        return default
    return value


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def step_up_redirect(back_to: str) -> RedirectResponse:
    """To the step-up page, then back to ``back_to``."""
    return redirect(f"{STEP_UP_PATH}?next={quote(safe_next(back_to))}")


def set_pending_cookie(response: Response, ticket: str, methods: tuple[str, ...], ttl: int) -> None:
    value = f"{ticket}.{','.join(methods)}"
    response.set_cookie(
        PENDING_COOKIE, value, secure=True, httponly=True, samesite="strict", path="/", max_age=ttl
    )


def clear_pending_cookie(response: Response) -> None:
    response.delete_cookie(PENDING_COOKIE, secure=True, httponly=True, samesite="strict", path="/")


def read_pending(request: Request) -> tuple[str, tuple[str, ...]] | None:
    """The pending sign-in ticket and its second-factor methods, from the cookie."""
    raw = request.cookies.get(PENDING_COOKIE, "")
    ticket, _, methods = raw.partition(".")
    if not ticket:
        return None
    return ticket, tuple(m for m in methods.split(",") if m)


def trust_cookie(request: Request) -> str | None:
    """The trusted-device cookie the browser sent (the service checks it), if any."""
    return request.cookies.get(TRUST_COOKIE)


def land(response: Response, result: SignInResult) -> None:
    """Set the cookies of a completed sign-in (and renew the trusted-device cookie)."""
    set_session_cookie(response, result.session_id)
    set_device_cookie(response, result.device_id)
    if result.device_cookie:
        response.set_cookie(
            TRUST_COOKIE,
            result.device_cookie,
            secure=True,
            httponly=True,
            samesite="strict",
            path="/",
            max_age=TRUST_MAX_AGE,
        )
    clear_pending_cookie(response)


def after_sign_in(result: SignInResult, next_url: str | None) -> str:
    """Where a completed sign-in goes: MFA set-up first if it is required and missing."""
    if result.session.enrolment_only:
        return "/account/mfa"
    return safe_next(next_url)


# -- errors -----------------------------------------------------------------------------------

_STATUS = {
    "invalid-credentials": 401,
    "unknown-credential": 401,
    "webauthn-refused": 401,
    "user-verification-required": 401,
    "credential-blocked": 401,
    "invalid-code": 401,
    "totp-replayed": 401,
    "challenge-expired": 401,
    "throttled": 429,
    "locked": 429,
    "account-inactive": 403,
    "account-erased": 410,
    "mfa-unavailable": 403,
    "session-expired": 401,
    "mfa-enrolment-required": 403,
    "step-up-required": 403,
    "forbidden": 403,
    "token-invalid": 404,
    "token-expired": 410,
    "token-used": 410,
    "invitation-expired": 410,
    "invitation-used": 410,
    "setup-closed": 410,
    "registration-closed": 403,
    "weak-password": 400,
    "invalid-input": 400,
    "email-unavailable": 409,
    "not-found": 404,
    "no-second-factor": 409,
}


@dataclass(frozen=True)
class Problem:
    """An error as a page shows it: a sentence, details (a list), the field at fault."""

    code: str
    text: str
    status: int
    details: list[str] = field(default_factory=list)
    field: str | None = None
    retry_after: int | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


def feedback_text(lang: str, advice: str) -> str:
    """zxcvbn's advice (English) in the page's language, when we have the translation."""
    key = "zxcvbn:" + advice
    return i18n.catalogue(lang).get(key) or advice


def problem(request: Request, exc: IdentityError) -> Problem:
    """The translated message of an identity error (unknown codes get a generic message)."""
    lang = language(request)
    code = exc.code if exc.code in _STATUS else "identity-error"
    status = _STATUS.get(code, 400)
    if isinstance(exc, Throttled):
        seconds = max(1, int((exc.retry_at - now(request)).total_seconds()) + 1)
        minutes = max(1, -(-seconds // 60))
        until = labelled(exc.retry_at, lang, clinic_zone(request))
        text = i18n.translate(lang, "auth.err." + code, minutes=minutes, time=until)
        return Problem(code, text, status, retry_after=seconds)
    text = i18n.translate(lang, "auth.err." + code)
    if isinstance(exc, WeakPassword):
        details = [feedback_text(lang, f) for f in exc.feedback]
        return Problem(code, text, status, details, "password")
    if isinstance(exc, InvalidInput):
        hint = i18n.catalogue(lang).get("auth.field." + exc.field)
        details = [hint] if hint else []
        return Problem(code, text, status, details, exc.field)
    return Problem(code, text, status)


def json_problem(request: Request, exc: IdentityError) -> JSONResponse:
    """A refused JSON call (WebAuthn ceremonies): ``{"error": message}`` with its status."""
    found = problem(request, exc)
    body: dict[str, Any] = {"error": " ".join([found.text, *found.details])}
    if exc.code == "step-up-required":
        body["step_up"] = STEP_UP_PATH
    return JSONResponse(body, status_code=found.status, headers=found.headers)


def ceremony_json(start: WebAuthnStart) -> dict[str, Any]:
    """The answer webauthn.js expects to an options request."""
    return {"options": json.loads(start.options_json), "ceremony": start.ceremony_id}


# -- recovery codes issued by a JSON call, shown once on the next page ------------------------


class CodeStash:
    """Recovery codes waiting for their one display, keyed by a random id, for 5 minutes.

    In this process only: behind several instances the next page may land elsewhere, and then
    offers to generate a new set (the service allows it: the session was just strengthened).
    """

    TTL = 300.0

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, str, list[str]]] = {}
        self._lock = threading.Lock()

    def put(self, session_ref: str, codes: list[str]) -> str:
        key = secrets.token_urlsafe(16)
        with self._lock:
            cutoff = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if v[0] > cutoff}
            self._items[key] = (cutoff + self.TTL, session_ref, codes)
        return key

    def take(self, key: str, session_ref: str) -> list[str] | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] <= time.monotonic() or item[1] != session_ref:
                return None
            del self._items[key]
        return item[2]


STASH = CodeStash()


# -- pages ------------------------------------------------------------------------------------


def page(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    """Render a page of these areas (``headers`` added)."""
    response = render(request, template, status_code=status_code, **context)
    response.headers.update(headers or {})
    return response


def public_page(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    """A page shown before sign-in: its forms carry the double-submit CSRF token (set as a
    cookie if the browser has none yet)."""
    scratch = Response()
    anonymous_csrf_token(request, scratch)
    response = page(request, template, status_code=status_code, headers=headers, **context)
    response.raw_headers.extend(h for h in scratch.raw_headers if h[0] == b"set-cookie")
    return response
