"""A user's notices for their pages (ids and codes only), in a read-only connection."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from secretum.notices.store import Notice, list_notices
from secretum.storage.db import reader


class NoticeReads:
    def __init__(self, engine: Engine) -> None:
        self.reads = reader(engine)

    def of(self, user_id: str) -> list[Notice]:
        """The user's notices, newest first."""
        with self.reads.connect() as conn:
            return list_notices(conn, user_id)
