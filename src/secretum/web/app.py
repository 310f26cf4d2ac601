"""The FastAPI application factory: a thin web layer, no domain logic.

``create_app`` builds the app the lead wires in ``bootstrap.py``::

    app = create_app(settings, extra_routers=[patients.router, ...], services=services)

Routers come from ``web/routes/``; services (use cases) are reached by routes through
``request.app.state.services``. What this module adds:

* ``GET /healthz`` → ``{"status": "ok"}`` (nothing else: no version, no configuration);
* refusals and unknown addresses as pages in the visitor's language for browsers (the JSON
  ``{"detail": …}`` for API clients; the FHIR API answers with ``OperationOutcome`` itself);
* ``/favicon.ico`` → the icon in ``static/``;
* the security headers on every response (:mod:`secretum.web.headers`) and our request log
  (:mod:`secretum.web.requestlog`), both installed *outside* Starlette's error middleware so a
  500 gets them too;
* no interactive docs and no OpenAPI schema unless ``debug`` (note: the Swagger page needs
  inline script and a CDN, which the CSP forbids; use the JSON schema at ``/openapi.json``);
* the audit barrier (:mod:`secretum.web.witness`), inside those two: no response starts before
  the witness file covers every audit entry committed so far; a 503 if it cannot be written;
* FastAPI's native OpenTelemetry hooks switched off: they would export exception messages and
  validation inputs (patient data) to whatever exporter the environment configures.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from secretum.config import Settings
from secretum.logs import get_logger
from secretum.web import routes
from secretum.web.deps import NotSignedIn, wants_html
from secretum.web.headers import SecurityHeadersMiddleware
from secretum.web.requestlog import RequestLogMiddleware
from secretum.web.templating import render
from secretum.web.witness import AuditBarrierMiddleware

_log = get_logger(__name__)

_TELEMETRY_OFF = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


class SecretumAPI(FastAPI):
    """FastAPI whose outermost layers are the security headers and the request log."""

    def build_middleware_stack(self) -> ASGIApp:
        """Wrap Starlette's stack (ServerErrorMiddleware first) in the audit barrier (no response
        starts before the witness covers the audit entries committed so far,
        :mod:`secretum.web.witness`), then our two outer middlewares."""
        inner = super().build_middleware_stack()
        barrier = AuditBarrierMiddleware(inner, self)
        return SecurityHeadersMiddleware(RequestLogMiddleware(barrier))


health_router = APIRouter()


@health_router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """Liveness probe: the process answers HTTP. Reveals nothing about the deployment."""
    return {"status": "ok"}


@health_router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    """Browsers ask for it on every site, before reading any ``<link rel="icon">``."""
    return RedirectResponse("/static/favicon.svg", status_code=301)


#: A periodic duty: run ``duty()`` every ``period`` seconds in a worker thread.
Duty = tuple[float, Callable[[], object]]


async def _run_periodically(period: float, duty: Callable[[], object]) -> None:
    while True:
        await asyncio.sleep(period)
        try:
            await asyncio.to_thread(duty)
        except Exception:  # a failed duty is logged and retried at the next period
            _log.exception("duty.failed", duty=getattr(duty, "__name__", "duty"))


_heap_frozen = False


def freeze_startup_heap() -> None:
    """Take what exists once the app starts (modules, the platform, the app: objects that live
    as long as the process) out of the cyclic garbage collector's reach, once per process.

    A full collection otherwise traverses all of it: a pause of tens of milliseconds every few
    hundred requests, the whole latency tail of a fast read. Frozen objects are still freed by
    reference counting; only cycles among them would stay (``gc.freeze``).
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


def _lifespan(duties: Sequence[Duty]) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_run_periodically(p, d)) for p, d in duties]
        freeze_startup_heap()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for _period, duty in duties:  # a last run at shutdown (e.g. a final checkpoint)
                try:
                    await asyncio.to_thread(duty)
                except Exception:
                    _log.exception("duty.failed", duty=getattr(duty, "__name__", "duty"))

    return lifespan


def create_app(
    settings: Settings | None = None,
    *,
    extra_routers: Iterable[APIRouter] = (),
    debug: bool = False,
    services: Any = None,
    duties: Sequence[Duty] = (),
) -> FastAPI:
    """Build the ASGI app.

    ``settings`` and ``services`` are stored on ``app.state`` for dependencies to read;
    ``extra_routers`` are included in order; ``debug`` turns on tracebacks in 500 pages and
    the docs/OpenAPI endpoints — never in production. ``duties`` run periodically while the
    app is up, and once more at shutdown (the audit log's checkpoints and witness file). At
    start-up, the heap built so far is frozen (:func:`freeze_startup_heap`).
    """
    kwargs: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        kwargs["telemetry"] = dict(_TELEMETRY_OFF)
    app = SecretumAPI(
        title="Secretum",
        debug=debug,
        docs_url="/docs" if debug else None,
        redoc_url=None,
        openapi_url="/openapi.json" if debug else None,
        lifespan=_lifespan(duties),
        **kwargs,
    )
    app.state.settings = settings
    app.state.services = services
    app.include_router(health_router)
    for router in (*routes.routers(), *extra_routers):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_exception_handler(NotSignedIn, _not_signed_in)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    return app


#: What a refusal's ``detail`` (set by the web dependencies) means, in the visitor's words.
_DETAIL_KEYS = {
    "CSRF token missing or invalid": "error.csrf",
    "not for this role": "error.role",
    "second factor enrolment required": "error.mfa_required",
}
_STATUS_KEYS = {404: "error.not_found", 405: "error.not_found"}


async def _http_error(request: Request, exc: Exception) -> Response:
    """A refusal as a page for browsers (title and reason in their language, a way home);
    API clients and redirects (``HTTPException(303)``) get FastAPI's usual answer."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code < 400 or not wants_html(request):
        return await http_exception_handler(request, exc)
    status = 404 if exc.status_code == 405 else exc.status_code
    key = _DETAIL_KEYS.get(str(exc.detail)) or _STATUS_KEYS.get(status, "error.generic")
    response = render(request, "patient_error.html", status_code=status, status=status, message=key)
    response.headers.update(exc.headers or {})
    return response


async def _not_signed_in(request: Request, _exc: Exception) -> Response:
    """HTML: to the sign-in page (then back); API: 401 with no detail worth stealing."""
    if wants_html(request):
        target = request.url.path if request.method == "GET" else "/"
        return RedirectResponse(f"/sign-in?next={quote(target)}", status_code=303)
    return JSONResponse({"error": "sign-in required"}, status_code=401)
