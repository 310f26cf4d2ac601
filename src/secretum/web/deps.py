"""Who is calling, and may they? Dependencies that every route declares in its signature.

* :data:`SignedIn` — a valid session (cookie ``__Host-secretum-session``), resolved through the
  identity service (idle and absolute timeouts enforced there). HTML requests without one are
  sent to the sign-in page; API requests get 401.
* CSRF: every state-changing request (POST, PUT, PATCH, DELETE) must carry the session's CSRF
  token in the ``X-CSRF-Token`` header or a ``csrf_token`` form field. Before sign-in, a
  double-submit cookie (``__Host-secretum-csrf``) plays the same role (login CSRF).
* :func:`role` — restricts a route to roles (a first line of defence; the policy decides).

Routes stay thin: parse → these dependencies → one service call (one policy decision, one
audit entry, inside the service) → render.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose, Role
from secretum.identity.model import Session

if TYPE_CHECKING:
    from secretum.bootstrap import Platform
    from secretum.services import Services

SESSION_COOKIE = "__Host-secretum-session"
DEVICE_COOKIE = "__Host-secretum-device"
CSRF_COOKIE = "__Host-secretum-csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class NotSignedIn(Exception):
    """No valid session: HTML → redirect to /sign-in, API → 401 (see the handler in app)."""


def platform(request: Request) -> Platform:
    return request.app.state.services  # type: ignore[no-any-return]


def services(request: Request) -> Services:
    return platform(request).services


def now(request: Request) -> datetime:
    return platform(request).clock()


# The same three as route dependencies. They are coroutines although they never wait: FastAPI
# runs a plain ``def`` dependency in the thread pool, one hop (a thread hand-over, the GIL
# passed back and forth) per dependency and per request.


async def platform_dep(request: Request) -> Platform:
    return platform(request)


async def services_dep(request: Request) -> Services:
    return services(request)


async def now_dep(request: Request) -> datetime:
    return now(request)


def client_address(request: Request) -> str | None:
    """The peer's IP address (what the audit records), or None if it is not an address."""
    return valid_address(request.client.host if request.client else None)


def valid_address(host: str | None) -> str | None:
    """``host`` if it is an IP address (normalised), else None."""
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Caller:
    """The signed-in caller of this request."""

    session_id: str
    session: Session
    actor: Actor
    address: str | None

    @property
    def user_id(self) -> str:
        return self.actor.user_id

    def context(self, purpose: Purpose, now: datetime) -> RequestContext:
        """The request context of this caller's use cases (their address, when it is an IP
        address, goes to the audit)."""
        return RequestContext(self.actor, purpose, now, self.address)


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and not request.url.path.startswith(
        "/fhir"
    )


async def _form_token(request: Request) -> str:
    if request.headers.get(CSRF_HEADER):
        return request.headers[CSRF_HEADER]
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def _same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


def _resolve(request: Request) -> tuple[str, Session] | None:
    """The live session the cookie names, or None. Blocking (the session store is a database,
    or Redis): in a worker thread, never on the event loop."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    session = services(request).identity.sessions.resolve(session_id, now=now(request))
    if session is None:
        return None
    request.state.session = session
    if not session.enrolment_only:
        request.state.actor = session.to_actor()
    return session_id, session


async def live_session(request: Request) -> tuple[str, Session] | None:
    """The live session the cookie names, its CSRF token checked on unsafe methods; None when
    there is none. The one place where a request's session is resolved (an enrolment-only
    session too: :mod:`secretum.web.authflow` lets the MFA set-up pages have it)."""
    if not request.cookies.get(SESSION_COOKIE):
        return None
    # the coroutine waits in a worker thread; the loop serves other requests meanwhile
    found = await run_in_threadpool(_resolve, request)
    if found is None:
        return None
    if request.method in UNSAFE and not _same(await _form_token(request), found[1].csrf_token):
        raise HTTPException(status_code=403, detail="CSRF token missing or invalid")
    return found


def _caller(request: Request, found: tuple[str, Session] | None) -> Caller | None:
    if found is None:
        return None
    session_id, session = found
    if session.enrolment_only:  # MFA must be set up before anything else
        if wants_html(request):
            raise HTTPException(status_code=303, headers={"Location": "/account/mfa"})
        raise HTTPException(status_code=403, detail="second factor enrolment required")
    return Caller(session_id, session, request.state.actor, client_address(request))


async def optional_caller(request: Request) -> Caller | None:
    """The caller if the session cookie names a live session (and CSRF holds), else None."""
    return _caller(request, await live_session(request))


def caller_blocking(request: Request) -> Caller:
    """:func:`optional_caller` (NotSignedIn without a caller) for a *safe* request (GET, HEAD:
    no CSRF token to check), called in the worker thread that then does the request's work:
    one thread hand-over per request instead of two, on the busiest reads."""
    if request.method in UNSAFE:
        raise RuntimeError("an unsafe method checks its CSRF token: use optional_caller")
    caller = _caller(request, _resolve(request))
    if caller is None:
        raise NotSignedIn
    return caller


async def require_caller(caller: Annotated[Caller | None, Depends(optional_caller)]) -> Caller:
    if caller is None:
        raise NotSignedIn
    return caller


SignedIn = Annotated[Caller, Depends(require_caller)]
MaybeSignedIn = Annotated[Caller | None, Depends(optional_caller)]


def role(*roles: Role) -> Callable[[Caller], Coroutine[Any, Any, Caller]]:
    """A dependency: the caller must hold one of ``roles`` (403 otherwise)."""

    async def check(caller: SignedIn) -> Caller:
        if caller.actor.role not in roles:
            raise HTTPException(status_code=403, detail="not for this role")
        return caller

    return check


# -- before sign-in: double-submit CSRF cookie -------------------------------------------------


def anonymous_csrf_token(request: Request, response: Response) -> str:
    """The pre-session CSRF token for a form page, set as a cookie if not yet present."""
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    response.set_cookie(CSRF_COOKIE, token, secure=True, httponly=True, samesite="strict", path="/")
    request.state.anonymous_csrf = token
    return token


async def check_anonymous_csrf(request: Request) -> None:
    """For POSTs made before sign-in (sign-in, set-up, invitation): cookie == form field."""
    if not _same(await _form_token(request), request.cookies.get(CSRF_COOKIE, "")):
        raise HTTPException(status_code=403, detail="CSRF token missing or invalid")


AnonymousCSRF = Depends(check_anonymous_csrf)


def set_session_cookie(response: Response, session_id: str) -> None:
    response.set_cookie(
        SESSION_COOKIE, session_id, secure=True, httponly=True, samesite="strict", path="/"
    )


def set_device_cookie(response: Response, device_id: str) -> None:
    response.set_cookie(
        DEVICE_COOKIE,
        device_id,
        secure=True,
        httponly=True,
        samesite="strict",
        path="/",
        max_age=400 * 24 * 3600,
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, secure=True, httponly=True, samesite="strict", path="/")
