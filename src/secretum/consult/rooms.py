"""Where a call's members are known and its messages travel: in this process, or across
instances through Redis.

A :class:`Hub` keeps, per room (an appointment id), its members (:class:`Member`: the random
participant id, role, display name, admitted or waiting) and carries **envelopes**: a message
for one participant (``to`` = its pid), for every admitted participant (``"admitted"``,
``except`` one), or for the practitioners (``"practitioners"``). Every instance subscribed to a
room gets every envelope of that room and delivers it to its own sockets
(:mod:`secretum.consult.signaling`).

* :class:`LocalHub`: dictionaries and direct calls (one process: ``make run``).
* :class:`RedisHub` (``SECRETUM_REDIS_URL``): the members in a hash
  ``<prefix>consult:room:<id>`` (expiring after :data:`ROOM_TTL_SECONDS` without a change, so
  that a crashed instance's members do not stay forever), the envelopes published on
  ``<prefix>consult:ch:<id>``; each instance holds one pattern subscription for every room and
  keeps the rooms it has sockets in.

What travels is opaque to the hub (the relayed WebRTC data and public keys): it is never
logged nor stored; the hash holds ids, roles, the display name shown in the lobby and flags.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from secretum.logs import get_logger

_log = get_logger("secretum.consult.rooms")

Envelope = dict[str, Any]
Deliver = Callable[[Envelope], Awaitable[None]]
#: A room's members hash expires this long after its last change.
ROOM_TTL_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class Member:
    pid: str
    role: str
    name: str
    user_id: str
    admitted: bool

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Member:
        return cls(**json.loads(text))


class Hub(Protocol):
    async def put(self, room: str, member: Member) -> None: ...

    async def remove(self, room: str, pid: str) -> None: ...

    async def members(self, room: str) -> dict[str, Member]: ...

    async def publish(self, room: str, envelope: Envelope) -> None: ...

    async def subscribe(self, room: str, deliver: Deliver) -> None: ...

    async def unsubscribe(self, room: str) -> None: ...

    async def close(self) -> None: ...


class LocalHub:
    """Rooms in this process."""

    def __init__(self) -> None:
        self._members: dict[str, dict[str, Member]] = {}
        self._subscribers: dict[str, Deliver] = {}

    async def put(self, room: str, member: Member) -> None:
        self._members.setdefault(room, {})[member.pid] = member

    async def remove(self, room: str, pid: str) -> None:
        members = self._members.get(room)
        if members is not None:
            members.pop(pid, None)
            if not members:
                del self._members[room]

    async def members(self, room: str) -> dict[str, Member]:
        return dict(self._members.get(room, {}))

    async def publish(self, room: str, envelope: Envelope) -> None:
        deliver = self._subscribers.get(room)
        if deliver is not None:
            await deliver(envelope)

    async def subscribe(self, room: str, deliver: Deliver) -> None:
        self._subscribers[room] = deliver

    async def unsubscribe(self, room: str) -> None:
        self._subscribers.pop(room, None)

    async def close(self) -> None:
        self._subscribers.clear()


class RedisHub:
    """Rooms across instances (module doc). ``client`` is a ``redis.asyncio.Redis``."""

    def __init__(self, client: Any, prefix: str = "secretum:") -> None:
        self.client = client
        self.prefix = prefix
        self._subscribers: dict[str, Deliver] = {}
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Lock()
        self._pubsub: Any = None

    @classmethod
    def from_url(cls, url: str, prefix: str = "secretum:") -> RedisHub:
        import redis.asyncio

        return cls(redis.asyncio.Redis.from_url(url), prefix)

    def _room_key(self, room: str) -> str:
        return f"{self.prefix}consult:room:{room}"

    def _channel(self, room: str) -> str:
        return f"{self.prefix}consult:ch:{room}"

    async def put(self, room: str, member: Member) -> None:
        key = self._room_key(room)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(key, member.pid, member.to_json())
            pipe.expire(key, ROOM_TTL_SECONDS)
            await pipe.execute()

    async def remove(self, room: str, pid: str) -> None:
        await self.client.hdel(self._room_key(room), pid)

    async def members(self, room: str) -> dict[str, Member]:
        found = await self.client.hgetall(self._room_key(room))
        out: dict[str, Member] = {}
        for value in found.values():
            member = Member.from_json(value)
            out[member.pid] = member
        return out

    async def publish(self, room: str, envelope: Envelope) -> None:
        await self.client.publish(self._channel(room), json.dumps(envelope, separators=(",", ":")))

    async def _start(self) -> None:
        async with self._ready:
            if self._reader is not None:
                return
            self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.psubscribe(f"{self.prefix}consult:ch:*")
            self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        skip = len(f"{self.prefix}consult:ch:")
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken connection: logged, retried (redis-py reconnects)
                _log.exception("consult.redis_read_failed")
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "pmessage":
                continue
            channel = message["channel"]
            room = (channel.decode() if isinstance(channel, bytes) else str(channel))[skip:]
            deliver = self._subscribers.get(room)
            if deliver is None:
                continue
            try:
                await deliver(json.loads(message["data"]))
            except Exception:
                _log.exception("consult.deliver_failed")

    async def subscribe(self, room: str, deliver: Deliver) -> None:
        await self._start()
        self._subscribers[room] = deliver

    async def unsubscribe(self, room: str) -> None:
        self._subscribers.pop(room, None)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        await self.client.aclose()
