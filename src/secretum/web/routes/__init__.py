"""Route modules: every module here that defines ``router`` (an APIRouter) is included by
:func:`secretum.web.app.create_app`, in module-name order, except that a module may declare
``ROUTER_FIRST = True`` to be matched before the others. One module per area of the site.

Matching tries the routes in order, and FastAPI's cost grows with every route it tries: the FHIR
API (machine clients, the busiest paths, all under ``/fhir/`` where no page lives) goes first.
"""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    found: list[APIRouter] = []
    first: list[APIRouter] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            (first if getattr(module, "ROUTER_FIRST", False) else found).append(router)
    return first + found
