"""The front door: ``GET /`` sends each role to its home page (or to sign-in), and
``POST /lang`` chooses the language of the pages (a cookie, for a year)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response

from secretum.access.model import Role
from secretum.web.authflow import AnyCSRF, MaybeAnySession, redirect, safe_next
from secretum.web.i18n import LANGUAGES

router = APIRouter(tags=["home"])

#: Where each role starts.
HOME = {
    Role.PATIENT: "/me/record",
    Role.PRACTITIONER: "/practice/patients",
    Role.ADMIN: "/admin/users",
    Role.DPO: "/dpo/audit",
}


@router.get("/")
async def home(holder: MaybeAnySession) -> Response:
    """Anyone: signed in → the role's home (or MFA set-up first); else the sign-in page."""
    if holder is None:
        return redirect("/sign-in")
    if holder.enrolment_only:
        return redirect("/account/mfa")
    return redirect(HOME.get(holder.session.role, "/account/security"))


@router.post("/lang")
async def set_language(
    _csrf: AnyCSRF,
    lang: Annotated[str, Form(max_length=8)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    """Anyone (session CSRF token, or the pre-sign-in one): remember the language."""
    response = redirect(safe_next(next))
    if lang in LANGUAGES:
        response.set_cookie(
            "lang",
            lang,
            max_age=365 * 24 * 3600,
            secure=True,
            httponly=True,
            samesite="strict",
            path="/",
        )
    return response
