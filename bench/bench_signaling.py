"""Signaling: WebSocket connections one instance holds, and the fan-out latency of a relayed
message across two instances through Redis.

The servers are real (uvicorn + websockets, in processes of their own) and run the real
signaling (:class:`secretum.consult.signaling.Calls` and its hubs); what is left out is the join
decision (a database read and an audit entry per join, measured by the other suites): each
socket is admitted as a participant of its room at once.

* **held connections**: N sockets open on one instance (each welcomed, admitted, in a room of
  two); the server's resident memory before and after, per connection.
* **fan-out p99**: pairs of participants (5: a few calls negotiating at once), one on each of
  two instances sharing Redis (pub/sub), each sending ``signal`` messages at 45/s (under the
  50/s limit); the one-way latency from send to delivery on the other instance (both clients
  in this process: one clock). Baseline: the same on one instance with rooms in process. A
  latency, not a throughput: on a loaded machine (the two servers, Redis and the clients share
  the cores) many more pairs measure the queueing of the CPUs instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, WebSocket

from bench.common import Figure

REDIS = os.environ.get("SECRETUM_BENCH_REDIS", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[1]


# -- the server (run as: python -m bench.bench_signaling --serve PORT [--redis URL]) ------------


class _Admitted:
    """The consult service of the benchmark: every join admitted, nothing audited."""

    def leave(self, *args: Any) -> None:
        return None

    def still_allowed(self, *args: Any) -> None:
        return None


def make_app(redis_url: str | None) -> Any:
    from secretum.access.context import RequestContext
    from secretum.access.model import Actor, Purpose
    from secretum.access.model import Role as AccountRole
    from secretum.consult.model import Admission, Role
    from secretum.consult.rooms import Hub, LocalHub, RedisHub
    from secretum.consult.signaling import Calls
    from secretum.web.routes.consult import _Socket

    def hub() -> Hub:
        return RedisHub.from_url(redis_url, "secretum-bench:") if redis_url else LocalHub()

    def now() -> datetime:
        return datetime.now(UTC)

    calls = Calls(_Admitted(), hub, clock=now, recheck_seconds=3600)  # type: ignore[arg-type]
    app = FastAPI()

    @app.websocket("/ws/{room}/{user}")
    async def ws(websocket: WebSocket, room: str, user: str) -> None:
        await websocket.accept()
        at = now()
        admission = Admission(room, "p", "d", user, Role.PRACTITIONER, at, at + timedelta(
            minutes=30), "name", "other", at)  # fmt: skip
        ctx = RequestContext(Actor(user, AccountRole.PRACTITIONER), Purpose.TELECONSULTATION, at)
        await calls.serve(_Socket(websocket), admission, ctx)

    @app.websocket("/bare/{room}/{user}")
    async def bare(websocket: WebSocket, room: str, user: str) -> None:
        """The baseline: a socket that answers pings and holds nothing else."""
        await websocket.accept()
        await websocket.send_text('{"type":"welcome","you":"' + user + '"}')
        await websocket.send_text('{"type":"lobby","waiting":[]}')
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            await websocket.send_text('{"type":"pong"}')

    return app


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(port: int, redis_url: str | None) -> None:
    import uvicorn

    _raise_fd_limit()
    uvicorn.run(make_app(redis_url), host="127.0.0.1", port=port, log_level="warning",
                ws="websockets-sansio", backlog=4096)  # fmt: skip


# -- the load -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(redis_url: str | None = None) -> Iterator[tuple[int, int]]:
    """A signaling server process: (port, pid)."""
    port = _free_port()
    args = [sys.executable, "-m", "bench.bench_signaling", "--serve", str(port)]
    if redis_url:
        args += ["--redis", redis_url]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    process = subprocess.Popen(args, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the signaling server did not start") from None
                time.sleep(0.1)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(10)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _open(port: int, room: str, path: str = "ws") -> Any:
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/{path}/{room}/{secrets.token_hex(8)}"
    ws = await connect(url, max_queue=None)
    you = ""
    while True:  # welcome, admitted, lobby
        message = json.loads(await ws.recv())
        if message["type"] == "welcome":
            you = message["you"]
        if message["type"] == "lobby":
            return ws, you


async def _hold(port: int, pid: int, n: int, path: str = "ws") -> tuple[int, float]:
    await asyncio.sleep(0.5)
    before = rss_kib(pid)
    sockets = []
    for i in range(0, n, 50):
        opened = await asyncio.gather(
            *(_open(port, f"r{(i + k) // 2}", path) for k in range(min(50, n - i)))
        )
        sockets += [ws for ws, _ in opened]
    await asyncio.sleep(1.0)
    after = rss_kib(pid)
    alive = 0
    for ws in sockets:
        await ws.send('{"type":"ping"}')
    for ws in sockets:
        while json.loads(await ws.recv())["type"] != "pong":
            pass
        alive += 1
    for ws in sockets:
        await ws.close()
    return alive, (after - before) / max(1, n)


async def _pair(one: int, two: int, seconds: float, latencies: list[float]) -> None:
    room = secrets.token_hex(8)
    a, _ = await _open(one, room)
    b, b_id = await _open(two, room)
    while True:  # b sees a as a peer (joined reached a): both in the call
        message = json.loads(await a.recv())
        if message["type"] == "joined":
            break

    async def receive() -> None:
        while True:
            message = json.loads(await b.recv())
            if message["type"] == "signal":
                sent = float(message["data"]["description"]["sdp"])
                latencies.append(time.perf_counter() - sent)
                if message["data"]["description"]["type"] == "answer":
                    return

    reader = asyncio.create_task(receive())
    count = int(seconds * 45)
    for i in range(count):
        kind = "answer" if i == count - 1 else "offer"
        data = {"description": {"type": kind, "sdp": repr(time.perf_counter())}}
        await a.send(json.dumps({"type": "signal", "to": b_id, "data": data}))
        await asyncio.sleep(1 / 45)
    await asyncio.wait_for(reader, 30)
    await a.close()
    await b.close()


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] * 1000


async def _fan_out(one: int, two: int, pairs: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    await asyncio.gather(*(_pair(one, two, seconds, latencies) for _ in range(pairs)))
    return latencies


def run(quick: bool = False) -> list[Figure]:
    _raise_fd_limit()
    n = 200 if quick else 1000
    pairs, seconds = (2, 2.0) if quick else (5, 4.0)
    figures: list[Figure] = []
    with server() as (port, pid):
        alive, per = asyncio.run(_hold(port, pid, n))
        figures.append(Figure("WebSocket connections held by one instance", alive, "conn",
                              target=f"== {n}", passed=alive == n))  # fmt: skip
        local = asyncio.run(_fan_out(port, port, pairs, seconds))
    with server() as (port, pid):
        _, bare = asyncio.run(_hold(port, pid, n, "bare"))
    figures.append(
        Figure("server memory per held connection", per, "KiB",
               baseline_name="a bare uvicorn WebSocket", baseline_value=bare)
    )  # fmt: skip
    with server(REDIS) as (one, _), server(REDIS) as (two, _):
        remote = asyncio.run(_fan_out(one, two, pairs, seconds))
    p99 = _p99(remote)
    figures.append(
        Figure(
            "signal fan-out p50, 2 instances via Redis",
            statistics.median(remote) * 1000,
            "ms",
            baseline_name="one instance, rooms in process",
            baseline_value=statistics.median(local) * 1000,
        )
    )
    figures.append(
        Figure(
            f"signal fan-out p99, 2 instances via Redis ({len(remote)} msgs)",
            p99,
            "ms",
            baseline_name="one instance, rooms in process",
            baseline_value=_p99(local),
            target="< 20 ms",
            passed=p99 < 20,
        )
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int)
    parser.add_argument("--redis")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.redis)
        return
    for figure in run(args.quick):
        print(figure)


if __name__ == "__main__":
    main()
