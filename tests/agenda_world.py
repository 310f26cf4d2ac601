"""A small clinic for the agenda's tests: the real service, policy guard, audit and care
relationships on the ``engine`` fixture (SQLite and PostgreSQL), a recording mailer and a
directory of names and addresses (the platform opens them from the sealed accounts; these tests
are about the agenda, not the accounts).

Practitioners ``d1`` and ``d2`` publish Monday to Friday 09:00-12:00 (30-minute video slots)
and Sundays 01:00-04:00 (to cross the changes of time); patients ``p1`` ... ``p16`` consent to
teleconsultation, except ``nc`` (no consent). The clinic's zone is Europe/Paris.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Connection, Engine

from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose, Role
from secretum.agenda.model import Availability, Modality, WeeklyHours
from secretum.agenda.service import AgendaService, AgendaSettings
from secretum.audit.log import AuditLog
from secretum.consent.service import ConsentService
from secretum.consent.store import ConsentMethod
from secretum.consent.texts import default_texts
from secretum.mail import MailError, Message
from secretum.policy.guard import PolicyGuard

PARIS = ZoneInfo("Europe/Paris")
#: Monday 2 March 2026, 08:00 in Paris (07:00 UTC).
T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
URL = "https://clinic.example"
DOCTORS = ("d1", "d2")
PATIENTS = tuple(f"p{i}" for i in range(1, 17))
NO_CONSENT = "nc"
#: Health words that must never reach a message: specialties, purposes, reasons.
HEALTH_WORDS = ("teleconsultation", "téléconsultation", "video", "vidéo", "Docteur", "D1", "d1")

WEEK = Availability(
    weekly=(
        *(WeeklyHours(day, time(9), time(12), 30, Modality.VIDEO) for day in range(5)),
        WeeklyHours(6, time(1), time(4), 30, Modality.VIDEO),
    )
)


def ctx(actor: Actor, now: datetime, source_address: str | None = None) -> RequestContext:
    """The request of ``actor`` at ``now`` (each agenda use case sets its own purpose)."""
    return RequestContext(actor, Purpose.TELECONSULTATION, now, source_address)


def paris(*args: int) -> datetime:
    """A wall-clock time in Paris, as an instant."""
    return datetime(*args, tzinfo=PARIS).astimezone(UTC)  # type: ignore[misc]


@dataclass
class RecordingMailer:
    sent: list[Message] = field(default_factory=list)
    fail: bool = False

    def send(self, message: Message) -> None:
        if self.fail:
            raise MailError("relay down")
        self.sent.append(message)


@dataclass
class Directory:
    names: dict[str, str]

    def display_name(self, conn: Connection, user_id: str) -> str | None:
        return self.names.get(user_id)

    def email(self, conn: Connection, user_id: str) -> str | None:
        return f"{user_id}@mail.example" if user_id in self.names else None


@dataclass
class Clinic:
    engine: Engine
    audit: AuditLog
    agenda: AgendaService
    mailer: RecordingMailer

    def doctor(self, user_id: str = "d1") -> Actor:
        return Actor(user_id, Role.PRACTITIONER)

    def patient(self, user_id: str = "p1") -> Actor:
        return Actor(user_id, Role.PATIENT)


def build_clinic(
    engine: Engine,
    tmp_path: Path,
    *,
    change_delay: timedelta = timedelta(hours=24),
    publish: bool = True,
) -> Clinic:
    audit = AuditLog(engine, Ed25519PrivateKey.generate(), tmp_path / "witness.log")
    mailer = RecordingMailer()
    names = {d: f"Docteur {d.upper()}" for d in DOCTORS}
    names |= {p: f"Patient {p.upper()}" for p in (*PATIENTS, NO_CONSENT)}
    agenda = AgendaService(
        engine,
        audit,
        PolicyGuard(),
        mailer=mailer,
        contacts=Directory(names),
        settings=AgendaSettings(tz=PARIS, platform_url=URL, change_delay=change_delay),
    )
    consents = ConsentService(engine, audit, PolicyGuard())
    sha = default_texts().current(Purpose.TELECONSULTATION, "en").sha256
    for p in PATIENTS:
        request = RequestContext(
            Actor(p, Role.PATIENT), Purpose.PATIENT_REQUEST, T0 - timedelta(days=1)
        )
        consents.grant(
            request, patient_id=p, purpose=Purpose.TELECONSULTATION, text_sha256=sha,
            method=ConsentMethod.WEB_CHECKBOX,
        )  # fmt: skip
    clinic = Clinic(engine, audit, agenda, mailer)
    if publish:
        for d in DOCTORS:
            agenda.publish(ctx(clinic.doctor(d), T0 - timedelta(days=1)), WEEK)
    return clinic
