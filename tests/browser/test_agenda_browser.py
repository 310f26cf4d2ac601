"""The agenda in real Chromium on the demo clinic (``secretum serve --dev --demo``): Dr Martin
adds an opening day to her availability through its page, Paul books one of her free slots, and
the appointment shows in both agendas (his, with the "Join" button of a video consultation; hers,
with his name), in the clinic's time with its label. Screenshots of the agenda pages, in French
and in English, land beside the others in ``tests/browser/artifacts/pages/<lang>/``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_rig import (
    Server,
    require_chromium,
    sign_in_demo,
    start_server,
    stop_server,
    virtual_authenticator,
)
from test_screenshots_browser import LANGS, _shoot

from secretum.demo import PEOPLE
from secretum.localtime import zone

pytestmark = pytest.mark.browser

NAMES = {p.key: p.display_name for p in PEOPLE}


@pytest.fixture
def server(tmp_path: Path) -> Any:
    """The demo clinic (this module's ``server``: the ``launch`` fixture trusts it)."""
    require_chromium()
    running = start_server(tmp_path, "data", "--demo")
    yield running
    stop_server(running)


def _signed_in(launch: Any, server: Server, key: str, lang: str = "fr") -> Any:
    page = launch().new_page()
    virtual_authenticator(page)
    sign_in_demo(page, server, key)
    page.context.add_cookies([{"name": "lang", "value": lang, "url": server.url}])
    return page


def test_book_a_slot_and_see_it_in_both_agendas(server: Server, launch: Any) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).astimezone(zone()).date()
    doctor = _signed_in(launch, server, "gp")
    # Dr Martin opens tomorrow evening by video, whatever the day (an extra opening)
    doctor.goto(server.url + "/practice/availability")
    doctor.fill("#o-day-1", tomorrow.isoformat())
    doctor.fill("#o-start-1", "19:00")
    doctor.fill("#o-end-1", "20:00")
    doctor.fill("#o-minutes-1", "20")
    doctor.select_option("#o-mode-1", "video")
    doctor.get_by_role("button", name="Publier").click()
    doctor.wait_for_url(lambda url: "done=published" in url)
    assert "Disponibilités publiées" in doctor.locator("main").inner_text()
    assert doctor.input_value("#o-start-1") == "19:00"

    patient = _signed_in(launch, server, "paul")
    patient.goto(server.url + "/me/appointments")
    gp = patient.locator("#book-practitioner option", has_text=NAMES["gp"]).get_attribute("value")
    patient.select_option("#book-practitioner", gp)
    patient.get_by_role("button", name="Voir les créneaux").click()
    patient.wait_for_url(lambda url: urlsplit(url).path == "/me/appointments/book")
    main = patient.locator("main").inner_text()
    assert "heure de Paris" in main
    day = patient.locator("section.card", has=patient.locator(f"#d-{tomorrow.isoformat()}"))
    slot = day.locator("button.slot", has_text="19:20")
    slot.focus()  # keyboard: a slot is a button reached and pressed with the keyboard
    patient.keyboard.press("Enter")
    patient.wait_for_url(lambda url: urlsplit(url).path == "/me/appointments")
    assert "Rendez-vous réservé" in patient.locator("main").inner_text()
    upcoming = patient.locator("table.agenda").first
    row = upcoming.locator("tr", has_text="19:20")
    assert NAMES["gp"] in row.inner_text()
    join = row.get_by_role("link", name="Rejoindre")
    assert (join.get_attribute("href") or "").startswith("/consult/")

    doctor.goto(f"{server.url}/practice/agenda?day={tomorrow.isoformat()}")
    entry = doctor.locator("table.agenda tr", has_text="19:20")
    assert NAMES["paul"] in entry.inner_text()
    assert entry.get_by_role("link", name="Rejoindre").get_attribute("href") == join.get_attribute(
        "href"
    )

    shots: list[Path] = []
    for lang in LANGS:
        for page in (patient, doctor):
            page.context.add_cookies([{"name": "lang", "value": lang, "url": server.url}])
        shots += [
            _shoot(patient, server, lang, "patient", "appointments", "/me/appointments"),
            _shoot(patient, server, lang, "patient", "slots",
                   f"/me/appointments/book?practitioner_id={gp}&week={tomorrow.isoformat()}"),
            _shoot(doctor, server, lang, "practitioner", "agenda-day",
                   f"/practice/agenda?day={tomorrow.isoformat()}"),
            _shoot(doctor, server, lang, "practitioner", "agenda-week",
                   f"/practice/agenda?view=week&day={tomorrow.isoformat()}"),
            _shoot(doctor, server, lang, "practitioner", "availability", "/practice/availability"),
        ]  # fmt: skip
        label = "heure de Paris" if lang == "fr" else "Paris time"
        assert label in doctor.locator("main").inner_text()
    assert all(s.stat().st_size > 5_000 for s in shots)
