"""Audit log benchmarks: durable appends on SQLite and PostgreSQL, verify of 1,000,000 entries.

* appends/s: one ``AuditLog.append`` per transaction, committed (``with conn.begin()`` on a
  connection held like a request handler holds one); a fresh ``AuditEvent`` built each time.
  SQLite runs WAL + synchronous=FULL (``make_engine``), so each commit waits for an fsync.
  Baseline: as many one-row transactions through the bare driver, measured in the same run,
  interleaved (the disk's floor).
* verify: entries bulk-loaded through ``AuditLog.append_many`` (10,000 per transaction), then
  ``AuditLog.verify`` timed end to end (witness, signatures, every row, every checkpoint).
  Baseline: streaming the same rows without hashing.

Run alone: ``.venv/bin/python -m bench.bench_audit [--quick]``.
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from bench.common import Figure
from secretum.audit import AuditEvent, AuditLog, EventAction, EventType
from secretum.audit.verify import _batches, _snapshot
from secretum.storage.db import make_engine
from secretum.storage.schema import create_main_schema

PG_URL = os.environ.get(
    "SECRETUM_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
T0 = datetime(2025, 1, 1, tzinfo=UTC)
ROUNDS = 3


def _event(i: int) -> AuditEvent:
    return AuditEvent(
        recorded=T0 + timedelta(microseconds=i),
        event_type=EventType.PATIENT_RECORD,
        action=EventAction.READ,
        actor_id=f"u-{i % 97}",
        actor_role="doctor",
        subtype="read",
        resource_type="Observation",
        resource_id=f"obs-{i}",
        patient_id=f"p-{i % 1009}",
        purpose="TREAT",
        source_address="10.1.2.3",
    )


@contextmanager
def _sqlite() -> Iterator[tuple[Engine, Path]]:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        engine = make_engine(f"sqlite:///{tmp}/main.db")
        create_main_schema(engine)
        try:
            yield engine, Path(tmp)
        finally:
            engine.dispose()


@contextmanager
def _postgres() -> Iterator[tuple[Engine, Path]]:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    schema = f"bench_audit_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    engine = make_engine(f"{PG_URL}{sep}options=-csearch_path%3D{schema}")
    try:
        create_main_schema(engine)
        with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
            yield engine, Path(tmp)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _rate(n: int, body: Callable[[int], None]) -> float:
    start = time.perf_counter()
    for i in range(n):
        body(i)
    return n / (time.perf_counter() - start)


def _appends(engine: Engine, workdir: Path, n: int) -> tuple[float, float, float]:
    """Median over ROUNDS interleaved rounds (all three see the same disk) of: audit appends/s,
    SQLAlchemy one-row transactions/s (no audit: the platform's own floor), bare-driver one-row
    transactions/s (the disk's floor)."""
    log = AuditLog(engine, Ed25519PrivateKey.generate(), workdir / "witness.log")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE bench_floor (id BIGINT PRIMARY KEY, h TEXT)")
    held, raw = engine.connect(), engine.raw_connection()
    mark = "?" if engine.dialect.name == "sqlite" else "%s"
    insert = f"INSERT INTO bench_floor VALUES ({mark}, {mark})"
    begin = "BEGIN IMMEDIATE" if engine.dialect.name == "sqlite" else None
    ids, seqs = iter(range(10**9)), iter(range(10**9))

    def append(_: int) -> None:
        event = _event(next(seqs))
        with held.begin():
            log.append(held, event)

    def sqlalchemy_row(_: int) -> None:
        with held.begin():
            held.exec_driver_sql(insert, (next(ids), "x" * 200))

    def bare_row(_: int) -> None:
        cursor = raw.cursor()
        if begin:
            cursor.execute(begin)
        cursor.execute(insert, (next(ids), "x" * 200))
        raw.commit()
        cursor.close()

    rates: dict[str, list[float]] = {"append": [], "sqlalchemy": [], "bare": []}
    for _ in range(ROUNDS):
        rates["append"].append(_rate(n, append))
        rates["sqlalchemy"].append(_rate(n, sqlalchemy_row))
        rates["bare"].append(_rate(n, bare_row))
    raw.close()
    held.close()
    log.flush_witness()
    report = log.verify(log.public_key)  # type: ignore[arg-type]
    assert report.ok and report.entries_verified == n * ROUNDS, report.findings
    append_rate, sa_rate, bare_rate = (statistics.median(rates[k]) for k in rates)
    return append_rate, sa_rate, bare_rate


def _verify(engine: Engine, workdir: Path, n: int) -> tuple[float, float]:
    """Seconds to verify ``n`` entries, and seconds to merely stream their rows."""
    key = Ed25519PrivateKey.generate()
    log = AuditLog(engine, key, workdir / "witness.log", checkpoint_every=10_000)
    batch = 10_000
    for start in range(0, n, batch):
        with engine.begin() as conn:
            log.append_many(conn, [_event(i) for i in range(start, min(n, start + batch))])
    log.flush_witness()
    began = time.perf_counter()
    report = log.verify(key.public_key())
    seconds = time.perf_counter() - began
    assert report.ok and report.entries_verified == n, report.findings
    assert report.checkpoints_verified == n // batch
    began = time.perf_counter()
    with _snapshot(engine) as conn:
        rows = sum(len(b) for b in _batches(conn))
    assert rows == n
    return seconds, time.perf_counter() - began


def _append_figures(db: str, driver: str, target: float, rates: tuple[float, ...]) -> list[Figure]:
    rate, sa_rate, bare = rates
    return [
        Figure(
            f"audit appends {db} (durable, 1/txn)",
            rate,
            "appends/s",
            f"bare {driver} 1-row transactions",
            bare,
            f">= {target:g}/s",
            rate >= target,
        ),
        Figure(  # context: what the platform's transaction costs before any audit work
            f"SQLAlchemy 1-row transactions {db}, no audit",
            sa_rate,
            "txn/s",
            f"bare {driver} 1-row transactions",
            bare,
        ),
    ]


def run(quick: bool = False) -> list[Figure]:
    """The audit figures; ``quick``: fewer appends, 100,000 entries to verify."""
    n_appends = 2_000 if quick else 10_000
    n_verify = 100_000 if quick else 1_000_000
    figures = []
    with _sqlite() as (engine, workdir):
        figures += _append_figures("SQLite", "sqlite3", 5000, _appends(engine, workdir, n_appends))
    try:
        with _postgres() as (engine, workdir):
            rates = _appends(engine, workdir, n_appends)
        figures += _append_figures("PostgreSQL", "psycopg", 2000, rates)
    except Exception as exc:  # no server: say so rather than fail the whole bench run
        print(f"PostgreSQL bench skipped: {exc.__class__.__name__}", file=sys.stderr)
        figures.append(
            Figure(
                "audit appends PostgreSQL (skipped: no server)",
                0.0,
                "appends/s",
                target=">= 2000/s",
            )
        )
    with _sqlite() as (engine, workdir):
        seconds, stream = _verify(engine, workdir, n_verify)
    target = 10.0 * n_verify / 1_000_000
    figures.append(
        Figure(
            f"audit verify {n_verify:,} entries SQLite",
            seconds,
            "s",
            "stream the same rows, no hashing",
            stream,
            f"<= {target:g} s",
            seconds <= target,
        )
    )
    return figures


def main() -> None:
    for figure in run(quick="--quick" in sys.argv):
        base = (
            ""
            if figure.baseline_value is None
            else (f"  (baseline {figure.baseline_name}: {figure.baseline_value:,.2f})")
        )
        verdict = {True: "PASS", False: "FAIL", None: "-"}[figure.passed]
        print(
            f"{verdict:4} {figure.name}: {figure.value:,.2f} {figure.unit} "
            f"[target {figure.target}]{base}"
        )


if __name__ == "__main__":
    main()
