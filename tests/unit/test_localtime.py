"""Times people read: the clinic's wall clock, in each language, with the zone named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from secretum.config import Settings
from secretum.localtime import labelled, local_text, zone, zone_label
from secretum.mail import texts

PARIS = zone("Europe/Paris")
WINTER = datetime(2026, 12, 6, 20, 15, tzinfo=UTC)
SUMMER = datetime(2026, 7, 14, 20, 15, tzinfo=UTC)


def test_wall_clock_of_the_clinic_in_both_languages() -> None:
    assert local_text(WINTER, "fr", PARIS) == "06/12/2026 21:15"
    assert local_text(SUMMER, "fr", PARIS) == "14/07/2026 22:15"  # summer time
    assert local_text(WINTER, "en", PARIS) == "2026-12-06 21:15"
    assert local_text(WINTER.replace(tzinfo=None), "fr", PARIS) == "06/12/2026 21:15"  # SQLite
    assert local_text(None, "fr", PARIS) == "" and local_text(None, "en", PARIS, "—") == "—"
    assert local_text(WINTER, "fr", zone("America/Cayenne")) == "06/12/2026 17:15"


def test_the_zone_is_named() -> None:
    assert zone_label(PARIS, "fr") == "heure de Paris"
    assert zone_label(zone("Indian/Reunion"), "en") == "Reunion time"
    assert zone_label(zone("America/Port_of_Spain"), "en") == "Port of Spain time"
    assert labelled(WINTER, "fr", PARIS) == "06/12/2026 21:15 (heure de Paris)"


def test_an_unknown_zone_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        Settings(timezone="Mars/Olympus_Mons")
    assert Settings(timezone="Europe/Brussels").timezone == "Europe/Brussels"


def test_mail_says_the_zone_beside_each_time() -> None:
    message = texts.invitation("a@b.test", "https://x/invite/t", WINTER, "https://x", PARIS)
    assert "expire le 06/12/2026 21:15 (heure de Paris)" in message.text
    assert "expires on 2026-12-06 21:15 (Paris time)" in message.text
    assert "UTC" not in message.text
