"""Short-lived TURN credentials (the "TURN REST API" of coturn's ``use-auth-secret``).

username = ``"<unix expiry>:<opaque user hash>"``, password = base64(HMAC-SHA1(secret,
username)): coturn recomputes the password from the username with the same secret and refuses
an expired one. The user hash is an HMAC of the account id under the same secret, truncated:
the relay's logs never see an account id, yet one person's allocations can be told apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class TurnConfig:
    urls: tuple[str, ...]
    secret: bytes
    ttl_seconds: int = 3600

    def __repr__(self) -> str:  # the secret never prints
        return f"TurnConfig(urls={self.urls!r}, ttl_seconds={self.ttl_seconds})"


def user_hash(secret: bytes, user_id: str) -> str:
    digest = hmac.new(secret, b"turn-user\x00" + user_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:12]).decode().rstrip("=")


def password(secret: bytes, username: str) -> str:
    return base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest()).decode()


def credentials(config: TurnConfig | None, user_id: str, now: datetime) -> list[dict[str, Any]]:
    """The ``iceServers`` of an RTCPeerConnection for ``user_id``: one TURN entry valid
    ``ttl_seconds`` from ``now``, or ``[]`` when no TURN relay is configured."""
    if config is None or not config.urls:
        return []
    expiry = int(now.timestamp()) + config.ttl_seconds
    username = f"{expiry}:{user_hash(config.secret, user_id)}"
    return [
        {
            "urls": list(config.urls),
            "username": username,
            "credential": password(config.secret, username),
        }
    ]
