"""Read-only facts about the signed-in user's own account that the identity service does not
expose as use cases yet: which second factors are set up, the TOTP secret being set up (for
its QR code), the user's notices.

Each function takes the raw session id and resolves it through the service first, so it only
ever reads the session owner's rows. Candidates to become ``Identity`` methods
(``factor_summary``, ``pending_totp``, ``list_notices``); the pages would not change.
No web framework here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from secretum.identity.errors import SessionExpired
from secretum.identity.factors import provisioning_uri
from secretum.identity.model import Session
from secretum.identity.service import Identity
from secretum.identity.service_factors import TotpSetup
from secretum.notices.store import Notice, NoticeKind, list_notices


@dataclass(frozen=True)
class FactorSummary:
    """What the account has: confirmed TOTP, usable WebAuthn credentials, codes left."""

    totp: bool
    webauthn: int
    recovery_codes_left: int

    @property
    def any(self) -> bool:
        return self.totp or self.webauthn > 0


def _session(identity: Identity, session_id: str, now: datetime) -> Session:
    session = identity.sessions.resolve(session_id, now=now)
    if session is None:
        raise SessionExpired()
    return session


def factor_summary(identity: Identity, session_id: str, *, now: datetime) -> FactorSummary:
    """The second factors of the session's user."""
    session = _session(identity, session_id, now)
    with identity.core.engine.connect() as conn:
        state = identity.core.factors.totp(conn, session.user_id)
        creds = identity.core.factors.credentials_of(conn, session.user_id)
        left = identity.core.factors.recovery_codes_left(conn, session.user_id)
    usable = sum(1 for c in creds if c.blocked_at is None)
    return FactorSummary(state is not None and state.secret is not None, usable, left)


def pending_totp(identity: Identity, session_id: str, *, now: datetime) -> TotpSetup | None:
    """The TOTP secret being set up and its ``otpauth://`` URI (None if none is pending)."""
    session = _session(identity, session_id, now)
    with identity.core.engine.connect() as conn:
        state = identity.core.factors.totp(conn, session.user_id)
    if state is None or state.pending is None:
        return None
    email = identity.accounts.get_profile(session_id, now=now).personal.email
    uri = provisioning_uri(state.pending, email, identity.core.settings.totp_issuer)
    return TotpSetup(state.pending, uri)


#: Notices about the account's security (the other kinds belong to the patient pages).
SECURITY_NOTICES = frozenset(
    {NoticeKind.NEW_DEVICE_SIGN_IN, NoticeKind.CREDENTIAL_BLOCKED, NoticeKind.ACCOUNT_LOCKED}
)


def security_notices(
    identity: Identity, session_id: str, *, now: datetime, limit: int = 20
) -> list[Notice]:
    """The latest security notices of the session's user, newest first."""
    session = _session(identity, session_id, now)
    with identity.core.engine.connect() as conn:
        found = list_notices(conn, session.user_id)
    return [n for n in found if n.kind in SECURITY_NOTICES][:limit]
