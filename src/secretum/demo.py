"""``secretum demo``: a small fictitious clinic on an empty platform, to try Secretum.

:func:`seed_demo` creates, through the same use cases people go through (set-up, invitations,
consents, care relationships, guarded and audited record writes):

* an administrator (with TOTP enrolled: their secret is printed, to add to an authenticator
  app), a data protection officer, a general practitioner and a radiologist (both enrol a
  second factor at their first sign-in, as MFA requires);
* three patients, each with consents, a care team, a FHIR Patient resource and measurements;
  one has a radiology report (PDF) and a sensitive measurement shared with their GP only.

Every person, e-mail address (``.invalid``: RFC 2606, never deliverable), password and value is
fictitious and printed in clear: **a demonstration platform only, never real patients.** The
seeding refuses to run twice (or on a platform that already has an administrator).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose, Role, Sensitivity
from secretum.agenda.model import Availability, Modality, WeeklyHours
from secretum.consent.store import ConsentMethod
from secretum.identity.factors import time_step, totp_code
from secretum.identity.model import luhn_ok
from secretum.identity.service_signin import SignedIn

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from secretum.services import Services


class DemoPorts(Protocol):
    """What the demo seeding needs (the composition root's ``Platform`` has it)."""

    @property
    def services(self) -> Services: ...

    @property
    def engine(self) -> Engine: ...


DOMAIN = "demo.secretum.invalid"
CLINIC = "Cabinet des Tilleuls (fictif)"
WARNING = "DEMO ONLY: fictitious people and data; never use this platform for real patients."


class DemoAlreadySeeded(RuntimeError):
    """The platform already has an administrator: the demo clinic is not created twice."""


@dataclass(frozen=True)
class Person:
    key: str
    role: Role
    display_name: str
    password: str
    specialty: str | None = None

    @property
    def email(self) -> str:
        return f"{self.key}@{DOMAIN}"


PEOPLE = (
    Person("admin", Role.ADMIN, "Alice Admin (démo)", "demo admin violet harbour lantern"),
    Person("dpo", Role.DPO, "Denis Délégué (démo)", "demo dpo copper meadow whistle"),
    Person(
        "gp",
        Role.PRACTITIONER,
        "Dr Gabrielle Martin (démo)",
        "demo doctor amber river compass",
        "general-practice",
    ),
    Person(
        "radio",
        Role.PRACTITIONER,
        "Dr Raphaël Petit (démo)",
        "demo radiology quartz orchard signal",
        "radiology",
    ),
    Person("paul", Role.PATIENT, "Paul Exemple (démo)", "demo patient maple tide lantern"),
    Person("lea", Role.PATIENT, "Léa Fictive (démo)", "demo patient cedar spark ribbon"),
    Person("hugo", Role.PATIENT, "Hugo Modèle (démo)", "demo patient juniper cloud anvil"),
)
#: (patient, family, given, gender, birth date)
IDENTITIES = {
    "paul": ("Exemple", "Paul", "male", "1962-04-11"),
    "lea": ("Fictive", "Léa", "female", "1988-09-23"),
    "hugo": ("Modèle", "Hugo", "male", "2001-01-30"),
}
#: Fictitious INS (test INS-NIR system): a practitioner outside the care team declares a
#: break-the-glass access by INS (see secretum.records.directory).
INS_TEST_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"
#: IssuerOfPatientID of the demo clinic's imaging.
DEMO_ISSUER = "CLINIQUE-DEMO"
DEMO_INS = {"paul": "162047512345671", "lea": "288097512345682", "hugo": "101017512345693"}
#: (LOINC, display, UCUM unit, value) per patient
MEASURES: dict[str, list[tuple[str, str, str, float]]] = {
    "paul": [
        ("8480-6", "Systolic blood pressure", "mm[Hg]", 142),
        ("8462-4", "Diastolic blood pressure", "mm[Hg]", 88),
        ("8867-4", "Heart rate", "/min", 71),
    ],
    "lea": [("2339-0", "Glucose [Mass/volume] in Blood", "g/L", 0.94)],
    "hugo": [("29463-7", "Body weight", "kg", 74.5)],
}
#: Dr Martin's availability: weekday mornings by video, afternoons on site (Paris time).
DEMO_HOURS = Availability(
    weekly=(
        *(WeeklyHours(d, time(9), time(12), 30, Modality.VIDEO) for d in range(5)),
        *(WeeklyHours(d, time(14), time(17), 30, Modality.ON_SITE) for d in range(5)),
    )
)
REPORT = (
    b"%PDF-1.4\n% Secretum demo: fictitious chest X-ray report, no real patient.\n"
    b"1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
)


def _rpps(n: int) -> str:
    """A fictitious RPPS number (11 digits with a valid Luhn check digit)."""
    body = f"1099999{n:03d}"
    return next(body + str(d) for d in range(10) if luhn_ok(body + str(d)))


def _instant(when: datetime) -> str:
    from secretum.records.fhir import instant

    return instant(when)


def seed_demo(
    platform: DemoPorts, now: datetime, *, echo: Callable[[str], object] = print
) -> dict[str, Any]:
    """Create the demo clinic on ``platform`` at ``now``; print and return the accounts.

    Returns ``{"clinic", "warning", "accounts": [{role, name, email, password, user_id,
    specialty, totp_secret}], "patients": {key: user_id}}``. Raises
    :class:`DemoAlreadySeeded` when the platform already has an administrator.
    """
    svc = platform.services
    identity = svc.identity
    with platform.engine.connect() as conn:
        if identity.core.accounts.admin_exists(conn):
            raise DemoAlreadySeeded("this platform already has an administrator")
    admin = PEOPLE[0]
    token = identity.accounts.create_setup_token(None, now)
    identity.accounts.complete_setup(
        token, email=admin.email, display_name=admin.display_name, password=admin.password, now=now
    )
    signed = identity.sign_in.sign_in_password(admin.email, admin.password, now=now)
    assert isinstance(signed, SignedIn)
    setup = identity.factors.begin_totp_setup(signed.session_id, now=now)
    enrolled = identity.factors.confirm_totp(
        signed.session_id, totp_code(setup.secret, time_step(now)), now=now
    )
    session_id = enrolled.session.session_id if enrolled.session else signed.session_id
    ids = {admin.key: signed.session.user_id}
    for n, person in enumerate(PEOPLE[1:]):
        practitioner = person.role is Role.PRACTITIONER
        invitation = identity.accounts.invite(
            session_id,
            email=person.email,
            role=person.role,
            display_name=person.display_name,
            now=now,
            specialty=person.specialty,
            rpps=_rpps(n) if practitioner else None,
        )
        assert invitation.token is not None
        ids[person.key] = identity.accounts.accept_invitation(
            invitation.token, password=person.password, now=now
        )
    _clinic(platform, ids, now)
    accounts = [
        {
            "role": str(p.role),
            "name": p.display_name,
            "email": p.email,
            "password": p.password,
            "user_id": ids[p.key],
            "specialty": p.specialty,
            "totp_secret": setup.secret if p.key == admin.key else None,
        }
        for p in PEOPLE
    ]
    result = {
        "clinic": CLINIC,
        "warning": WARNING,
        "accounts": accounts,
        "patients": {k: ids[k] for k in IDENTITIES},
    }
    print_accounts(result, echo)
    return result


def print_accounts(result: dict[str, Any], echo: Callable[[str], object] = print) -> None:
    """The demo accounts as a table people can copy from."""
    echo(f"{result['clinic']} — {result['warning']}")
    for a in result["accounts"]:
        extra = f"  TOTP secret: {a['totp_secret']}" if a["totp_secret"] else ""
        echo(f"  {a['role']:<13} {a['email']:<32} {a['password']}{extra}")
    echo("  Practitioners and the DPO set up a second factor at their first sign-in.")
    ins = ", ".join(f"{key} {value}" for key, value in DEMO_INS.items())
    echo(f"  Patients' INS (fictitious, for a break-the-glass declaration): {ins}")


def _clinic(platform: DemoPorts, ids: dict[str, str], now: datetime) -> None:
    """Care teams, consents and records, each through its guarded, audited use case."""
    svc = platform.services
    gp = Actor(ids["gp"], Role.PRACTITIONER, specialty="general-practice")
    radio = Actor(ids["radio"], Role.PRACTITIONER, specialty="radiology")
    texts = svc.consent.texts
    for key in IDENTITIES:
        pid = ids[key]
        patient = Actor(pid, Role.PATIENT)
        purposes = [Purpose.TELECONSULTATION, Purpose.REMOTE_MONITORING]
        team = [ids["gp"]]
        if key == "paul":
            purposes.append(Purpose.TELERADIOLOGY)
            team.append(ids["radio"])
        for practitioner_id in team:
            svc.choices.invite(
                RequestContext(patient, Purpose.PATIENT_REQUEST, now),
                patient_id=pid,
                practitioner_id=practitioner_id,
            )
        for purpose in purposes:
            svc.consent.grant(
                RequestContext(patient, Purpose.PATIENT_REQUEST, now),
                patient_id=pid,
                purpose=purpose,
                text_sha256=texts.current(purpose, "fr").sha256,
                method=ConsentMethod.WEB_CHECKBOX,
            )
        if key == "lea":
            svc.choices.name_for_restricted(
                RequestContext(patient, Purpose.PATIENT_REQUEST, now),
                patient_id=pid,
                practitioner_id=ids["gp"],
            )
        family, given, gender, birth = IDENTITIES[key]
        patient_json = {
            "resourceType": "Patient",
            "id": pid,
            "name": [{"family": family, "given": [given]}],
            "gender": gender,
            "birthDate": birth,
            "identifier": [{"system": INS_TEST_SYSTEM, "value": DEMO_INS[key]}],
        }
        care = Purpose.TELECONSULTATION
        svc.records.create(
            RequestContext(gp, care, now), patient_json, resource_id=pid, patient_id=pid
        )
        for i, (code, display, unit, value) in enumerate(MEASURES[key]):
            taken = now - timedelta(days=3 * (i + 1))
            svc.records.create(
                RequestContext(gp, care, now),
                _observation(pid, code, display, unit, value, taken),
                patient_id=pid,
            )
        if key == "lea":
            sensitive = _observation(pid, "72166-2", "Tobacco smoking status", "", 0, now)
            sensitive.pop("valueQuantity")
            sensitive["valueString"] = "Fictitious sensitive note (demo)"
            svc.records.create(
                RequestContext(gp, care, now),
                sensitive,
                patient_id=pid,
                sensitivity=Sensitivity.RESTRICTED,
            )
    report = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{ids['paul']}"},
        "date": _instant(now),
        "description": "Radiographie thoracique — compte rendu (fictif)",
        "content": [{"attachment": {}}],
    }
    svc.documents.create_document(
        RequestContext(radio, Purpose.TELERADIOLOGY, now),
        report,
        io.BytesIO(REPORT),
        "application/pdf",
        patient_id=ids["paul"],
    )
    svc.agenda.publish(RequestContext(gp, Purpose.OPERATIONS, now), DEMO_HOURS)
    _imaging(platform, ids, gp, now)


def _imaging(platform: DemoPorts, ids: dict[str, str], gp: Actor, now: datetime) -> None:
    """Paul's synthetic chest CT, sent by his GP, and his referral to the radiologist: it is
    on her worklist, waiting for a report."""
    from secretum.imaging.synthetic import synthetic_ct

    svc = platform.services
    sending = RequestContext(gp, Purpose.TELERADIOLOGY, now)
    svc.imaging.register_patient_identifier(sending, ids["paul"], DEMO_ISSUER, "DEMO-PAUL-1")
    svc.care_team.refer(
        RequestContext(gp, Purpose.TELECONSULTATION, now),
        patient_id=ids["paul"],
        practitioner_id=ids["radio"],
    )
    svc.imaging.ingest(sending, synthetic_ct("DEMO-PAUL-1", DEMO_ISSUER, "Exemple^Paul"))


def _observation(
    pid: str, code: str, display: str, unit: str, value: float, when: datetime
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": _instant(when),
        "valueQuantity": {
            "value": value,
            "unit": {"mm[Hg]": "mmHg", "Cel": "°C"}.get(unit, unit),
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }
