"""Times as people read them: in the clinic's time zone, with that zone said.

Everything is stored and computed in UTC. What a person reads — a page, an e-mail — shows the
clinic's wall-clock time (``SECRETUM_TIMEZONE``, default ``Europe/Paris``), and says which zone
that is: pages once, in their footer; an e-mail beside each time, since it is read out of
context. One formatter for every page, so that no page shows UTC and another Paris time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo

DEFAULT_ZONE = "Europe/Paris"

#: "Paris time" in each language of the pages (the city is the zone's last part).
_LABELS = {"fr": "heure de {city}", "en": "{city} time"}


@cache
def zone(name: str = DEFAULT_ZONE) -> ZoneInfo:
    """The IANA zone ``name`` (``ZoneInfoNotFoundError`` if there is none)."""
    return ZoneInfo(name)


def local_text(value: datetime | None, lang: str, tz: ZoneInfo, empty: str = "") -> str:
    """``value`` as a wall-clock time of ``tz``: ``06/12/2026 21:15`` in French,
    ``2026-12-06 21:15`` in English; ``empty`` for None. A naive value is UTC (SQLite gives
    datetimes back without their zone)."""
    if value is None:
        return empty
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(tz)
    return local.strftime("%d/%m/%Y %H:%M" if lang == "fr" else "%Y-%m-%d %H:%M")


def zone_label(tz: ZoneInfo, lang: str) -> str:
    """``heure de Paris`` / ``Paris time`` for ``Europe/Paris``."""
    city = tz.key.rsplit("/", 1)[-1].replace("_", " ")
    return _LABELS.get(lang, _LABELS["en"]).format(city=city)


def labelled(value: datetime, lang: str, tz: ZoneInfo) -> str:
    """A time that stands alone (an e-mail, a message): ``06/12/2026 21:15 (heure de Paris)``."""
    return f"{local_text(value, lang, tz)} ({zone_label(tz, lang)})"
