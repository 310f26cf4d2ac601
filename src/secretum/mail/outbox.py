"""The embedded mailer: every message becomes an ``.eml`` file in a folder (no network).

Files are written owner-only (0600) in an owner-only folder, atomically (a temporary name,
then a rename): a program that picks them up never sees half a message. They are named
``<UTC time>-<random>.eml`` so that a listing shows them in the order they were sent.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from secretum.mail import MailError, Message


class OutboxMailer:
    def __init__(self, folder: Path, *, sender: str) -> None:
        self.folder = Path(folder)
        self.sender = sender

    def send(self, message: Message) -> None:
        data = bytes(message.to_email(self.sender))
        name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(6)}.eml"
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            partial = self.folder / f".{name}.part"
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, self.folder / name)
        except OSError as exc:
            raise MailError(f"the outbox folder refused the message ({exc.strerror})") from exc

    def messages(self) -> list[Path]:
        """The messages in the outbox, oldest first."""
        return sorted(self.folder.glob("*.eml")) if self.folder.is_dir() else []
