"""A secure record read through the real app vs a plain FastAPI read of the same JSON.

* **secure**: ``GET /fhir/Observation/{id}`` on the Secretum app (``create_app`` on an
  initialised platform, its periodic duties running, request log at INFO): session cookie
  resolved, policy decided (consents, care team, restriction, break-the-glass read from the
  database), the record opened with the patient's data key (AES-256-GCM), one audit entry
  appended and committed in the same transaction.
* **plain** (baseline): a bare FastAPI app, same server, same database file, reading the same
  FHIR JSON in clear from a table of its own (``bench_plain_records``): no auth, no policy, no
  audit, no cryptography.

Both run in their own process under uvicorn (h11, HTTP/1.1 keep-alive, plain HTTP on loopback:
no TLS for either), both started before measuring; ``wrk`` (Debian package) loads one at a time
with 1, 10 and 50 connections for a few seconds, plain and secure in turn at each step (and
each step three times, the median kept, unless ``--quick``), so that a machine whose speed
drifts (a shared VM) weighs on both sides alike. Figures: requests/s of both and their ratio
(target >= 0.6), p99 latency of the secure read at 50 clients (target < 50 ms), and, for
information, the CPU time each server process spent per request at 50 clients (read from
``/proc``: it drifts less with the machine's speed than a rate does). The database is SQLite
(the embedded default; WAL, synchronous=FULL: every audited read waits for an fsync) unless
``SECRETUM_BENCH_DB=postgresql`` (a fresh schema on 127.0.0.1:5432).

Run alone: ``.venv/bin/python -m bench.bench_secure_read [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Figure
from secretum.access.context import RequestContext

DB = os.environ.get("SECRETUM_BENCH_DB", "sqlite")
PG_URL = os.environ.get(
    "SECRETUM_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CLIENTS = (1, 10, 50)
PASSWORD = "bench violet tractor mumbles under lanterns"
PLAIN_TABLE = "bench_plain_records"


# -- the two servers (run in child processes) ------------------------------------------------


def _settings(data_dir: Path, database_url: str | None) -> Any:
    from secretum.config import Settings

    return Settings(data_dir=data_dir, database_url=database_url, log_level="INFO")


def serve_secure(data_dir: Path, port: int, passphrase: str, database_url: str | None) -> None:
    import uvicorn

    from secretum.bootstrap import open_platform
    from secretum.logs import configure_logging
    from secretum.web.app import create_app

    configure_logging("INFO", stream=open(os.devnull, "w"))  # noqa: SIM115 (for the process)
    settings = _settings(data_dir, database_url)
    platform = open_platform(settings, passphrase=passphrase)
    app = create_app(settings, services=platform, duties=platform.duties())
    uvicorn.run(app, host="127.0.0.1", port=port, http="h11", log_config=None, access_log=False)


def serve_plain(data_dir: Path, port: int, database_url: str | None) -> None:
    import uvicorn
    from fastapi import FastAPI, Response
    from sqlalchemy import text

    from secretum.storage.db import make_engine

    engine = make_engine(_settings(data_dir, database_url).db_url)
    query = text(f"SELECT body FROM {PLAIN_TABLE} WHERE id = :id")
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/fhir/Observation/{resource_id}")
    def read(resource_id: str) -> Response:
        with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            body = conn.execute(query, {"id": resource_id}).scalar_one()
        return Response(body, media_type="application/fhir+json")

    uvicorn.run(app, host="127.0.0.1", port=port, http="h11", log_config=None, access_log=False)


# -- the data: a platform with a practitioner, a consenting patient, an observation -----------


def prepare(data_dir: Path, passphrase: str, database_url: str | None) -> tuple[str, str]:
    """Initialise a platform, seed it through its use cases; the session id and the resource."""
    from sqlalchemy import text

    from secretum.access.model import Actor, Purpose, Role
    from secretum.bootstrap import init_platform
    from secretum.consent.store import ConsentMethod
    from secretum.identity.factors import time_step, totp_code
    from secretum.identity.service_signin import SignedIn
    from secretum.keys.keyring import utc_now

    platform = init_platform(_settings(data_dir, database_url), passphrase)
    svc, now = platform.services, utc_now()
    identity = svc.identity
    token = identity.accounts.create_setup_token(None, now)
    identity.accounts.complete_setup(
        token, email="admin@bench.invalid", display_name="Bench Admin", password=PASSWORD, now=now
    )

    def strong_session(email: str) -> str:
        """Sign in and enrol TOTP: a session with a fresh second factor."""
        signed = identity.sign_in.sign_in_password(email, PASSWORD, now=now)
        assert isinstance(signed, SignedIn)
        setup = identity.factors.begin_totp_setup(signed.session_id, now=now)
        code = totp_code(setup.secret, time_step(now))
        enrolled = identity.factors.confirm_totp(signed.session_id, code, now=now)
        assert enrolled.session is not None
        return enrolled.session.session_id

    admin = strong_session("admin@bench.invalid")
    ids = {}
    for name, role, extra in (
        ("doctor", Role.PRACTITIONER, {"specialty": "general-practice", "rpps": _rpps()}),
        ("patient", Role.PATIENT, {}),
    ):
        invitation = identity.accounts.invite(
            admin,
            email=f"{name}@bench.invalid",
            role=role,
            display_name=f"Bench {name}",
            now=now,
            **extra,
        )
        assert invitation.token is not None
        ids[name] = identity.accounts.accept_invitation(
            invitation.token, password=PASSWORD, now=now
        )
    doctor = strong_session("doctor@bench.invalid")
    pid, patient = ids["patient"], Actor(ids["patient"], Role.PATIENT)
    gp = Actor(ids["doctor"], Role.PRACTITIONER)
    svc.choices.invite(
        RequestContext(patient, Purpose.PATIENT_REQUEST, now),
        patient_id=pid,
        practitioner_id=gp.user_id,
    )
    svc.consent.grant(
        RequestContext(patient, Purpose.PATIENT_REQUEST, now),
        patient_id=pid,
        purpose=Purpose.TELECONSULTATION,
        text_sha256=svc.consent.texts.current(Purpose.TELECONSULTATION, "fr").sha256,
        method=ConsentMethod.WEB_CHECKBOX,
    )
    care = Purpose.TELECONSULTATION
    svc.records.create(
        RequestContext(gp, care, now),
        {"resourceType": "Patient", "id": pid, "name": [{"family": "Bench", "given": ["Patient"]}]},
        resource_id=pid,
        patient_id=pid,
    )
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-03-01T09:30:00Z",
        "valueQuantity": {
            "value": 72,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
    record = svc.records.create(RequestContext(gp, care, now), observation, patient_id=pid)
    with platform.engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {PLAIN_TABLE} (id VARCHAR(64) PRIMARY KEY, body TEXT)"))
        conn.execute(
            text(f"INSERT INTO {PLAIN_TABLE} VALUES (:id, :body)"),
            {"id": record.resource_id, "body": record.json_bytes().decode()},
        )
    platform.close()
    return doctor, record.resource_id


def _rpps() -> str:
    """A fictitious RPPS number: 11 digits, Luhn check digit."""
    from secretum.identity.model import luhn_ok

    return next(f"1099999000{d}" for d in range(10) if luhn_ok(f"1099999000{d}"))


# -- measuring ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux ``/proc``)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(
    kind: str, data_dir: Path, passphrase: str, database_url: str | None
) -> Iterator[Server]:
    port = _free_port()
    args = [
        sys.executable,
        "-m",
        "bench.bench_secure_read",
        "--serve",
        kind,
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
    ]
    env = {**os.environ, "BENCH_PASSPHRASE": passphrase, "BENCH_DATABASE_URL": database_url or ""}
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        args, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the {kind} server did not start")
        yield Server(base, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


#: What one ``wrk`` run gave: requests/s, p99 latency (ms), requests made.
Measured = tuple[float, float, int]


def wrk(url: str, connections: int, seconds: int, cookie: str | None) -> Measured:
    """(requests/s, p99 in ms, requests) of ``wrk`` on ``url``; every answer must be a 200."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", url]
    if cookie:
        args[1:1] = ["-H", f"Cookie: __Host-secretum-session={cookie}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    assert p99 is not None, out
    factor = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    count = re.search(r"(\d+) requests in", out)
    assert count is not None, out
    return rate, float(p99.group(1)) * factor, int(count.group(1))


@contextmanager
def _database() -> Iterator[str | None]:
    if DB != "postgresql":
        yield None
        return
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    schema = f"bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run(quick: bool = False) -> list[Figure]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is needed: apt-get install wrk")
    seconds = 3 if quick else 6
    passphrase = secrets.token_urlsafe(24)
    repeats = 1 if quick else 3
    results: dict[tuple[str, int], tuple[float, float]] = {}
    cpu_ms: dict[str, float] = {}  # CPU ms per request at 50 clients, each server
    with tempfile.TemporaryDirectory() as tmp, _database() as database_url:
        data_dir = Path(tmp) / "data"
        session_id, resource_id = prepare(data_dir, passphrase, database_url)
        path = f"/fhir/Observation/{resource_id}"
        with (
            server("plain", data_dir, passphrase, database_url) as plain_server,
            server("secure", data_dir, passphrase, database_url) as secure_server,
        ):
            sides = {"plain": (plain_server, None), "secure": (secure_server, session_id)}
            for srv, cookie in sides.values():
                wrk(srv.url + path, 10, 1, cookie)  # warm-up
            for clients in CLIENTS:
                runs: dict[str, list[tuple[float, float]]] = {kind: [] for kind in sides}
                cpu_seconds = dict.fromkeys(sides, 0.0)
                requests = dict.fromkeys(sides, 0)
                for _ in range(repeats):
                    for kind, (srv, cookie) in sides.items():
                        before = srv.cpu_seconds()
                        rate, p99, count = wrk(srv.url + path, clients, seconds, cookie)
                        cpu_seconds[kind] += srv.cpu_seconds() - before
                        requests[kind] += count
                        runs[kind].append((rate, p99))
                for kind, measured in runs.items():
                    rate = statistics.median(r for r, _ in measured)
                    p99 = statistics.median(p for _, p in measured)
                    results[(kind, clients)] = rate, p99
                    per_request = 1000 * cpu_seconds[kind] / max(1, requests[kind])
                    if clients == CLIENTS[-1]:
                        cpu_ms[kind] = per_request
                    print(
                        f"  {kind:<6} {clients:>2} clients: {rate:8.1f} req/s, p99 {p99:7.1f} ms,"
                        f" server CPU {per_request:5.2f} ms/request",
                        file=sys.stderr,
                    )
    figures = []
    where = "PostgreSQL" if DB == "postgresql" else "SQLite"
    for clients in CLIENTS:
        ours, plain = results[("secure", clients)][0], results[("plain", clients)][0]
        figures.append(
            Figure(
                name=f"secure read, {clients} client{'s' if clients > 1 else ''} ({where})",
                value=ours,
                unit="req/s",
                baseline_name="plain FastAPI read, same JSON, same DB",
                baseline_value=plain,
                target="ratio >= 0.6",
                passed=ours / plain >= 0.6,
            )
        )
    p99, p99_plain = results[("secure", 50)][1], results[("plain", 50)][1]
    figures.append(
        Figure(
            name=f"secure read p99 at 50 clients ({where})",
            value=p99,
            unit="ms",
            baseline_name="plain read p99",
            baseline_value=p99_plain,
            target="< 50 ms",
            passed=p99 < 50,
        )
    )
    figures.append(
        Figure(
            name=f"secure read server CPU per request, 50 clients ({where})",
            value=cpu_ms["secure"],
            unit="ms",
            baseline_name="plain read server CPU per request",
            baseline_value=cpu_ms["plain"],
        )
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", choices=("secure", "plain"))
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve:
        url = os.environ.get("BENCH_DATABASE_URL") or None
        if args.serve == "secure":
            serve_secure(args.data_dir, args.port, os.environ["BENCH_PASSPHRASE"], url)
        else:
            serve_plain(args.data_dir, args.port, url)
        return
    for fig in run(quick=args.quick):
        print(json.dumps(fig.as_dict()))


if __name__ == "__main__":
    main()
