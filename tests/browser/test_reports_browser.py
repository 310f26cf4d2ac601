"""A radiologist writes and signs a report in real Chromium, with a CDP virtual authenticator
holding the passkey she enrolled at her first sign-in, on the demo clinic (Paul's synthetic CT
is on her worklist); Paul then sees the report, signed, in his record. Screenshots of each
step in French and English: ``tests/browser/artifacts/pages/<lang>/radiology-*.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser_rig import (
    ARTIFACTS,
    Server,
    require_chromium,
    sign_in_demo,
    start_server,
    stop_server,
    virtual_authenticator,
)

pytestmark = pytest.mark.browser

PAGES = ARTIFACTS / "pages"


@pytest.fixture
def server(tmp_path: Path) -> Any:
    """The demo clinic (this module's ``server``: the ``launch`` fixture trusts it)."""
    require_chromium()
    running = start_server(tmp_path, "data", "--demo")
    yield running
    stop_server(running)


def _shot(page: Any, lang: str, name: str) -> Path:
    target = PAGES / lang / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 5_000
    return target


def _lang(page: Any, server: Server, lang: str) -> None:
    page.context.add_cookies([{"name": "lang", "value": lang, "url": server.url}])


def test_write_sign_and_the_patient_sees_the_signed_report(server: Server, launch: Any) -> None:
    page = launch().new_page()
    virtual_authenticator(page)
    sign_in_demo(page, server, "radio")
    for lang in ("fr", "en"):
        _lang(page, server, lang)
        page.goto(server.url + "/radiology/worklist")
        assert page.locator("table a[href^='/radiology/studies/']").count() == 1
        _shot(page, lang, "radiology-worklist")
    study = page.locator("table a[href^='/radiology/studies/']").first.get_attribute("href")
    page.goto(server.url + study)
    page.fill("#report-text", "Thorax : pas d'anomalie décelable (examen fictif de démonstration).")
    page.locator("#report-form button").click()
    page.wait_for_load_state()
    for lang in ("fr", "en"):
        _lang(page, server, lang)
        page.goto(server.url + study)
        _shot(page, lang, "radiology-draft")
    # sign: the page asks the passkey (the virtual authenticator answers), then reloads
    page.click("#sign-button")
    page.wait_for_url(lambda url: "done=signed" in url)
    assert page.locator(".tag.ok").count() == 1  # "signature valid" on the signed version
    for lang in ("fr", "en"):
        _lang(page, server, lang)
        page.goto(server.url + study)
        assert page.locator("#sign-button").count() == 0
        _shot(page, lang, "radiology-signed")
        page.goto(server.url + "/imaging/export/" + study.rsplit("/", 1)[1])
        _shot(page, lang, "radiology-export")
    # it left the worklist
    page.goto(server.url + "/radiology/worklist")
    assert page.locator("table a[href^='/radiology/studies/']").count() == 0
    page.context.close()

    patient = launch().new_page()
    sign_in_demo(patient, server, "paul")
    for lang, valid in (("fr", "signature valide"), ("en", "signature valid")):
        _lang(patient, server, lang)
        patient.goto(server.url + "/me/record")
        section = patient.locator("section:has(#reports-h)")
        assert "examen fictif de démonstration" in section.inner_text()
        assert valid in section.locator(".tag.ok").inner_text()
        section.scroll_into_view_if_needed()
        _shot(patient, lang, "patient-signed-report")
