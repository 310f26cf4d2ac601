"""Notices table and its three operations. Callers pass their transaction's connection."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, DateTime, String, Table, Text, insert, select, update
from sqlalchemy.engine import Connection

from secretum.storage.db import metadata


class NoticeKind(StrEnum):
    NEW_DEVICE_SIGN_IN = "new-device-sign-in"
    BREAK_GLASS_ACCESS = "break-glass-access"
    CREDENTIAL_BLOCKED = "credential-blocked"
    ACCOUNT_LOCKED = "account-locked"
    CONSENT_CHANGED = "consent-changed"
    ERASURE_SCHEDULED = "erasure-scheduled"
    ERASURE_DONE = "erasure-done"
    RECTIFICATION_REQUESTED = "rectification-requested"
    REFERRED = "referred"


notices = Table(
    "notices",
    metadata,
    Column("notice_id", String(32), primary_key=True),
    Column("user_id", String(64), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    #: JSON object of ids and codes only (e.g. {"actor_id": "...", "until": "..."})
    Column("params", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("read_at", DateTime(timezone=True), nullable=True),
)


@dataclass(frozen=True)
class Notice:
    notice_id: str
    user_id: str
    kind: NoticeKind
    params: dict[str, str]
    created_at: datetime
    read_at: datetime | None


def notify(conn: Connection, user_id: str, kind: NoticeKind, now: datetime, **params: str) -> str:
    """Create a notice for ``user_id``; ``params`` are ids and codes, never health data."""
    notice_id = secrets.token_hex(16)
    conn.execute(
        insert(notices).values(
            notice_id=notice_id,
            user_id=user_id,
            kind=str(kind),
            params=json.dumps(params, sort_keys=True),
            created_at=now,
        )
    )
    return notice_id


def list_notices(conn: Connection, user_id: str, *, unread_only: bool = False) -> list[Notice]:
    query = select(notices).where(notices.c.user_id == user_id)
    if unread_only:
        query = query.where(notices.c.read_at.is_(None))
    rows = conn.execute(query.order_by(notices.c.created_at.desc())).mappings()
    return [
        Notice(
            r["notice_id"],
            r["user_id"],
            NoticeKind(r["kind"]),
            json.loads(r["params"]),
            r["created_at"],
            r["read_at"],
        )
        for r in rows
    ]


def mark_read(conn: Connection, user_id: str, notice_id: str, now: datetime) -> bool:
    result = conn.execute(
        update(notices)
        .where(notices.c.notice_id == notice_id, notices.c.user_id == user_id)
        .values(read_at=now)
    )
    return result.rowcount == 1
