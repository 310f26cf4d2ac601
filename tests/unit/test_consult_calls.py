"""The signaling without a web server: :class:`Calls` on fake sockets and a stub service."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose
from secretum.access.model import Role as AccountRole
from secretum.consult.model import Admission, EndReason, Role
from secretum.consult.rooms import LocalHub
from secretum.consult.signaling import Calls

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class FakePeer:
    inbox: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    async def receive(self) -> str | bytes | None:
        return await self.inbox.get()

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.inbox.put_nowait(None)


@dataclass
class Stub:
    """A consult service whose re-check fails (the database is down) and whose leaves are
    recorded."""

    leaves: list[EndReason] = field(default_factory=list)

    def still_allowed(self, actor: Actor, appointment_id: str, now: datetime) -> EndReason | None:
        raise ConnectionError("database down")

    def leave(
        self, ctx: RequestContext, admission: Admission, reason: EndReason, now: datetime
    ) -> None:
        self.leaves.append(reason)


def admission(role: Role) -> Admission:
    return Admission("a1", "p", "d", "d", role, T0, T0 + timedelta(minutes=30), "n", "o", T0)


def test_a_recheck_that_cannot_ask_the_policy_ends_the_call() -> None:
    stub = Stub()
    calls = Calls(stub, LocalHub, clock=lambda: T0, recheck_seconds=0.05)  # type: ignore[arg-type]
    peer = FakePeer()
    ctx = RequestContext(Actor("d", AccountRole.PRACTITIONER), Purpose.TELECONSULTATION, T0)

    async def run() -> None:
        await asyncio.wait_for(calls.serve(peer, admission(Role.PRACTITIONER), ctx), 5)

    asyncio.run(run())
    assert peer.closed == (4410, "policy")
    assert peer.sent[-1] == {"type": "ended", "reason": "policy"}
    assert stub.leaves == [EndReason.POLICY]
    assert calls.rooms == {}
