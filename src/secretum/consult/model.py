"""The vocabulary of a call: its settings, the join window, an admission, why a call ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from secretum.agenda.model import Appointment


class Role(StrEnum):
    """A participant's part in the call."""

    PATIENT = "patient"
    PRACTITIONER = "practitioner"
    #: a second practitioner or an interpreter the patient accepted for this appointment:
    #: waits in the waiting room like the patient, admits nobody, saves nothing
    GUEST = "guest"


class EndReason(StrEnum):
    """Why a participant's call ended (the ``ended`` message, and the leave's audit code)."""

    HUNG_UP = "hung-up"
    DISCONNECTED = "disconnected"
    CONSENT_WITHDRAWN = "consent-withdrawn"
    RELATIONSHIP_ENDED = "relationship-ended"
    TIME_OVER = "time-over"
    SESSION_ENDED = "session-ended"
    POLICY = "policy"
    REPLACED = "replaced"
    #: the patient withdrew their acceptance of this guest
    GUEST_WITHDRAWN = "guest-withdrawn"


#: The refusal codes of the call's own checks (beside the policy's ``deny.*``).
NOT_PARTICIPANT = "deny.not-participant"
NOT_BOOKED = "deny.not-booked"
NOT_VIDEO = "deny.not-video"
NOT_IN_CARE_TEAM = "deny.not-in-care-team"
OUTSIDE_WINDOW = "deny.outside-window"
NO_CONSENT = "deny.no-consent"

#: What a refusal found during a call means for it.
ENDED_BY: dict[str, EndReason] = {
    # only a guest stops being a participant during a call (the patient withdrew them)
    NOT_PARTICIPANT: EndReason.GUEST_WITHDRAWN,
    NO_CONSENT: EndReason.CONSENT_WITHDRAWN,
    NOT_IN_CARE_TEAM: EndReason.RELATIONSHIP_ENDED,
    OUTSIDE_WINDOW: EndReason.TIME_OVER,
}


@dataclass(frozen=True, slots=True)
class ConsultSettings:
    """``SECRETUM_WAITING_ROOM_MINUTES``, ``SECRETUM_CONSULT_GRACE_MINUTES``,
    ``SECRETUM_CONSULT_RECHECK_SECONDS``."""

    waiting_room: timedelta = timedelta(minutes=10)
    grace: timedelta = timedelta(minutes=30)
    recheck_seconds: float = 15.0

    def window(self, appointment: Appointment) -> tuple[datetime, datetime]:
        """From the waiting room's opening to the end of the grace after the slot."""
        return appointment.start - self.waiting_room, appointment.end + self.grace

    def open_at(self, appointment: Appointment, now: datetime) -> bool:
        first, last = self.window(appointment)
        return first <= now <= last


@dataclass(frozen=True, slots=True)
class Admission:
    """A participant let into a call's room (the join decision's answer)."""

    appointment_id: str
    patient_id: str
    practitioner_id: str
    user_id: str
    role: Role
    start: datetime
    end: datetime
    #: the participant's own display name (shown in the practitioner's lobby)
    name: str
    #: the other party's display name (shown on the call page)
    other_name: str
    joined_at: datetime
    #: the join window is open now (the page tells "too early" / "over" otherwise)
    window_open: bool = True
