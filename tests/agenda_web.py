"""The agenda on a whole web platform (:mod:`web_world`): helpers the page, FHIR, attack and
browser tests of the agenda share.

The clinic's week: Dr Gaston (``gp``) publishes, through his availability page, Wednesdays
09:00-12:00 in 30-minute video slots and Thursdays 14:00-16:00 on site (Paris time). The
world's clock starts on Monday 2 March 2026, 10:00 in Paris.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from web_world import WebWorld

PARIS = ZoneInfo("Europe/Paris")
#: Wednesday 4 March 2026 (the clinic's day) and its first slots, as instants.
WEDNESDAY = "2026-03-04"
NINE = datetime(2026, 3, 4, 9, 0, tzinfo=PARIS).astimezone(UTC)
NINE_THIRTY = datetime(2026, 3, 4, 9, 30, tzinfo=PARIS).astimezone(UTC)
TEN = datetime(2026, 3, 4, 10, 0, tzinfo=PARIS).astimezone(UTC)
#: The availability form: Wednesdays (video) and Thursdays (on site), and two empty rows.
WEEKLY_FORM: dict[str, Any] = {
    "w_day": ["2", "3", ""],
    "w_start": ["09:00", "14:00", ""],
    "w_end": ["12:00", "16:00", ""],
    "w_minutes": ["30", "60", ""],
    "w_mode": ["video", "on-site", "video"],
    "c_first": ["2026-04-01", ""],
    "c_last": ["2026-04-10", ""],
    "o_day": ["", ""],
    "o_start": ["", ""],
    "o_end": ["", ""],
    "o_minutes": ["", ""],
    "o_mode": ["video", "video"],
}


def html(world: WebWorld, name: str, lang: str = "fr") -> TestClient:
    client = world.client(name, html=True)
    client.cookies.set("lang", lang)
    return client


def publish(world: WebWorld, name: str = "gp", form: dict[str, Any] | None = None) -> Any:
    return html(world, name).post("/practice/availability", data=form or WEEKLY_FORM)


def book(world: WebWorld, patient: str, start: datetime, practitioner: str = "gp") -> Any:
    return html(world, patient).post(
        "/me/appointments/book",
        data={"practitioner_id": world.users[practitioner].user_id, "start": start.isoformat()},
    )


def appointment_ids(page: str) -> list[str]:
    """The appointments a page links to (its Join / Move / Cancel / note links)."""
    found = re.findall(r"/(?:consult|me/appointments|practice/agenda)/([0-9a-f]{32})", page)
    return list(dict.fromkeys(found))
