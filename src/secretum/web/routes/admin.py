"""Administration: accounts, invitations, platform settings. Administrators only, with a fresh
second factor (the service enforces it: "step-up-required" sends them to ``/account/step-up``).

Routes:

* ``GET /admin/users`` · ``POST /admin/users/{user_id}/status`` (lock, disable, re-activate)
  · ``POST /admin/users/{user_id}/reset-mfa``;
* ``GET /admin/invitations`` · ``POST /admin/invitations`` (practitioner with specialty and
  RPPS, patient, administrator, DPO) · ``POST /admin/invitations/{user_id}/renew``: the
  one-time link is shown to hand over (no e-mail is sent), with its expiry;
* ``GET|POST /admin/settings`` — MFA for patients, patient self-registration.

Administrators never see health data. The account list shows names and e-mail addresses of
staff accounts only: for a patient, even a name next to "patient" tells who is cared for here
(covered by the *secret médical*), so patients appear by account id.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response

from secretum.access.model import ACCOUNT_ROLES, Role
from secretum.identity.errors import IdentityError, InvalidInput, StepUpRequired
from secretum.identity.model import SPECIALTIES, AccountStatus
from secretum.identity.service_accounts import Invitation
from secretum.web import admin_settings
from secretum.web.authflow import (
    Admin,
    Problem,
    identity,
    page,
    problem,
    redirect,
    step_up_redirect,
)
from secretum.web.deps import now, platform
from secretum.web.i18n import translate
from secretum.web.onboarding_mail import invitation_link, send_invitation
from secretum.web.templating import language

router = APIRouter(prefix="/admin", tags=["admin"])

Text = Annotated[str, Form(max_length=320)]
DONE = frozenset({"status", "mfa-reset", "settings"})


def _flash(request: Request, done: str | None) -> list[tuple[str, str]]:
    if done not in DONE:
        return []
    return [("success", translate(language(request), "admin.done." + str(done)))]


# -- accounts ---------------------------------------------------------------------------------


def _users_page(
    request: Request, caller: Admin, *, problem_: Problem | None = None, done: str | None = None
) -> Response:
    svc = identity(request)
    when = now(request)
    try:
        accounts = svc.admin.list_accounts(caller.session_id, now=when)
        staff: dict[str, Any] = {
            a.user_id: svc.accounts.get_profile(
                caller.session_id, now=when, user_id=a.user_id
            ).personal
            for a in accounts
            if a.role is not Role.PATIENT
        }
    except StepUpRequired:
        return step_up_redirect("/admin/users")
    return page(
        request,
        "admin_users.html",
        status_code=problem_.status if problem_ else 200,
        problem=problem_,
        flashes=_flash(request, done),
        accounts=accounts,
        staff=staff,
        me=caller.user_id,
    )


@router.get("/users")
async def users(request: Request, caller: Admin, done: str | None = None) -> Response:
    """Every account with its role and status."""
    return _users_page(request, caller, done=done)


@router.post("/users/{user_id}/status")
async def set_status(
    request: Request, caller: Admin, user_id: str, status: Annotated[str, Form()] = ""
) -> Response:
    """Lock, disable or re-activate an account."""
    try:
        if status not in {str(s) for s in AccountStatus}:
            raise InvalidInput("status", "active, locked or disabled")
        identity(request).admin.set_account_status(
            caller.session_id,
            user_id,
            AccountStatus(status),
            now=now(request),
            address=caller.address,
        )
    except StepUpRequired:
        return step_up_redirect("/admin/users")
    except IdentityError as exc:
        return _users_page(request, caller, problem_=problem(request, exc))
    return redirect("/admin/users?done=status")


@router.post("/users/{user_id}/reset-mfa")
async def reset_mfa(request: Request, caller: Admin, user_id: str) -> Response:
    """Forget an account's second factors (lost authenticator, checked out of band)."""
    try:
        identity(request).admin.reset_mfa(
            caller.session_id, user_id, now=now(request), address=caller.address
        )
    except StepUpRequired:
        return step_up_redirect("/admin/users")
    except IdentityError as exc:
        return _users_page(request, caller, problem_=problem(request, exc))
    return redirect("/admin/users?done=mfa-reset")


# -- invitations ------------------------------------------------------------------------------


def _invitations_page(request: Request, caller: Admin, **ctx: Any) -> Response:
    try:
        accounts = identity(request).admin.list_accounts(caller.session_id, now=now(request))
    except StepUpRequired:
        return step_up_redirect("/admin/invitations")
    found: Problem | None = ctx.get("problem")
    return page(
        request,
        "admin_invitations.html",
        status_code=found.status if found else 200,
        pending=[a for a in accounts if a.status is AccountStatus.INVITED],
        roles=[str(r) for r in Role if r in ACCOUNT_ROLES],
        specialties=sorted(SPECIALTIES),
        **ctx,
    )


def _link_page(request: Request, invitation: Invitation, role: str) -> Response:
    """The invitation is mailed; the page also shows the link, to hand over if mail fails.
    The address is shown only as the administrator just typed it (``role`` given): a renewal
    may be a self-registered patient's, which is not for administrators to read."""
    assert invitation.token is not None and invitation.email is not None
    mailed = send_invitation(request, invitation.email, invitation)
    shown = invitation.email if role else None
    return page(
        request,
        "admin_invitation_link.html",
        link=invitation_link(request, invitation.token),
        expires_at=invitation.expires_at,
        role=role,
        mailed=mailed,
        email=shown,
    )


@router.get("/invitations")
async def invitations(request: Request, caller: Admin) -> Response:
    """The invitation form and the invitations not yet accepted."""
    return _invitations_page(request, caller, form={})


@router.post("/invitations")
async def invite(
    request: Request,
    caller: Admin,
    role: Text = "",
    display_name: Text = "",
    email: Text = "",
    specialty: Text = "",
    rpps: Text = "",
) -> Response:
    """Invite someone: the one-time link is shown to hand over."""
    is_practitioner = role == Role.PRACTITIONER
    form = {"role": role, "display_name": display_name, "email": email}
    form |= {"specialty": specialty, "rpps": rpps}
    try:
        if role not in {str(r) for r in ACCOUNT_ROLES}:
            raise InvalidInput("role", "patient, practitioner, admin or dpo")
        invitation = identity(request).accounts.invite(
            caller.session_id,
            email=email,
            role=Role(role),
            display_name=display_name,
            specialty=(specialty or None) if is_practitioner else None,
            rpps=(rpps or None) if is_practitioner else None,
            now=now(request),
            address=caller.address,
        )
    except StepUpRequired:
        return step_up_redirect("/admin/invitations")
    except IdentityError as exc:
        return _invitations_page(request, caller, problem=problem(request, exc), form=form)
    return _link_page(request, invitation, role)


@router.post("/invitations/{user_id}/renew")
async def renew(request: Request, caller: Admin, user_id: str) -> Response:
    """A new link for an invitation not yet accepted (the previous one may have expired)."""
    try:
        invitation = identity(request).accounts.reinvite(
            caller.session_id, user_id, now=now(request), address=caller.address
        )
    except StepUpRequired:
        return step_up_redirect("/admin/invitations")
    except IdentityError as exc:
        return _invitations_page(request, caller, problem=problem(request, exc), form={})
    return _link_page(request, invitation, "")


# -- settings ---------------------------------------------------------------------------------


@router.get("/settings")
async def settings_form(request: Request, caller: Admin, done: str | None = None) -> Response:
    """The platform settings an administrator may change."""
    del caller  # the dependency is the check: administrators only
    current = admin_settings.current(platform(request))
    return page(request, "admin_settings.html", settings=current, flashes=_flash(request, done))


@router.post("/settings")
async def save_settings(
    request: Request,
    caller: Admin,
    mfa_required_for_patients: Annotated[str, Form()] = "",
    allow_patient_self_registration: Annotated[str, Form()] = "",
) -> Response:
    """Save the settings (fresh second factor; audited)."""
    values = admin_settings.AdminSettings(
        mfa_required_for_patients=mfa_required_for_patients == "on",
        allow_patient_self_registration=allow_patient_self_registration == "on",
    )
    try:
        admin_settings.save(
            platform(request), caller.session_id, values, now=now(request), address=caller.address
        )
    except StepUpRequired:
        return step_up_redirect("/admin/settings")
    except IdentityError as exc:
        found = problem(request, exc)
        current = admin_settings.current(platform(request))
        return page(
            request,
            "admin_settings.html",
            status_code=found.status,
            problem=found,
            settings=current,
        )
    return redirect("/admin/settings?done=settings")
