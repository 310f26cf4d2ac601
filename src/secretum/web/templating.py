"""Jinja2 pages: autoescaped, translated, with the CSRF token of the session.

Templates get ``t(key, **params)`` (translation), ``lang``, ``csrf_token``, ``actor`` (or
None), ``static(path)``, ``when(time)`` (a time in the clinic's zone, ``—`` for none) and
``zone_label`` (that zone in words, said once in the footer). Pages carry no inline script:
behaviour lives in static modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from secretum.localtime import DEFAULT_ZONE, local_text, zone, zone_label
from secretum.web import i18n
from secretum.web.deps import anonymous_csrf_token

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)


def language(request: Request) -> str:
    return i18n.choose(request.cookies.get("lang"), request.headers.get("accept-language"))


def clinic_zone(request: Request) -> ZoneInfo:
    """The clinic's time zone (``Settings.timezone``)."""
    settings = getattr(request.app.state, "settings", None)
    return zone(settings.timezone if settings is not None else DEFAULT_ZONE)


def public_url(request: Request) -> str:
    """The address people type (``Settings.base_url``): passkeys work there only."""
    settings = getattr(request.app.state, "settings", None)
    return settings.base_url if settings is not None else ""


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` for ``request`` with the common context.

    Every page has forms (at least the language button), so a page shown before sign-in
    always carries the pre-sign-in CSRF token: if the route did not set one
    (``authflow.public_page``), it is set here, cookie included. Error pages shown to a
    visitor (a refused registration, a 404) then keep a working language button.
    """
    lang = language(request)
    session = getattr(request.state, "session", None)
    tz = clinic_zone(request)
    cookies: Response | None = None
    if session is None and not getattr(request.state, "anonymous_csrf", ""):
        cookies = Response()
        anonymous_csrf_token(request, cookies)
    page = _env.get_template(template).render(
        request=request,
        lang=lang,
        t=lambda key, **params: i18n.translate(lang, key, **params),
        csrf_token=getattr(session, "csrf_token", "")
        if session
        else getattr(request.state, "anonymous_csrf", ""),
        actor=getattr(request.state, "actor", None),
        static=lambda path: f"/static/{path}",
        **{"when": lambda value: local_text(value, lang, tz, "—"), **context},
        zone_label=zone_label(tz, lang),
        public_url=public_url(request),
    )
    response = HTMLResponse(page, status_code=status_code, headers={"Cache-Control": "no-store"})
    if cookies is not None:
        response.raw_headers.extend(h for h in cookies.raw_headers if h[0] == b"set-cookie")
    return response
