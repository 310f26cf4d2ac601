"""Times as every store keeps them: aware, in UTC (shared by the contexts' stores)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(when: datetime) -> datetime:
    """``when`` in UTC; a naive time is refused (it would compare wrongly)."""
    if when.utcoffset() is None:
        raise ValueError("times must be timezone-aware")
    return when.astimezone(UTC)


def from_db(when: datetime | None) -> datetime | None:
    """A time read back: SQLite returns it naive, in UTC."""
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=UTC)
