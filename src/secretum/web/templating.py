"""Jinja2 pages: autoescaped, translated, with the CSRF token of the session.

Templates get ``t(key, **params)`` (translation), ``lang``, ``csrf_token``, ``actor`` (or
None) and ``static(path)``. Pages carry no inline script: behaviour lives in static modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from secretum.web import i18n

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)


def language(request: Request) -> str:
    return i18n.choose(request.cookies.get("lang"), request.headers.get("accept-language"))


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` for ``request`` with the common context."""
    lang = language(request)
    session = getattr(request.state, "session", None)
    page = _env.get_template(template).render(
        request=request,
        lang=lang,
        t=lambda key, **params: i18n.translate(lang, key, **params),
        csrf_token=getattr(session, "csrf_token", "")
        if session
        else getattr(request.state, "anonymous_csrf", ""),
        actor=getattr(request.state, "actor", None),
        static=lambda path: f"/static/{path}",
        **context,
    )
    return HTMLResponse(page, status_code=status_code, headers={"Cache-Control": "no-store"})
