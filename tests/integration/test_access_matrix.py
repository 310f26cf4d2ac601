"""The access matrix: every route under /me, /practice, /dpo, /fhir, /admin and /account, for
every role (patient, practitioner, admin, DPO, anonymous) and, where a route touches a patient's
data, every scenario (own patient, other patient, no care relationship, no consent).

The routes are enumerated from the app, so the matrix grows by itself; the expectations come
from :data:`EXPECTED`, a table written by hand from the policy (admins and DPOs never reach
health data; a practitioner needs the care team and the patient's consent; a patient reaches
only their own record). A route without a row fails the test: a new route must be classified.

Each cell is a real HTTP request with a real session (and CSRF header); the world is restored
from a snapshot before every state-changing request, so cells do not depend on their order.
The matrix is written to ``tests/artifacts/access_matrix.txt`` (git-ignored) and summarised.

Kinds: ``allow`` = 2xx/3xx (not a detour to sign-in or step-up); ``deny`` = 401/403/404;
``gate`` = past the authentication and role gate (not 401/403; the body may still be refused,
e.g. an unknown credential); ``out`` = signed out on purpose (3xx to the sign-in page);
``unauth`` = 401.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.routing import APIRoute

from identity_authenticator import PASSWORD
from imaging_web_world import seed_matrix_imaging
from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.model import Actor, Purpose, Role
from secretum.agenda.model import Availability, Modality, WeeklyHours
from secretum.consent.store import ConsentMethod
from web_world import PDF, WebWorld, clinic

PREFIXES = ("/me", "/practice", "/dpo", "/fhir", "/admin", "/account")
ROLES = {"patient": "own", "practitioner": "gp", "admin": "admin", "dpo": "dpo", "anonymous": None}
SCENARIOS = ("own", "other", "nocare", "noconsent")
PARIS = ZoneInfo("Europe/Paris")
NEW_PASSWORD = "orchid tandem wallpaper sings at dawn"
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "access_matrix.txt"
Spec = str | dict[str, str]


@dataclass(frozen=True)
class Row:
    """Expected kind per role (``{"own": ..., "*": ...}`` per scenario); unnamed roles are
    denied, anonymous callers get 401. ``scoped``: the route touches a patient's data."""

    patient: Spec = "deny"
    practitioner: Spec = "deny"
    admin: Spec = "deny"
    dpo: Spec = "deny"
    anonymous: Spec = "unauth"
    scoped: bool = False

    def expect(self, role: str, scenario: str) -> str:
        spec: Spec = getattr(self, role)
        if isinstance(spec, str):
            return spec
        return spec.get(scenario, spec["*"])


ANY_SIGNED_IN = dict(patient="gate", practitioner="gate", admin="gate", dpo="gate")
OWN_ONLY = {"own": "allow", "*": "deny"}
CARE_AND_CONSENT = {"own": "allow", "other": "allow", "*": "deny"}
CARE_TEAM = {"nocare": "deny", "*": "allow"}
PATIENT = Row(patient="allow")
PRACTITIONER = Row(practitioner="allow")
DPO = Row(dpo="allow")
ADMIN = Row(admin="allow")
ACCOUNT = Row(**ANY_SIGNED_IN)
SIGN_OUT = Row(patient="out", practitioner="out", admin="out", dpo="out")
OWN_ACCOUNT = Row(patient="allow", practitioner="allow", admin="allow", dpo="allow")
HEALTH_READ = Row(patient=OWN_ONLY, practitioner=CARE_AND_CONSENT, scoped=True)
HEALTH_WRITE = Row(practitioner=CARE_AND_CONSENT, scoped=True)

EXPECTED: dict[tuple[str, str], Row] = {
    # -- the patient's pages: their own record only (no patient id in the URL) --------------
    ("GET", "/me/record"): PATIENT,
    ("GET", "/me/documents/{document_id}"): Row(patient=OWN_ONLY, scoped=True),
    ("GET", "/me/consents"): PATIENT,
    ("POST", "/me/consents/grant"): PATIENT,
    ("POST", "/me/consents/withdraw"): PATIENT,
    ("GET", "/me/care-team"): PATIENT,
    ("POST", "/me/care-team/invite"): PATIENT,
    ("POST", "/me/care-team/appointment"): PATIENT,
    ("POST", "/me/care-team/end"): Row(patient=OWN_ONLY, scoped=True),
    ("POST", "/me/care-team/name"): PATIENT,
    ("POST", "/me/care-team/unname"): PATIENT,
    ("GET", "/me/access-log"): PATIENT,
    ("GET", "/me/rights"): PATIENT,
    ("GET", "/me/rights/export"): PATIENT,
    ("POST", "/me/rights/erasure"): PATIENT,
    ("POST", "/me/rights/restriction"): PATIENT,
    ("POST", "/me/rights/rectification"): PATIENT,
    # -- the patient's appointments (seeded: own and other with gp, nocare with radio) -------
    ("GET", "/me/appointments"): PATIENT,
    ("GET", "/me/appointments/book"): PATIENT,
    ("POST", "/me/appointments/book"): PATIENT,
    ("POST", "/me/appointments/{appointment_id}/cancel"): Row(patient=OWN_ONLY, scoped=True),
    ("GET", "/me/appointments/{appointment_id}/move"): Row(patient=OWN_ONLY, scoped=True),
    ("POST", "/me/appointments/{appointment_id}/move"): Row(patient=OWN_ONLY, scoped=True),
    # a guest of the call: accept radio into my appointment's call; withdraw gp, who is not a
    # guest (refused by the agenda, 400: past the gate)
    ("POST", "/me/appointments/{appointment_id}/guests"): Row(patient=OWN_ONLY, scoped=True),
    ("POST", "/me/appointments/{appointment_id}/guests/{practitioner_id}/withdraw"): Row(
        patient={"own": "gate", "*": "deny"}, scoped=True
    ),
    # -- the practitioner's agenda: their own; a note on their own appointment (care team and
    # consent; before the consultation began, refused as too early: past the gate) ---------
    ("GET", "/practice/agenda"): PRACTITIONER,
    ("GET", "/practice/availability"): PRACTITIONER,
    ("POST", "/practice/availability"): PRACTITIONER,
    ("GET", "/practice/agenda/{appointment_id}/note"): Row(
        practitioner=CARE_AND_CONSENT, scoped=True
    ),
    ("POST", "/practice/agenda/{appointment_id}/note"): Row(
        practitioner={"own": "gate", "other": "gate", "*": "deny"}, scoped=True
    ),
    # -- the practitioner's pages: care team + consent for the purpose -----------------------
    ("GET", "/practice/patients"): PRACTITIONER,
    ("POST", "/practice/patients"): PRACTITIONER,  # search my patients
    ("GET", "/practice/patients/{patient_id}"): HEALTH_WRITE,
    ("POST", "/practice/patients/{patient_id}/file"): HEALTH_WRITE,
    ("POST", "/practice/patients/{patient_id}/observations"): HEALTH_WRITE,
    ("POST", "/practice/patients/{patient_id}/documents"): HEALTH_WRITE,
    ("GET", "/practice/documents/{document_id}"): HEALTH_WRITE,
    # a referral is care: the care team and a consent for the purpose
    ("POST", "/practice/patients/{patient_id}/referrals"): HEALTH_WRITE,
    # a paper consent needs the care team (and a step-up), not a consent
    ("POST", "/practice/patients/{patient_id}/consents"): Row(practitioner=CARE_TEAM, scoped=True),
    ("GET", "/practice/break-glass"): PRACTITIONER,
    # imaging: the studies, a study's series, the viewer; frames under the viewing's ticket
    ("GET", "/practice/patients/{patient_id}/imaging"): HEALTH_WRITE,
    ("GET", "/practice/patients/{patient_id}/imaging/studies/{study_uid}"): HEALTH_WRITE,
    (
        "GET",
        "/practice/patients/{patient_id}/imaging/studies/{study_uid}/series/{series_uid}",
    ): HEALTH_WRITE,
    ("GET", "/practice/imaging/view/{ticket}/frames/{sop_uid}/{number}"): HEALTH_WRITE,
    ("GET", "/practice/imaging/view/{ticket}/series/{series_uid}/thumbnail"): HEALTH_WRITE,
    # an emergency is declared for any patient (step-up, reason); its grant is the holder's
    ("POST", "/practice/break-glass"): Row(practitioner="allow", scoped=True),
    ("POST", "/practice/break-glass/{grant_id}/stop"): Row(practitioner="allow", scoped=True),
    # -- the DPO: the audit and the break-the-glass reviews, never health data ----------------
    ("GET", "/dpo/audit"): DPO,
    ("POST", "/dpo/audit/verify"): DPO,
    ("GET", "/dpo/audit/entries"): DPO,
    ("GET", "/dpo/break-glass"): DPO,
    ("POST", "/dpo/break-glass/{grant_id}/reason"): Row(dpo="allow", scoped=True),
    ("POST", "/dpo/break-glass/{grant_id}/review"): Row(dpo="allow", scoped=True),
    # -- FHIR API: any session passes the gate, the policy decides ----------------------------
    ("GET", "/fhir/Patient/{patient_id}/$everything"): HEALTH_READ,
    ("GET", "/fhir/DocumentReference/{document_id}/$content"): HEALTH_READ,
    ("POST", "/fhir/{resource_type}"): HEALTH_WRITE,
    ("GET", "/fhir/{resource_type}"): HEALTH_READ,
    ("GET", "/fhir/{resource_type}/{resource_id}"): HEALTH_READ,
    ("GET", "/fhir/{resource_type}/{resource_id}/_history"): HEALTH_READ,
    ("GET", "/fhir/{resource_type}/{resource_id}/_history/{version_id}"): HEALTH_READ,
    ("PUT", "/fhir/{resource_type}/{resource_id}"): HEALTH_WRITE,
    # the agenda: public hours for those who book or care; appointments are health data
    ("GET", "/fhir/Schedule/{practitioner_id}"): Row(patient="allow", practitioner="allow"),
    ("GET", "/fhir/Slot"): Row(patient="allow", practitioner="allow"),
    ("POST", "/fhir/Appointment"): PATIENT,
    ("GET", "/fhir/Appointment"): HEALTH_READ,
    ("GET", "/fhir/Appointment/{appointment_id}"): HEALTH_READ,
    ("PUT", "/fhir/Appointment/{appointment_id}"): Row(patient=OWN_ONLY, scoped=True),
    ("GET", "/fhir/Encounter"): HEALTH_READ,
    # -- administration: administrators only, never health data ------------------------------
    ("GET", "/admin/users"): ADMIN,
    ("POST", "/admin/users/{user_id}/status"): Row(admin="gate"),
    ("POST", "/admin/users/{user_id}/reset-mfa"): Row(admin="gate"),
    ("GET", "/admin/invitations"): ADMIN,
    ("POST", "/admin/invitations"): Row(admin="gate"),
    ("POST", "/admin/invitations/{user_id}/renew"): Row(admin="gate"),
    ("GET", "/admin/settings"): ADMIN,
    ("POST", "/admin/settings"): Row(admin="gate"),
    # -- one's own account: every signed-in role ----------------------------------------------
    ("GET", "/account/security"): Row(
        patient="allow", practitioner="allow", admin="allow", dpo="allow"
    ),
    ("POST", "/account/credentials/{ref}/rename"): ACCOUNT,
    ("POST", "/account/credentials/{ref}/revoke"): ACCOUNT,
    ("POST", "/account/totp/remove"): ACCOUNT,
    ("POST", "/account/recovery-codes"): ACCOUNT,
    ("POST", "/account/sessions/{ref}/revoke"): ACCOUNT,
    ("POST", "/account/sign-out-everywhere"): SIGN_OUT,
    ("POST", "/account/password"): OWN_ACCOUNT,
    ("GET", "/account/mfa"): Row(patient="allow", practitioner="allow", admin="allow", dpo="allow"),
    ("POST", "/account/credentials/options"): ACCOUNT,
    ("POST", "/account/credentials/verify"): ACCOUNT,
    ("POST", "/account/totp/setup"): ACCOUNT,
    ("GET", "/account/totp/qr.svg"): ACCOUNT,
    ("POST", "/account/totp/confirm"): ACCOUNT,
    ("GET", "/account/recovery-codes"): ACCOUNT,
    ("GET", "/account/step-up"): ACCOUNT,
    ("POST", "/account/step-up/options"): ACCOUNT,
    ("POST", "/account/step-up/verify"): ACCOUNT,
    ("POST", "/account/step-up/totp"): OWN_ACCOUNT,
    ("POST", "/account/step-up/again"): SIGN_OUT,
    # every account of the matrix has a second factor: its password never stands in for it
    ("POST", "/account/step-up/password"): Row(),
}


@dataclass
class Cell:
    route: str
    role: str
    scenario: str
    expected: str
    status: int
    location: str = ""

    @property
    def passed(self) -> bool:
        return kind_matches(self.expected, self.status, self.location)


def kind_matches(expected: str, status: int, location: str) -> bool:
    detour = location.startswith(("/sign-in", "/account/step-up"))
    if expected == "allow":
        return 200 <= status < 400 and not detour
    if expected == "deny":
        return status in (401, 403, 404)
    if expected == "gate":
        return status < 500 and status not in (401, 403) and not location.startswith("/sign-in")
    if expected == "out":
        return 300 <= status < 400 and location.startswith("/sign-in")
    return status == 401


def routes(world: WebWorld) -> list[tuple[str, str]]:
    """(method, path) of every API route under :data:`PREFIXES`."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI without included-router contexts: app.routes holds them
        found = [r for r in world.app.routes if isinstance(r, APIRoute)]
        pairs = [(m, r.path) for r in found for m in r.methods]
    else:
        contexts = [
            c for c in iter_route_contexts(world.app.routes) if isinstance(c.route, APIRoute)
        ]
        pairs = [(m, str(c.path)) for c in contexts for m in (c.methods or ())]
    return sorted(
        {
            (m, p)
            for m, p in pairs
            if m in ("GET", "POST", "PUT", "DELETE", "PATCH") and p.startswith(PREFIXES)
        },
        key=lambda mp: (mp[1], mp[0]),
    )


# -- filling paths and bodies ---------------------------------------------------------------


def fresh_patient(world: WebWorld, scenario: str) -> str:
    """A new patient without a file, with the scenario's care team and consents for ``gp``."""
    identity, svc, now = world.services.identity, world.services, world.clock.now
    email = f"fresh-{scenario}-{len(world.ids)}@clinic.test"
    invitation = identity.accounts.invite(
        world.users["admin"].session_id,
        email=email,
        role=Role.PATIENT,
        display_name="Fresh Patient",
        now=now,
    )
    assert invitation.token is not None
    pid = identity.accounts.accept_invitation(invitation.token, password=PASSWORD, now=now)
    actor = Actor(pid, Role.PATIENT)
    if scenario != "nocare":
        svc.choices.invite(
            RequestContext(actor, Purpose.PATIENT_REQUEST, now),
            patient_id=pid,
            practitioner_id=world.users["gp"].user_id,
        )
    if scenario != "noconsent":
        svc.consent.grant(
            RequestContext(actor, Purpose.PATIENT_REQUEST, now),
            patient_id=pid,
            purpose=Purpose.TELECONSULTATION,
            text_sha256=svc.consent.texts.current(Purpose.TELECONSULTATION, "fr").sha256,
            method=ConsentMethod.WEB_CHECKBOX,
        )
    return pid


def fill(
    world: WebWorld, user: str | None, method: str, path: str, target: str
) -> tuple[str, dict[str, Any]]:
    """The URL and request options of one cell: ``user`` asks about the ``target`` patient."""
    ids, users = world.ids, world.users
    pid = users[target].user_id
    if path == "/practice/patients/{patient_id}/file":
        pid = fresh_patient(world, target)
    params = {
        "patient_id": pid,
        "document_id": ids[f"doc:{target}"],
        "resource_type": "Observation",
        "resource_id": ids[f"obs:{target}"],
        "version_id": "1",
        "grant_id": ids[f"grant:{target}"],
        "user_id": users["radio"].user_id,
        "ref": "0" * 64,
        "study_uid": ids[f"study:{target}"],
        "series_uid": ids[f"series:{target}"],
        "sop_uid": ids[f"sops:{target}"][0],
        "number": "1",
        "ticket": _viewing_ticket(world, user, target) if "{ticket}" in path else "",
        "appointment_id": ids.get(f"appt:{target}", "0" * 32),
        "practitioner_id": users["gp"].user_id,
    }
    try:
        url = path.format(**params)
    except KeyError as missing:
        pytest.fail(f"{method} {path}: add a value for the path parameter {missing} in fill()")
    body = BODIES.get((method, path))
    options = body(world, user, target, pid) if body else ({"data": {}} if method != "GET" else {})
    return url, options


def _viewing_ticket(world: WebWorld, user: str | None, target: str) -> str:
    """The caller's own viewing ticket of the target's series when the policy lets them open
    it; else a ticket of the radiologist's session (presented by anyone else: refused)."""
    if user is None or world.users[user].role is not Role.PRACTITIONER:
        return str(world.ids["ticket:any"])
    who = world.users[user]
    actor = Actor(who.user_id, Role.PRACTITIONER, specialty=who.specialty)
    try:
        viewing = world.services.imaging_viewer.open(
            RequestContext(actor, Purpose.TELECONSULTATION, world.clock.now),
            world.ids[f"study:{target}"],
            world.ids[f"series:{target}"],
            binding=who.session_id,
        )
    except (AccessDenied, LookupError):
        return str(world.ids["ticket:any"])
    return viewing.ticket


def _team_rel(world: WebWorld, target: str) -> str:
    member = "radio" if target == "nocare" else "gp"
    return str(world.ids[f"rel:{target}:{member}"])


def _obs(world: WebWorld, pid: str) -> dict[str, Any]:
    from web_world import observation

    return observation(pid, "matrix-value")


def _totp(world: WebWorld, user: str | None) -> str:
    from secretum.identity.factors import time_step, totp_code

    secret = world.users[user].totp_secret if user else "A" * 32
    return totp_code(secret, time_step(world.clock.now))


Body = Callable[[WebWorld, str | None, str, str], dict[str, Any]]
BODIES: dict[tuple[str, str], Body] = {
    ("POST", "/me/consents/grant"): lambda w, u, t, p: {
        "data": {
            "purpose": "remote-monitoring",
            "text_sha256": w.services.consent.texts.current(Purpose.REMOTE_MONITORING, "fr").sha256,
        }
    },
    ("POST", "/me/consents/withdraw"): lambda w, u, t, p: {"data": {"purpose": "teleconsultation"}},
    ("POST", "/me/appointments/{appointment_id}/guests"): lambda w, u, t, p: {
        "data": {"practitioner_id": w.users["radio"].user_id}
    },
    ("POST", "/me/care-team/invite"): lambda w, u, t, p: {
        "data": {"practitioner_id": w.users["gp"].user_id}
    },
    ("POST", "/me/care-team/appointment"): lambda w, u, t, p: {
        "data": {
            "practitioner_id": w.users["gp"].user_id,
            "at": (w.clock.now + timedelta(days=3)).astimezone(PARIS).strftime("%Y-%m-%dT%H:%M"),
        }
    },
    ("POST", "/me/care-team/end"): lambda w, u, t, p: {
        "data": {"relationship_id": _team_rel(w, t)}
    },
    ("POST", "/me/care-team/name"): lambda w, u, t, p: {
        "data": {"practitioner_id": w.users["gp"].user_id}
    },
    ("POST", "/me/care-team/unname"): lambda w, u, t, p: {
        "data": {"practitioner_id": w.users["gp"].user_id}
    },
    ("POST", "/me/rights/erasure"): lambda w, u, t, p: {"data": {"confirm": "yes"}},
    ("POST", "/me/rights/restriction"): lambda w, u, t, p: {"data": {"restricted": "on"}},
    ("POST", "/me/rights/rectification"): lambda w, u, t, p: {"data": {"text": "matrix request"}},
    ("POST", "/practice/patients/{patient_id}/file"): lambda w, u, t, p: {
        "data": {"family": "Matrix", "given": "Fresh", "gender": "unknown"}
    },
    ("POST", "/practice/patients/{patient_id}/observations"): lambda w, u, t, p: {
        "data": {"code": "heart-rate", "value": "72"}
    },
    ("POST", "/practice/patients/{patient_id}/documents"): lambda w, u, t, p: {
        "data": {"title": "matrix document"},
        "files": {"file": ("m.pdf", io.BytesIO(PDF), "application/pdf")},
    },
    ("POST", "/practice/patients/{patient_id}/referrals"): lambda w, u, t, p: {
        "data": {"practitioner_id": w.users["radio"].user_id}
    },
    ("POST", "/practice/patients/{patient_id}/consents"): lambda w, u, t, p: {
        "data": {"purpose": "teleradiology", "change": "grant", "signed_on": "2026-03-02"},
        "files": {"form_file": ("form.pdf", io.BytesIO(PDF), "application/pdf")},
    },
    ("POST", "/practice/break-glass"): lambda w, u, t, p: {
        "data": {"patient_id": p, "reason": "matrix emergency"}
    },
    ("POST", "/dpo/break-glass/{grant_id}/review"): lambda w, u, t, p: {
        "data": {"outcome": "justified"}
    },
    ("GET", "/fhir/{resource_type}"): lambda w, u, t, p: {"params": {"patient": p}},
    ("POST", "/fhir/{resource_type}"): lambda w, u, t, p: {"json": _obs(w, p)},
    ("POST", "/account/password"): lambda w, u, t, p: {
        "data": {"current": PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    },
    ("POST", "/account/step-up/totp"): lambda w, u, t, p: {"data": {"code": _totp(w, u)}},
    ("POST", "/account/step-up/password"): lambda w, u, t, p: {"data": {"password": PASSWORD}},
    ("PUT", "/fhir/{resource_type}/{resource_id}"): lambda w, u, t, p: {
        "json": {**_obs(w, p), "id": w.ids[f"obs:{t}"]},
        "headers": {"If-Match": 'W/"1"'},
    },
    ("GET", "/me/appointments/book"): lambda w, u, t, p: {
        "params": {"practitioner_id": w.users["gp"].user_id}
    },
    ("POST", "/me/appointments/book"): lambda w, u, t, p: {
        "data": {"practitioner_id": w.users["gp"].user_id, "start": _wednesday(11).isoformat()}
    },
    ("POST", "/me/appointments/{appointment_id}/move"): lambda w, u, t, p: {
        "data": {"start": _wednesday(10).isoformat()}
    },
    ("POST", "/practice/agenda/{appointment_id}/note"): lambda w, u, t, p: {
        "data": {"text": "matrix note"}
    },
    ("GET", "/fhir/Slot"): lambda w, u, t, p: {
        "params": {"schedule": f"Schedule/{w.users['gp'].user_id}"}
    },
    ("POST", "/fhir/Appointment"): lambda w, u, t, p: {"json": _booking(w, 11, 30)},
    ("GET", "/fhir/Appointment"): lambda w, u, t, p: {"params": {"patient": p}},
    ("PUT", "/fhir/Appointment/{appointment_id}"): lambda w, u, t, p: {
        "json": {**_booking(w, 9), "id": w.ids.get(f"appt:{t}", "0" * 32), "status": "cancelled"}
    },
    ("GET", "/fhir/Encounter"): lambda w, u, t, p: {
        "params": {"appointment": w.ids.get(f"appt:{t}", "0" * 32)}
    },
}


def _wednesday(hour: int, minute: int = 0) -> datetime:
    """A slot of the seeded availability: Wednesday 4 March 2026, Paris time."""
    return datetime(2026, 3, 4, hour, minute, tzinfo=PARIS)


def _booking(world: WebWorld, hour: int, minute: int = 0) -> dict[str, Any]:
    gp = world.users["gp"].user_id
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": _wednesday(hour, minute).isoformat(),
        "participant": [{"actor": {"reference": f"Practitioner/{gp}"}, "status": "accepted"}],
    }


def seed_appointments(world: WebWorld) -> None:
    """gp and radio publish mornings; own (09:00) and other (09:30) book gp, nocare books
    radio (gp stays out of nocare's care team); noconsent cannot book."""
    agenda, now = world.services.agenda, world.clock.now
    mornings = Availability(
        weekly=tuple(WeeklyHours(d, time(9), time(12), 30, Modality.VIDEO) for d in range(7))
    )
    for doctor in ("gp", "radio"):
        actor = world.users[doctor].actor
        agenda.publish(RequestContext(actor, Purpose.OPERATIONS, now), mornings)
    for name, doctor, minute in (("own", "gp", 0), ("other", "gp", 30), ("nocare", "radio", 0)):
        booked = agenda.book(
            RequestContext(world.users[name].actor, Purpose.TELECONSULTATION, now),
            world.users[doctor].user_id,
            _wednesday(9, minute),
        )
        world.ids[f"appt:{name}"] = booked.appointment_id


# -- the world of the matrix ------------------------------------------------------------------


@dataclass
class Matrix:
    world: WebWorld
    snapshot: Path
    cells: list[Cell] = field(default_factory=list)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    world = clinic(tmp_path_factory.mktemp("matrix"))
    seed_matrix_imaging(world)
    seed_appointments(world)
    then = world.clock.now
    gp = world.users["gp"]
    actor = Actor(gp.user_id, Role.PRACTITIONER, strong_auth_at=then)
    for name in SCENARIOS:  # expired grants of gp: the DPO reviews them, gp may close them
        grant = world.services.break_glass.declare(
            RequestContext(actor, Purpose.EMERGENCY, then),
            world.users[name].user_id,
            "matrix grant",
            duration=timedelta(minutes=1),
        )
        world.ids[f"grant:{name}"] = grant.grant_id
    world.clock.advance(minutes=2)
    for name in ("own", "gp", "admin", "dpo"):
        world.step_up(name)
    world.clock.advance(seconds=30)  # a TOTP time step nobody used yet
    snapshot = tmp_path_factory.mktemp("snapshot") / "data"
    world.snapshot(snapshot)
    return Matrix(world, snapshot)


def run_matrix(m: Matrix) -> list[Cell]:
    world, cells, dirty = m.world, [], False
    for method, path in routes(world):
        row = EXPECTED.get((method, path))
        if row is None:
            continue
        for role, user in ROLES.items():
            for scenario in SCENARIOS if row.scoped else ("-",):
                if dirty or method != "GET" or path.endswith("/file"):
                    world.restore(m.snapshot)
                dirty = method != "GET" or path.endswith("/file")
                target = "own" if scenario == "-" else scenario
                url, options = fill(world, user, method, path, target)
                response = world.client(user).request(method, url, **options)
                location = response.headers.get("location", "")
                cells.append(
                    Cell(
                        f"{method} {path}",
                        role,
                        scenario,
                        row.expect(role, scenario),
                        response.status_code,
                        location,
                    )
                )
    world.restore(m.snapshot)
    return cells


SHORT = {
    "patient": "pat",
    "practitioner": "pra",
    "admin": "adm",
    "dpo": "dpo",
    "anonymous": "ano",
    "-": "-",
    "own": "own",
    "other": "oth",
    "nocare": "ncr",
    "noconsent": "ncs",
}


def write_report(cells: list[Cell]) -> str:
    """The matrix as a table (one line per route), written to :data:`ARTIFACT`; a summary."""
    columns = [(r, s) for r in ROLES for s in ("-", *SCENARIOS)]
    used = [c for c in columns if any(x.role == c[0] and x.scenario == c[1] for x in cells)]
    by_route: dict[str, dict[tuple[str, str], Cell]] = {}
    for cell in cells:
        by_route.setdefault(cell.route, {})[(cell.role, cell.scenario)] = cell
    width = max(len(r) for r in by_route) + 1
    lines = [" " * width + " ".join(f"{SHORT[r]}.{SHORT[s]:<4}" for r, s in used)]
    for route, row in by_route.items():
        marks = []
        for col in used:
            cell = row.get(col)
            mark = "" if cell is None else f"{cell.expected[0].upper()}{cell.status}"
            marks.append(f"{mark + ('' if cell is None or cell.passed else '!'):<8}")
        lines.append(f"{route:<{width}}" + " ".join(marks).rstrip())
    kinds = Counter((c.expected, c.passed) for c in cells)
    failures = sum(n for (_, ok), n in kinds.items() if not ok)
    counts = ", ".join(f"{k} {n}" for (k, ok), n in sorted(kinds.items()) if ok)
    summary = f"{len(by_route)} routes, {len(cells)} cells: {counts}; failures {failures}"
    legend = (
        "A=allow D=deny G=gate O=signed out U=unauth, then the HTTP status; ! = not as "
        "expected. Columns: role.scenario (- = the route names no patient)"
    )
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text("\n".join([summary, legend, "", *lines, ""]), encoding="utf-8")
    return summary


def test_every_route_is_classified(matrix: Matrix) -> None:
    missing = [f"{m} {p}" for m, p in routes(matrix.world) if (m, p) not in EXPECTED]
    assert not missing, f"routes without an expectation row (classify them): {missing}"


def test_access_matrix(matrix: Matrix) -> None:
    cells = run_matrix(matrix)
    summary = write_report(cells)
    print(f"\naccess matrix: {summary} (table: {ARTIFACT})")
    wrong = [
        f"{c.route} as {c.role}/{c.scenario}: expected {c.expected}, got {c.status}"
        f"{' -> ' + c.location if c.location else ''}"
        for c in cells
        if not c.passed
    ]
    assert not wrong, "\n".join(wrong)
    assert {c.role for c in cells} == set(ROLES)
