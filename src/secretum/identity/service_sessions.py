"""Session use cases: resolve a session (and its Actor), sign out of one or every session,
list and revoke a user's sessions. One audit entry (Logout) per sign-out or revocation."""

from __future__ import annotations

from datetime import datetime

from secretum.access.model import Actor
from secretum.audit.model import Outcome
from secretum.identity.errors import NotFound
from secretum.identity.model import Session, utc
from secretum.identity.service_base import LOGOUT, IdentityCore, Who


class Sessions:
    """Resolve, list and end sessions."""

    def __init__(self, core: IdentityCore) -> None:
        self.core = core

    # -- sessions ---------------------------------------------------------------------------

    def resolve(self, session_id: str, *, now: datetime) -> Session | None:
        """The live session of this id (idle and absolute timeouts enforced), or None."""
        return self.core.sessions.resolve(session_id, utc(now))

    def actor(self, session_id: str, *, now: datetime) -> Actor | None:
        """The policy :class:`Actor` of a live, fully signed-in session, or None.
        Raises MfaEnrolmentRequired for an enrolment-only session."""
        session = self.resolve(session_id, now=now)
        return None if session is None else session.to_actor()

    def sign_out(self, session_id: str, *, now: datetime, address: str | None = None) -> bool:
        """End this session. False if it was not live."""
        now = utc(now)
        session = self.core.sessions.resolve(session_id, now)
        if session is None or not self.core.sessions.revoke(session_id):
            return False
        with self.core.write() as conn:
            self.core.record(conn, now, LOGOUT, Who.of(session), address=address)
        return True

    def sign_out_everywhere(
        self, session_id: str, *, now: datetime, address: str | None = None
    ) -> int:
        """End every session of this session's user, this one included; how many."""
        now = utc(now)
        session = self.core.session(session_id, now)
        count = self.core.sessions.revoke_user(session.user_id)
        with self.core.write() as conn:
            self.core.record(
                conn,
                now,
                LOGOUT,
                Who.of(session),
                resource=("Account", session.user_id),
                address=address,
            )
        return count

    def list_sessions(self, session_id: str, *, now: datetime) -> list[Session]:
        """The live sessions of this session's user (``ref`` identifies each)."""
        now = utc(now)
        session = self.core.session(session_id, now)
        return self.core.sessions.list_user(session.user_id, now)

    def revoke_session(
        self, session_id: str, ref: str, *, now: datetime, address: str | None = None
    ) -> bool:
        """End one of the user's other sessions by its ``ref``."""
        now = utc(now)
        session = self.core.session(session_id, now)
        done = self.core.sessions.revoke_ref(session.user_id, ref)
        outcome = Outcome.SUCCESS if done else Outcome.MINOR_FAILURE
        with self.core.write() as conn:
            self.core.record(conn, now, LOGOUT, Who.of(session), address=address, outcome=outcome)
        if not done:
            raise NotFound("no such session")
        return done
