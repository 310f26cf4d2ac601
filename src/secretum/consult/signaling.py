"""The signaling of calls: one :class:`Calls` per instance serves each participant's socket.

A socket reaches :meth:`Calls.serve` already authenticated (session cookie, Origin) and
admitted by the join decision (:meth:`ConsultService.join`, one audit entry): it gets a random
participant id (``pid``), ``welcome`` (with the TURN credentials), then waits (a patient:
``waiting``; the practitioner sees them in ``lobby`` and ``admit``-s them) or is in the call
at once (the practitioner). Admitted participants exchange ``signal`` (SDP, ICE) and ``key``
(commitments, then public keys) messages; the server relays them as they are, through the
:class:`~secretum.consult.rooms.Hub` (this process, or Redis across instances), and never keeps,
logs or audits them.

Every frame is checked: at most 64 KiB, text, at most 50 a second, a known message with exactly
its fields; anything else closes the socket with 4400 (the server and the other sockets go on).
Every ``recheck_seconds`` the join's conditions are asked again (the session still live, the
consent, the care relationship, the time): when one no longer holds, the participant gets
``ended`` and the socket closes with 4410 (4401 when the session ended). The leave is audited
with its reason and the call's duration (:meth:`ConsultService.leave`).

Each socket has a bounded outbox drained by a writer task: a participant that stops reading
is closed rather than holding the others up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from secretum.access.context import RequestContext
from secretum.consult.messages import (
    MAX_FRAME_BYTES,
    MAX_PER_SECOND,
    Admit,
    Key,
    Leave,
    Ping,
    Signal,
    parse,
)
from secretum.consult.model import Admission, EndReason, Role
from secretum.consult.rooms import Envelope, Hub, Member
from secretum.consult.service import ConsultService
from secretum.consult.turn import TurnConfig, credentials
from secretum.logs import get_logger

_log = get_logger("secretum.consult.signaling")

# Close codes (docs/call-protocol.md).
NORMAL = 1000
BAD_MESSAGE = 4400
UNAUTHENTICATED = 4401
REFUSED = 4403
REPLACED = 4409
ENDED = 4410
#: Messages waiting for a slow reader before it is closed.
OUTBOX_SIZE = 256


class Peer(Protocol):
    """A participant's socket, as the web layer adapts it."""

    async def receive(self) -> str | bytes | None:
        """The next frame; None once the socket is closed."""
        ...

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


#: Is the participant's session still live? (None: no session to check)
SessionAlive = Callable[[], Awaitable[bool]]


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


@dataclass(eq=False)
class _Conn:
    pid: str
    admission: Admission
    peer: Peer
    admitted: bool
    outbox: asyncio.Queue[tuple[str, int, str] | str] = field(
        default_factory=lambda: asyncio.Queue(OUTBOX_SIZE)
    )
    end_reason: EndReason | None = None
    closing: bool = False

    @property
    def role(self) -> Role:
        return self.admission.role

    def push(self, message: dict[str, Any]) -> None:
        if self.closing:
            return
        try:
            self.outbox.put_nowait(_dump(message))
        except asyncio.QueueFull:
            self.end(None, 1008, "slow")

    def end(self, message: dict[str, Any] | None, code: int, reason: str) -> None:
        """Send ``message`` (if any), then close with ``code``; once."""
        if self.closing:
            return
        if message is not None:
            with contextlib.suppress(asyncio.QueueFull):  # the close below still goes
                self.outbox.put_nowait(_dump(message))
        self.closing = True
        while True:  # the close always finds a place, even in a full outbox
            try:
                self.outbox.put_nowait(("close", code, reason))
                return
            except asyncio.QueueFull:
                self.outbox.get_nowait()


class _Room:
    """This instance's sockets of one call, and the call's admitted participants as the
    envelopes passing by tell them (``joined``, ``admitted``, ``left``; seeded from the hub
    when a socket enters): a signal's target is checked here, without a round trip."""

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.local: dict[str, _Conn] = {}
        self.admitted: set[str] = set()

    def _track(self, envelope: Envelope, message: dict[str, Any] | None) -> None:
        kind = message.get("type") if message is not None else None
        if envelope.get("admit"):
            self.admitted.add(str(envelope.get("to")))
        elif kind == "joined" and message is not None:
            self.admitted.add(str(message.get("pid")))
        elif kind == "left" and message is not None:
            self.admitted.discard(str(message.get("pid")))
        if envelope.get("close") is not None:
            self.admitted.discard(str(envelope.get("to")))

    async def deliver(self, envelope: Envelope) -> None:
        to, message = envelope.get("to"), envelope.get("msg")
        self._track(envelope, message)
        if to == "admitted" or to == "practitioners":
            skip = envelope.get("except")
            for each in list(self.local.values()):
                wanted = each.admitted if to == "admitted" else each.role is Role.PRACTITIONER
                if each.pid != skip and wanted and message is not None:
                    each.push(message)
            return
        conn = self.local.get(str(to))
        if conn is None:
            return
        if envelope.get("admit"):
            conn.admitted = True
        close = envelope.get("close")
        if close is not None:
            if close[0] == REPLACED:
                conn.end_reason = EndReason.REPLACED
            conn.end(message, int(close[0]), str(close[1]))
        elif message is not None and (conn.admitted or message.get("type") != "signal"):
            conn.push(message)


class Calls:
    """Serves every call socket of this instance (module doc)."""

    def __init__(
        self,
        service: ConsultService,
        hub_factory: Callable[[], Hub],
        *,
        clock: Callable[[], datetime],
        turn: TurnConfig | None = None,
        recheck_seconds: float = 15.0,
        witnessed: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.service = service
        self._hub_factory = hub_factory
        self._hub: Hub | None = None
        self.clock = clock
        self.turn = turn
        self.recheck_seconds = recheck_seconds
        self.witnessed = witnessed
        self.rooms: dict[str, _Room] = {}

    @property
    def hub(self) -> Hub:
        if self._hub is None:  # made in the running loop (Redis connections belong to it)
            self._hub = self._hub_factory()
        return self._hub

    async def close(self) -> None:
        if self._hub is not None:
            await self._hub.close()
            self._hub = None

    def ice_servers(self, user_id: str) -> list[dict[str, Any]]:
        return credentials(self.turn, user_id, self.clock())

    # -- one socket ----------------------------------------------------------------------------

    async def serve(
        self,
        peer: Peer,
        admission: Admission,
        ctx: RequestContext,
        *,
        session_alive: SessionAlive | None = None,
    ) -> None:
        """Run one participant's socket until it closes; the leave is audited."""
        conn = _Conn(
            pid=secrets.token_urlsafe(12),
            admission=admission,
            peer=peer,
            admitted=admission.role is Role.PRACTITIONER,
        )
        writer = asyncio.create_task(self._write(conn))
        checker = asyncio.create_task(self._recheck(conn, ctx, session_alive))
        room: _Room | None = None
        try:
            room = await self._enter(conn)
            reader = asyncio.create_task(self._read(conn, room))
            # once the socket is closed by this side (writer done), the call is over for this
            # participant: no waiting for the other side's close frame
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        finally:
            checker.cancel()
            # the leave runs to its end even if this task is cancelled (server shutdown)
            await asyncio.shield(asyncio.create_task(self._leave(conn, room, writer, ctx)))

    async def _leave(
        self, conn: _Conn, room: _Room | None, writer: asyncio.Task[None], ctx: RequestContext
    ) -> None:
        if not conn.closing:
            conn.end(None, NORMAL, "")
        try:
            await asyncio.wait_for(writer, timeout=5)
        except (TimeoutError, asyncio.CancelledError, Exception):
            writer.cancel()
        try:
            if room is not None:
                await self._exit(conn, room)
        finally:
            reason = conn.end_reason or EndReason.DISCONNECTED
            await asyncio.to_thread(self.service.leave, ctx, conn.admission, reason, self.clock())

    async def _write(self, conn: _Conn) -> None:
        while True:
            item = await conn.outbox.get()
            try:
                if isinstance(item, tuple):
                    await conn.peer.close(item[1], item[2])
                    return
                await conn.peer.send(item)
            except Exception:  # the socket is gone: the reader sees it too
                return

    async def _recheck(
        self, conn: _Conn, ctx: RequestContext, session_alive: SessionAlive | None
    ) -> None:
        admission = conn.admission
        while not conn.closing:
            await asyncio.sleep(self.recheck_seconds)
            try:
                reason = await asyncio.to_thread(
                    self.service.still_allowed, ctx.actor, admission.appointment_id, self.clock()
                )
            except Exception:  # the policy cannot be asked (database down): fail closed
                _log.exception("consult.recheck_failed")
                reason = EndReason.POLICY
            if reason is not None:
                conn.end_reason = reason
                conn.end({"type": "ended", "reason": str(reason)}, ENDED, str(reason))
                return
            if session_alive is not None and not await session_alive():
                conn.end_reason = EndReason.SESSION_ENDED
                conn.end({"type": "ended", "reason": "session-ended"}, UNAUTHENTICATED, "session")
                return

    async def _enter(self, conn: _Conn) -> _Room:
        room_id = conn.admission.appointment_id
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = _Room(room_id)
            await self.hub.subscribe(room_id, room.deliver)
        room.local[conn.pid] = conn
        hub = self.hub
        members = await hub.members(room_id)
        for old in members.values():  # the same account joined again: the older socket goes
            if old.user_id == conn.admission.user_id:
                await hub.remove(room_id, old.pid)
                ended = {"type": "ended", "reason": "replaced"}
                await self._send(room_id, old.pid, ended, close=[REPLACED, "replaced"])
                await self._announce_left(room_id, old)
        me = Member(
            conn.pid, str(conn.role), conn.admission.name, conn.admission.user_id, conn.admitted
        )
        await hub.put(room_id, me)
        if conn.admitted:
            room.admitted.add(conn.pid)
        if self.witnessed is not None:  # the join's audit entry is witnessed before any answer
            await self.witnessed()
        conn.push(
            {
                "type": "welcome",
                "you": conn.pid,
                "role": str(conn.role),
                "ice_servers": self.ice_servers(conn.admission.user_id),
                "recheck_seconds": self.recheck_seconds,
            }
        )
        members = await hub.members(room_id)
        room.admitted |= {m.pid for m in members.values() if m.admitted}
        if conn.admitted:
            others = [m for m in members.values() if m.admitted and m.pid != conn.pid]
            conn.push(_admitted(others))
            conn.push({"type": "lobby", "waiting": _waiting(members)})
            joined = {"type": "joined", "pid": conn.pid, "name": conn.admission.name}
            await self._send(room_id, "admitted", joined, skip=conn.pid)
        else:
            conn.push({"type": "waiting"})
            await self._lobby(room_id, members)
        return room

    async def _send(
        self,
        room_id: str,
        to: str,
        message: dict[str, Any],
        *,
        skip: str | None = None,
        admit: bool = False,
        close: list[Any] | None = None,
    ) -> None:
        """Publish ``message`` for ``to`` (a pid, ``"admitted"`` or ``"practitioners"``)."""
        envelope: Envelope = {"to": to, "msg": message}
        if skip is not None:
            envelope["except"] = skip
        if admit:
            envelope["admit"] = True
        if close is not None:
            envelope["close"] = close
        await self.hub.publish(room_id, envelope)

    async def _lobby(self, room_id: str, members: dict[str, Member] | None = None) -> None:
        if members is None:
            members = await self.hub.members(room_id)
        await self.hub.publish(
            room_id,
            {"to": "practitioners", "msg": {"type": "lobby", "waiting": _waiting(members)}},
        )

    async def _announce_left(self, room_id: str, member: Member) -> None:
        if member.admitted:
            left = {"type": "left", "pid": member.pid}
            await self._send(room_id, "admitted", left, skip=member.pid)
        else:
            await self._lobby(room_id)

    async def _exit(self, conn: _Conn, room: _Room) -> None:
        room.local.pop(conn.pid, None)
        room_id = room.room_id
        try:
            members = await self.hub.members(room_id)
            mine = members.get(conn.pid)
            if mine is not None:  # not already replaced
                await self.hub.remove(room_id, conn.pid)
                await self._announce_left(room_id, mine)
        finally:
            if not room.local and self.rooms.get(room_id) is room:
                del self.rooms[room_id]
                await self.hub.unsubscribe(room_id)

    async def _read(self, conn: _Conn, room: _Room) -> None:
        window_start, count = time.monotonic(), 0
        while not conn.closing:
            frame = await conn.peer.receive()
            if frame is None:
                return
            if conn.closing:
                return
            now = time.monotonic()
            if now - window_start >= 1.0:
                window_start, count = now, 0
            count += 1
            if count > MAX_PER_SECOND:
                conn.end(None, BAD_MESSAGE, "too-fast")
                return
            if isinstance(frame, bytes):
                conn.end(None, BAD_MESSAGE, "binary")
                return
            if len(frame) > MAX_FRAME_BYTES or len(frame.encode("utf-8")) > MAX_FRAME_BYTES:
                conn.end(None, BAD_MESSAGE, "too-big")
                return
            try:
                message = parse(frame)
            except (ValidationError, ValueError, RecursionError):
                conn.end(None, BAD_MESSAGE, "invalid")
                return
            await self._handle(conn, room, message)

    async def _handle(
        self, conn: _Conn, room: _Room, message: Admit | Signal | Key | Leave | Ping
    ) -> None:
        hub, room_id = self.hub, room.room_id
        if isinstance(message, Ping):
            conn.push({"type": "pong"})
        elif isinstance(message, Leave):
            conn.end_reason = EndReason.HUNG_UP
            conn.end({"type": "ended", "reason": "hung-up"}, NORMAL, "hung-up")
        elif isinstance(message, Admit):
            if conn.role is not Role.PRACTITIONER:
                conn.push(_error("not-allowed", "only the practitioner admits"))
                return
            members = await hub.members(room_id)
            waiting = members.get(message.pid)
            if waiting is None or waiting.admitted:
                conn.push(_error("unknown-peer", "nobody with that id is waiting"))
                return
            admitted = Member(waiting.pid, waiting.role, waiting.name, waiting.user_id, True)
            await hub.put(room_id, admitted)
            welcome = _admitted([m for m in members.values() if m.admitted])
            await self._send(room_id, admitted.pid, welcome, admit=True)
            joined = {"type": "joined", "pid": admitted.pid, "name": admitted.name}
            await self._send(room_id, "admitted", joined, skip=admitted.pid)
            await self._lobby(room_id)
        elif not conn.admitted:
            conn.push(_error("not-admitted", "wait to be admitted"))
        elif isinstance(message, Signal):
            if message.to not in room.admitted or message.to == conn.pid:
                conn.push(_error("unknown-peer", "no such participant in the call"))
                return
            data = message.data.model_dump(exclude_unset=True)
            signal = {"type": "signal", "from": conn.pid, "data": data}
            await self._send(room_id, message.to, signal)
        else:  # Key
            relayed: dict[str, Any] = {"type": "key", "from": conn.pid}
            if message.commitment is not None:
                relayed["commitment"] = message.commitment
            else:
                relayed["public_key"] = message.public_key
            await self._send(room_id, "admitted", relayed, skip=conn.pid)


def _admitted(peers: list[Member]) -> dict[str, Any]:
    """The ``admitted`` message: the peers already in the call, and their display names (a
    call may hold three: the patient, the practitioner, a guest the patient accepted)."""
    return {
        "type": "admitted",
        "peers": [m.pid for m in peers],
        "names": {m.pid: m.name for m in peers},
    }


def _waiting(members: dict[str, Member]) -> list[dict[str, str]]:
    return [
        {"pid": m.pid, "name": m.name}
        for m in sorted(members.values(), key=lambda m: m.pid)
        if not m.admitted
    ]


def _error(code: str, message: str) -> dict[str, str]:
    return {"type": "error", "code": code, "message": message}
