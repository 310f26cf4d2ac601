"""Booking under load: concurrent throughput and the conflict behaviour of the agenda.

* **throughput**: N threads (1, 4, 8) book distinct slots through the real use case
  (:meth:`AgendaService.book`: policy decision with the patient's consent read from the
  database, slot checked against the published pattern, care relationship opened and tagged,
  appointment inserted and tagged, one audit entry, all in one transaction). Bookings/s,
  compared with a plain ``INSERT`` of the same appointment rows (no policy, audit, relationship
  or tag) by one thread, on the same database.
* **conflicts**: N threads all try the same M slots (each in its own shuffled order): exactly
  one winner per slot (the partial unique index decides), every other attempt refused with
  SlotTaken; the figure is the number of winners per slot (target: exactly 1) and the conflict
  rate (expected (N - 1) / N).

SQLite (the embedded default, WAL, synchronous=FULL, writers queued) unless
``SECRETUM_BENCH_DB=postgresql`` (a fresh schema on 127.0.0.1:5432), like bench_secure_read.
No mail is sent (the contacts port knows no address).

Run alone: ``.venv/bin/python -m bench.bench_agenda [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as wall
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Connection, Engine

from bench.common import Figure
from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose, Role
from secretum.agenda import store
from secretum.agenda.model import Availability, Modality, Slot, WeeklyHours, slots
from secretum.agenda.service import AgendaService, AgendaSettings, SlotTaken
from secretum.audit.log import AuditLog
from secretum.consent.service import ConsentService
from secretum.consent.store import ConsentMethod
from secretum.consent.texts import default_texts
from secretum.crypto.row_mac import ROW_MAC_KEY_SIZE, RowMac
from secretum.localtime import zone
from secretum.mail import Message
from secretum.policy.guard import PolicyGuard
from secretum.storage import integrity
from secretum.storage.db import make_engine
from secretum.storage.schema import create_main_schema

DB = os.environ.get("SECRETUM_BENCH_DB", "sqlite")
PG_URL = os.environ.get(
    "SECRETUM_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TZ = zone("Europe/Paris")
NOW = datetime(2026, 3, 1, 7, 0, tzinfo=UTC)
FIRST_DAY = date(2026, 3, 2)
#: Open every day, all day, in 5-minute slots: plenty of distinct slots.
ALWAYS = Availability(
    weekly=tuple(WeeklyHours(d, wall(0), wall(23, 55), 5, Modality.VIDEO) for d in range(7))
)


def _ctx(actor: Actor, now: datetime) -> RequestContext:
    """One request of ``actor`` (each agenda use case sets its own purpose)."""
    return RequestContext(actor, Purpose.TELECONSULTATION, now)


class _NoMail:
    def send(self, message: Message) -> None:  # pragma: no cover - no address is ever known
        raise AssertionError("no mail in the bench")


class _NoContacts:
    def display_name(self, conn: Connection, user_id: str) -> str | None:
        return None

    def email(self, conn: Connection, user_id: str) -> str | None:
        return None


@contextmanager
def database() -> Iterator[Engine]:
    if DB != "postgresql":
        with tempfile.TemporaryDirectory() as folder:
            engine = make_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
            try:
                yield engine
            finally:
                engine.dispose()
        return
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    schema = f"bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(f"{PG_URL}?options=-csearch_path%3D{schema}", pool_size=20)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _service(engine: Engine, folder: Path, patients: list[str]) -> AgendaService:
    create_main_schema(engine)
    integrity.bind(engine, RowMac(os.urandom(ROW_MAC_KEY_SIZE)))
    audit = AuditLog(engine, Ed25519PrivateKey.generate(), folder / "witness.log")
    service = AgendaService(
        engine,
        audit,
        PolicyGuard(),
        mailer=_NoMail(),
        contacts=_NoContacts(),
        settings=AgendaSettings(tz=TZ, platform_url="https://bench.example"),
    )
    consents = ConsentService(engine, audit, PolicyGuard())
    sha = default_texts().current(Purpose.TELECONSULTATION, "en").sha256
    for p in patients:
        ctx = RequestContext(
            Actor(p, Role.PATIENT), Purpose.PATIENT_REQUEST, NOW - timedelta(days=1)
        )
        consents.grant(
            ctx, patient_id=p, purpose=Purpose.TELECONSULTATION, text_sha256=sha,
            method=ConsentMethod.WEB_CHECKBOX,
        )  # fmt: skip
    service.publish(_ctx(Actor("d1", Role.PRACTITIONER), NOW - timedelta(days=1)), ALWAYS)
    return service


def _run_threads(work: list[list[Slot]], book: object) -> tuple[float, int, int]:
    """Each thread books its list of slots; (seconds, successes, conflicts)."""
    barrier = threading.Barrier(len(work) + 1)
    counts = {"ok": 0, "taken": 0}
    lock = threading.Lock()

    def run(index: int, todo: list[Slot]) -> None:
        ok = taken = 0
        barrier.wait()
        for slot in todo:
            try:
                book(index, slot)  # type: ignore[operator]
                ok += 1
            except SlotTaken:
                taken += 1
        with lock:
            counts["ok"] += ok
            counts["taken"] += taken

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(work)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started, counts["ok"], counts["taken"]


def _plain_inserts(engine: Engine, todo: list[Slot]) -> float:
    """Baseline: the same appointment rows inserted one transaction each, nothing else."""
    row = dict(
        practitioner_id="d9", patient_id="b1", modality="video", status="booked",
        purpose="teleconsultation", created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    table = store.agenda_appointments
    started = time.perf_counter()
    for slot in todo:
        values = dict(row, appointment_id=store.new_id(), start_utc=slot.start, end_utc=slot.end)
        with engine.begin() as conn:
            conn.execute(insert(table).values(**values))
    return time.perf_counter() - started


def run(quick: bool = False) -> list[Figure]:
    per_thread = 10 if quick else 40
    thread_counts = (1, 4) if quick else (1, 4, 8)
    contenders, contested = (8, 10) if quick else (16, 30)
    figures: list[Figure] = []
    patients = [f"p{i}" for i in range(max(max(thread_counts), contenders))]
    offered = slots("d1", ALWAYS, FIRST_DAY, FIRST_DAY + timedelta(days=20), TZ)
    with tempfile.TemporaryDirectory() as folder, database() as engine:
        service = _service(engine, Path(folder), patients)
        plain_slots = offered[: per_thread * 2]
        plain = len(plain_slots) / _plain_inserts(engine, plain_slots)
        cursor = 0
        for n in thread_counts:
            work = []
            for _ in range(n):
                work.append(offered[cursor : cursor + per_thread])
                cursor += per_thread

            def book(index: int, slot: Slot) -> None:
                service.book(_ctx(Actor(patients[index], Role.PATIENT), NOW), "d1", slot.start)

            seconds, ok, taken = _run_threads(work, book)
            assert ok == n * per_thread and taken == 0, (ok, taken)
            figures.append(
                Figure(
                    f"bookings/s, {n} thread(s), distinct slots ({DB})",
                    ok / seconds,
                    "bookings/s",
                    "plain INSERT of the row, 1 thread",
                    plain,
                    "information",
                )
            )
        # conflicts: every contender tries every contested slot, in its own order
        targets = offered[cursor : cursor + contested]
        rng = random.Random(11)
        work = [rng.sample(targets, len(targets)) for _ in range(contenders)]

        def book_any(index: int, slot: Slot) -> None:
            service.book(_ctx(Actor(patients[index], Role.PATIENT), NOW), "d1", slot.start)

        seconds, ok, taken = _run_threads(work, book_any)
        with engine.connect() as conn:
            winners = conn.execute(
                text(
                    "SELECT start_utc, count(*) FROM agenda_appointments "
                    "WHERE status = 'booked' AND practitioner_id = 'd1' "
                    "GROUP BY start_utc HAVING count(*) > 0"
                )
            ).all()
        per_slot = {row[1] for row in winners if row[0] is not None}
        exactly_one = ok == contested and per_slot == {1} and taken == contested * (contenders - 1)
        figures.append(
            Figure(
                f"winners per slot, {contenders} threads x {contested} slots ({DB})",
                ok / contested,
                "winner/slot",
                target="== 1, others SlotTaken",
                passed=exactly_one,
            )
        )
        attempts = contested * contenders
        figures.append(
            Figure(
                f"conflict rate under contention ({DB})",
                taken / attempts,
                "refused/attempt",
                "expected (N-1)/N",
                (contenders - 1) / contenders,
                "ratio == 1",
                passed=abs(taken / attempts - (contenders - 1) / contenders) < 1e-9,
            )
        )
        figures.append(
            Figure(
                f"contended attempts/s, {contenders} threads ({DB})",
                attempts / seconds,
                "attempts/s",
                target="information",
            )
        )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for figure in run(quick=args.quick):
        print(figure.as_dict())
