"""The imaging viewer in real Chromium on the synthetic CT phantom: the radiologist goes from the
patient's record to the studies, the series (thumbnails) and the stack viewer; the mouse wheel,
the keys and a window drag change the image on the canvas (its pixels compared), a CT preset
changes the rendering; a practitioner outside the care team, a patient and a visitor without a
session reach none of it; the whole viewing is one audit entry. Screenshots, in French and in
English: ``tests/browser/artifacts/pages/<lang>/practitioner-imaging-*.png``.

The server is the app of :mod:`imaging_web_world` (real services, real sessions) served by
:func:`live_app.serve` (uvicorn, TLS, localhost, a thread of the test process); the browser
carries the radiologist's session cookie (how the session was made is the sign-in tests'
business).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_rig import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_chromium
from sqlalchemy import select

from imaging_web_world import add_study, imaging_clinic
from live_app import serve
from secretum.audit.store import audit_entries
from secretum.web.deps import SESSION_COOKIE
from web_world import WebWorld

pytestmark = pytest.mark.browser

PAGES = ARTIFACTS / "pages"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebWorld, str]]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("viewer")
    world = imaging_clinic(tmp)
    with serve(world.app, tmp) as url:
        yield world, url


@pytest.fixture(scope="module")
def browser(site: tuple[WebWorld, str]) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _page(browser: Any, site: tuple[WebWorld, str], who: str | None, lang: str) -> Any:
    world, url = site
    context = browser.new_context(
        locale="fr-FR" if lang == "fr" else "en-GB",
        ignore_https_errors=True,
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(15_000)
    if who is not None:
        context.add_cookies(
            [
                {
                    "name": SESSION_COOKIE,
                    "value": world.users[who].session_id,
                    "url": url,
                    "secure": True,
                    "httpOnly": True,
                    "sameSite": "Strict",
                }
            ]
        )
    return context.new_page()


def _shot(page: Any, lang: str, name: str) -> None:
    folder = PAGES / lang
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"practitioner-imaging-{name}.png"), full_page=True)


def _canvas(page: Any) -> str:
    """A digest of the canvas pixels (what the person sees)."""
    data = page.evaluate(
        """() => {
          const c = document.querySelector('#viewer-canvas');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let s = [];
          for (let i = 0; i < d.length; i += 64) s.push(d[i]);
          return s.join(',');
        }"""
    )
    return hashlib.sha256(str(data).encode()).hexdigest()


def _shown(page: Any, prefix: str) -> str:
    page.wait_for_function(
        "(p) => (document.querySelector('#viewer').dataset.shown || '').startsWith(p)", arg=prefix
    )
    return str(page.locator("#viewer").get_attribute("data-shown"))


def _viewings(world: WebWorld, who: str) -> list[dict[str, Any]]:
    uid = world.users[who].user_id
    with world.platform.engine.connect() as conn:
        rows = conn.execute(
            select(audit_entries)
            .where(audit_entries.c.actor_id == uid, audit_entries.c.event_type == "110103")
            .order_by(audit_entries.c.seq)
        )
        return [dict(r._mapping) for r in rows]


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_radiologist_views_the_stack(browser: Any, site: tuple[WebWorld, str], lang: str) -> None:
    world, url = site
    page = _page(browser, site, "radio", lang)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    patient = world.users["nocare"].user_id

    page.goto(f"{url}/practice/patients/{patient}")
    assert page.locator("html").get_attribute("lang") == lang
    page.locator(f"a[href^='/practice/patients/{patient}/imaging']").click()
    page.wait_for_load_state()
    assert urlsplit(page.url).path == f"/practice/patients/{patient}/imaging"
    _shot(page, lang, "studies")

    before = len(_viewings(world, "radio"))
    page.locator("table a").first.click()
    page.wait_for_load_state()
    page.wait_for_function(
        "() => [...document.images].every((i) => i.complete && i.naturalWidth > 0)"
    )
    _shot(page, lang, "series")
    page.locator("ul.series-list a").first.click()
    page.wait_for_load_state()
    first = _shown(page, "0|40|400")
    a = _canvas(page)
    slice_text = page.locator("[data-field=slice]").first.inner_text()
    assert slice_text == "1 / 12"

    canvas = page.locator("#viewer-canvas")
    canvas.focus()
    page.keyboard.press("ArrowDown")
    _shown(page, "1|")
    b = _canvas(page)
    assert b != a, "a key must change the image"
    assert page.locator("[data-field=slice]").first.inner_text() == "2 / 12"
    position = page.locator("[data-field=position]").first.inner_text()
    assert position.startswith("-95")

    canvas.hover()
    page.mouse.wheel(0, 120)
    _shown(page, "2|")
    c = _canvas(page)
    assert c not in (a, b), "the wheel must change the image"
    page.keyboard.press("PageDown")
    _shown(page, "3|")
    page.keyboard.press("End")
    _shown(page, "11|")
    page.keyboard.press("Home")
    assert _shown(page, "0|40|400") == first
    assert _canvas(page) == a

    page.locator("[data-preset=lung]").click()
    _shown(page, "0|-600|1500")
    lung = _canvas(page)
    assert lung != a, "the lung preset must change the rendering"
    assert page.locator("[data-preset=lung]").get_attribute("aria-pressed") == "true"
    page.keyboard.press("2")  # the second preset: bone
    _shown(page, "0|300|1500")
    assert _canvas(page) not in (a, lung)

    box = canvas.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 - 60, box["y"] + box["height"] / 2 + 40, steps=4)
    page.mouse.up()
    page.wait_for_function(
        "() => !document.querySelector('#viewer').dataset.shown.endsWith('|300|1500')"
    )
    page.keyboard.press("0")
    _shown(page, "0|40|400")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("+")
    _shown(page, "3|40|400")
    page.wait_for_timeout(200)
    _shot(page, lang, "viewer")

    viewings = _viewings(world, "radio")[before:]
    # the series list (study opened once) and the viewer (series opened once): two entries,
    # however many frames and thumbnails were served
    assert len(viewings) == 2, viewings
    assert {v["patient_id"] for v in viewings} == {patient}
    assert not errors, errors


def test_others_cannot_reach_the_viewer(browser: Any, site: tuple[WebWorld, str]) -> None:
    world, url = site
    patient = world.users["nocare"].user_id
    study, series = world.ids["study:nocare"], world.ids["series:nocare"]
    viewer = f"{url}/practice/patients/{patient}/imaging/studies/{study}/series/{series}"

    radio = _page(browser, site, "radio", "en")
    radio.goto(viewer)
    _shown(radio, "0|")
    base = str(radio.locator("#viewer").get_attribute("data-base"))
    frame = f"{url}{base}{world.ids['sops:nocare'][0]}/1"
    assert radio.request.get(frame).status == 200

    # a practitioner outside the care team: the page refuses; radio's ticket serves them nothing
    gp = _page(browser, site, "gp", "en")
    before = len(_viewings(world, "gp"))
    response = gp.goto(viewer)
    assert response is not None and response.status == 403
    assert gp.locator("#viewer-canvas").count() == 0
    _shot(gp, "en", "refused")
    stolen = gp.request.get(frame)
    assert stolen.status == 404 and not stolen.headers["content-type"].startswith("image")
    refused = _viewings(world, "gp")[before:]
    assert len(refused) == 2 and all(r["outcome"] == 4 for r in refused)

    # a patient: not a practitioner's page; no session: to the sign-in page
    patient_page = _page(browser, site, "other", "en")
    response = patient_page.goto(viewer)
    assert response is not None and response.status == 403
    assert patient_page.request.get(frame).status == 403
    anonymous = _page(browser, site, None, "en")
    anonymous.goto(viewer)
    assert urlsplit(anonymous.url).path == "/sign-in"
    assert anonymous.request.get(frame).status == 401


def test_a_series_without_a_window_starts_from_its_range(
    browser: Any, site: tuple[WebWorld, str]
) -> None:
    """An MR-like series with no stored window: the first frame tells the window applied, the
    next frames use it, a drag starts from it."""
    world, url = site
    study, series, _ = add_study(
        world, "nocare", modality="MR", window=False, description="T2 AXIAL"
    )
    patient = world.users["nocare"].user_id
    page = _page(browser, site, "radio", "en")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{url}/practice/patients/{patient}/imaging/studies/{study}/series/{series}")
    shown = _shown(page, "0|")
    center, width = (int(v) for v in shown.split("|")[1:])
    assert width > 1000  # the phantom's range: air to the bright marker
    assert page.locator("[data-field=window]").first.inner_text() != ""
    page.locator("#viewer-canvas").focus()
    page.keyboard.press("ArrowDown")
    assert _shown(page, "1|") == f"1|{center}|{width}"
    assert page.locator("[data-preset]").count() == 1  # no Hounsfield presets for MR
    page.keyboard.press("1")  # (no preset 1: nothing changes)
    page.keyboard.press("End")
    assert _shown(page, "11|") == f"11|{center}|{width}"
    _shot(page, "en", "viewer-no-window")
    assert not errors, errors
