"""A clinic with appointments and call sockets, for the consult tests.

:func:`call_world` is :func:`web_world.clinic` (the patient ``own`` in the care team of ``gp``
with the teleconsultation consent, ``other``, ``nocare``, ``noconsent``, an admin, a DPO) with a
short policy re-check period; :func:`book` puts a video appointment in the agenda the way the
agenda does (its care relationship opened by the policy's primitive, the row tagged), and
:func:`socket` opens a call WebSocket as a signed-in user, from an allowed Origin unless told.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from secretum.access.model import Role
from secretum.agenda import store
from secretum.agenda.model import Modality
from secretum.audit.store import read_entries
from secretum.policy.choices import open_appointment_relationship
from secretum.web.deps import SESSION_COOKIE
from web_world import ADDRESS, PASSWORD, WebWorld, _enrol, clinic, rpps

#: How often the tests' calls re-check the policy (seconds).
RECHECK = 0.2


def call_world(tmp_path: Path, **settings: Any) -> WebWorld:
    settings.setdefault("consult_recheck_seconds", RECHECK)
    return clinic(tmp_path, **settings)


def book(
    world: WebWorld,
    patient: str = "own",
    practitioner: str = "gp",
    *,
    start: datetime | None = None,
    minutes: int = 30,
    modality: Modality = Modality.VIDEO,
) -> str:
    """A booked appointment of ``patient`` with ``practitioner`` (default: in 5 minutes)."""
    now = world.clock.now
    world.ids["booked"] = world.ids.get("booked", 0) + 1  # distinct starts: no double booking
    start = (start or now + timedelta(minutes=5)) - timedelta(seconds=world.ids["booked"])
    appointment_id = store.new_id()
    p, d = world.users[patient].user_id, world.users[practitioner].user_id
    with world.platform.engine.begin() as conn:
        relationship = open_appointment_relationship(
            conn, patient_id=p, practitioner_id=d, at=start, now=now, source_id=appointment_id
        )
        store.insert_appointment(
            conn,
            appointment_id=appointment_id,
            practitioner_id=d,
            patient_id=p,
            start=start,
            end=start + timedelta(minutes=minutes),
            modality=modality,
            purpose="teleconsultation",
            relationship_id=relationship,
            now=now,
        )
    return appointment_id


def origin(world: WebWorld) -> str:
    return world.platform.settings.base_url


def client(world: WebWorld) -> TestClient:
    return TestClient(world.app, base_url="https://testserver", client=ADDRESS)


@contextmanager
def socket(
    tc: TestClient,
    world: WebWorld,
    name: str | None,
    appointment_id: str,
    *,
    from_origin: str | None = "",
) -> Iterator[WebSocketTestSession]:
    """A call socket as ``name`` (no cookie if None), Origin the public URL unless given."""
    headers = {}
    if from_origin == "":
        from_origin = origin(world)
    if from_origin is not None:
        headers["origin"] = from_origin
    if name is not None:
        headers["cookie"] = f"{SESSION_COOKIE}={world.users[name].session_id}"
    with tc.websocket_connect(f"/consult/{appointment_id}/ws", headers=headers) as ws:
        yield ws


def until(ws: WebSocketTestSession, kind: str, limit: int = 20) -> dict[str, Any]:
    """The next message of type ``kind`` (others skipped)."""
    for _ in range(limit):
        message = json.loads(ws.receive_text())
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]
    raise AssertionError(f"no {kind!r} message")


def settled(world: WebWorld, appointment_id: str, prefix: str, count: int) -> list[str]:
    """The leave codes of the appointment once ``count`` of them start with ``prefix`` (a
    socket's leave is audited as its handler ends, just after the client saw the close)."""
    deadline = time.monotonic() + 5
    while True:
        codes = [e["outcome_desc"] or "" for e in entries(world, appointment_id)]
        if sum(c.startswith(prefix) for c in codes) >= count or time.monotonic() > deadline:
            return codes
        time.sleep(0.05)


def entries(world: WebWorld, appointment_id: str | None = None) -> list[dict[str, Any]]:
    """The audit entries (of the appointment, if given), oldest first."""
    with world.platform.engine.connect() as conn:
        found = list(read_entries(conn))
    if appointment_id is None:
        return found
    return [e for e in found if e["resource_id"] == appointment_id]


# -- guests of a call (a second practitioner, an interpreter) ----------------------------------

NAMES = {"interp": "Inès Interprète", "radio": "Dr Rachel Radiologue"}


def add_interpreter(world: WebWorld, name: str = "interp") -> None:
    """A staff account with the specialty ``interpreter`` (in no patient's care team)."""
    identity = world.services.identity
    email = f"{name}@clinic.test"
    invitation = identity.accounts.invite(
        world.users["admin"].session_id, email=email, role=Role.PRACTITIONER,
        display_name=NAMES["interp"], now=world.clock.now, specialty="interpreter",
        rpps=rpps(42),
    )  # fmt: skip
    assert invitation.token is not None
    identity.accounts.accept_invitation(invitation.token, password=PASSWORD, now=world.clock.now)
    world.users[name] = _enrol(world, name, Role.PRACTITIONER, email, "interpreter")


def accept(world: WebWorld, patient: str, aid: str, guest: str) -> Any:
    with world.client(patient) as tc:
        return tc.post(
            f"/me/appointments/{aid}/guests",
            data={"practitioner_id": world.users[guest].user_id},
        )


def withdraw(world: WebWorld, patient: str, aid: str, guest: str) -> Any:
    with world.client(patient) as tc:
        return tc.post(f"/me/appointments/{aid}/guests/{world.users[guest].user_id}/withdraw")


def closed(ws: WebSocketTestSession) -> tuple[int, str]:
    try:
        message = ws.receive_text()
    except WebSocketDisconnect as exc:
        return exc.code, exc.reason
    raise AssertionError(f"the socket was not closed, it sent {message!r}")


def refused(world: WebWorld, name: str, aid: str) -> tuple[int, str]:
    with client(world) as tc, socket(tc, world, name, aid) as ws:
        return closed(ws)
