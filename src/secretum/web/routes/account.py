"""Account security: the signed-in user's credentials, TOTP, recovery codes, sessions,
password and security notices.

Routes (every one for the signed-in user, on their own account; POSTs carry the session's
CSRF token):

* ``GET /account/security`` — the page;
* ``POST /account/credentials/{ref}/rename`` · ``POST /account/credentials/{ref}/revoke``;
* ``POST /account/totp/remove`` · ``POST /account/recovery-codes`` (new set, shown once);
* ``POST /account/sessions/{ref}/revoke`` · ``POST /account/sign-out-everywhere``;
* ``POST /account/password``.

Sensitive acts need a fresh second factor: when the service says "step-up-required", the
user goes to ``/account/step-up`` and comes back here. Each action is one service call (the
service checks, acts and audits).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from secretum.identity.errors import IdentityError, StepUpRequired
from secretum.identity.model import requires_step_up
from secretum.web import admin_settings
from secretum.web.account_facts import factor_summary, security_notices
from secretum.web.authflow import (
    FullSession,
    Problem,
    identity,
    page,
    problem,
    redirect,
    step_up_redirect,
)
from secretum.web.deps import DEVICE_COOKIE, clear_session_cookie, now, platform
from secretum.web.i18n import translate
from secretum.web.templating import language

router = APIRouter(prefix="/account", tags=["account"])

HERE = "/account/security"
#: Confirmations a redirect may ask the page to show (``?done=<key>``).
DONE = frozenset(
    {
        "renamed",
        "revoked",
        "totp-removed",
        "session-revoked",
        "password-changed",
        "credential-added",
        "totp-added",
        "stepped-up",
    }
)
Secret = Annotated[str, Form(max_length=2048)]


def security_page(
    request: Request,
    caller: FullSession,
    *,
    problem_: Problem | None = None,
    done: str | None = None,
) -> Response:
    """Render the account security page for ``caller``."""
    svc = identity(request)
    when = now(request)
    device = request.cookies.get(DEVICE_COOKIE)
    flashes = []
    if done in DONE:
        flashes.append(("success", translate(language(request), "auth.done." + str(done))))
    return page(
        request,
        "account_security.html",
        status_code=problem_.status if problem_ else 200,
        headers=problem_.headers if problem_ else None,
        problem=problem_,
        flashes=flashes,
        credentials=svc.factors.list_credentials(caller.session_id, now=when),
        sessions=svc.sessions.list_sessions(caller.session_id, now=when),
        factors=factor_summary(svc, caller.session_id, now=when),
        notices=security_notices(svc, caller.session_id, now=when),
        this_ref=caller.session.ref,
        this_device=svc.core.accounts.device_ref(device) if device else None,
        step_up_needed=requires_step_up(caller.actor, when, svc.core.settings.step_up_window),
    )


def _refused(request: Request, caller: FullSession, exc: IdentityError) -> Response:
    if isinstance(exc, StepUpRequired):
        return step_up_redirect(HERE)
    return security_page(request, caller, problem_=problem(request, exc))


@router.get("/security")
async def security(request: Request, caller: FullSession, done: str | None = None) -> Response:
    """The signed-in user's own account security."""
    return security_page(request, caller, done=done)


@router.post("/credentials/{ref}/rename")
async def rename_credential(
    request: Request,
    caller: FullSession,
    ref: str,
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Rename one of the user's passkeys or security keys."""
    try:
        identity(request).factors.rename_credential(
            caller.session_id, ref, name, now=now(request), address=caller.address
        )
    except IdentityError as exc:
        return _refused(request, caller, exc)
    return redirect(f"{HERE}?done=renamed")


@router.post("/credentials/{ref}/revoke")
async def revoke_credential(request: Request, caller: FullSession, ref: str) -> Response:
    """Delete one of the user's credentials (step-up)."""
    admin_settings.current(platform(request))
    try:
        identity(request).factors.revoke_credential(
            caller.session_id, ref, now=now(request), address=caller.address
        )
    except IdentityError as exc:
        return _refused(request, caller, exc)
    return redirect(f"{HERE}?done=revoked")


@router.post("/totp/remove")
async def remove_totp(request: Request, caller: FullSession) -> Response:
    """Stop using the authenticator app (step-up)."""
    admin_settings.current(platform(request))
    try:
        identity(request).factors.remove_totp(
            caller.session_id, now=now(request), address=caller.address
        )
    except IdentityError as exc:
        return _refused(request, caller, exc)
    return redirect(f"{HERE}?done=totp-removed")


@router.post("/recovery-codes")
async def new_recovery_codes(request: Request, caller: FullSession) -> Response:
    """A new set of recovery codes, shown once (step-up); the old ones stop working."""
    try:
        codes = identity(request).factors.generate_recovery_codes(
            caller.session_id, now=now(request), address=caller.address
        )
    except IdentityError as exc:
        return _refused(request, caller, exc)
    return page(request, "account_recovery_codes.html", codes=codes, next_url=HERE)


@router.post("/sessions/{ref}/revoke")
async def revoke_session(request: Request, caller: FullSession, ref: str) -> Response:
    """End another session of the user."""
    try:
        identity(request).sessions.revoke_session(
            caller.session_id, ref, now=now(request), address=caller.address
        )
    except IdentityError as exc:
        return _refused(request, caller, exc)
    if ref == caller.session.ref:
        response = redirect("/sign-in")
        clear_session_cookie(response)
        return response
    return redirect(f"{HERE}?done=session-revoked")


@router.post("/sign-out-everywhere")
async def sign_out_everywhere(request: Request, caller: FullSession) -> Response:
    """End every session of the user, this one included."""
    identity(request).sessions.sign_out_everywhere(
        caller.session_id, now=now(request), address=caller.address
    )
    response = redirect("/sign-in")
    clear_session_cookie(response)
    return response


@router.post("/password")
async def change_password(
    request: Request,
    caller: FullSession,
    current: Secret = "",
    new: Secret = "",
    confirm: Secret = "",
) -> Response:
    """Change the password (the current one is required); the other sessions end."""
    if new != confirm:
        text = translate(language(request), "auth.err.password-mismatch")
        found = Problem("password-mismatch", text, 400, field="confirm")
        return security_page(request, caller, problem_=found)
    try:
        identity(request).accounts.change_password(
            caller.session_id, current=current, new=new, now=now(request), address=caller.address
        )
    except IdentityError as exc:
        return _refused(request, caller, exc)
    return redirect(f"{HERE}?done=password-changed")
