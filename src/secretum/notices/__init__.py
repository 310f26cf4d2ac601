"""Notices shown to a user: a sign-in from a new device, a break-the-glass access to their
record, an erasure scheduled... Codes and ids only: the page renders the words."""

from secretum.notices.store import Notice, NoticeKind, list_notices, mark_read, notify

__all__ = ["Notice", "NoticeKind", "list_notices", "mark_read", "notify"]
