"""Erasure (GDPR art. 17) within the legal retention of medical records.

French law keeps a medical record 20 years (Code de la santé publique, art. R1112-7) from the
last activity on it; the period is a parameter (``retention_years``). An erasure request:

* **after** the retention period: the patient's data key is shredded at once
  (crypto-shredding, :class:`~secretum.rights.ports.Shredder`, audited): every record and file
  sealed under it is unreadable for good; their blind-index identifiers are deleted;
* **within** it: processing is restricted (the restriction flag) and the erasure is scheduled
  for the end of the period (``scheduled_erasures``); :meth:`Erasures.run_due_erasures`, a
  periodic job, shreds what has come due (a record touched meanwhile pushes its date back).

Both paths are audited (the request as a ``$erase`` operation, DCM 110110 / E; the shredding by
the shredder, D) and the patient gets a notice: erasure scheduled (with its date), then done.
The patient's user id is taken to be their patient id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from secretum.access.context import RequestContext
from secretum.access.door import Attempt, sensitivity_max
from secretum.access.model import Action, Resource
from secretum.audit.model import EventAction, EventType
from secretum.crypto.errors import KeyNotFoundError
from secretum.notices.store import NoticeKind, notify
from secretum.records.fhir import check_id, instant
from secretum.records.search import aware
from secretum.records.service import RecordService
from secretum.records.tables import scheduled_erasures
from secretum.rights.ports import ErasureHook, RestrictionFlags, Shredder

#: Retention of French medical records, in years from the last activity.
DEFAULT_RETENTION_YEARS = 20
#: Who the erasure job acts as in the audit.
JOB_ACTOR_ID = "erasure-job"
JOB_ACTOR_ROLE = "system"


def add_years(when: datetime, years: int) -> datetime:
    """``when`` plus calendar years (29 February becomes 28 February)."""
    try:
        return when.replace(year=when.year + years)
    except ValueError:
        return when.replace(year=when.year + years, day=28)


@dataclass(frozen=True)
class ErasureOutcome:
    """``shredded``: done now; else scheduled (``due_at``) and processing restricted."""

    patient_id: str
    shredded: bool
    due_at: datetime


@dataclass
class ErasureRun:
    """What a run of the erasure job did (patient ids)."""

    shredded: list[str] = field(default_factory=list)
    postponed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class Erasures:
    """Erasure requests and the job that carries out scheduled ones."""

    def __init__(
        self,
        records: RecordService,
        flags: RestrictionFlags,
        shred: Shredder,
        *,
        retention_years: int = DEFAULT_RETENTION_YEARS,
        also_erase: Sequence[ErasureHook] = (),
    ) -> None:
        if retention_years < 0:
            raise ValueError("retention_years must be >= 0")
        self.records = records
        self.flags = flags
        self.shred = shred
        self.retention_years = retention_years
        self.also_erase = tuple(also_erase)

    def due_date(self, conn: Connection, patient_id: str, now: datetime) -> datetime:
        """End of the retention period: last record activity + ``retention_years``; ``now``
        when the patient has no medical record (nothing to retain: erased at once)."""
        last = self.records.repo.last_activity(conn, patient_id)
        return now if last is None else add_years(last, self.retention_years)

    def request_erasure(
        self,
        ctx: RequestContext,
        patient_id: str,
    ) -> ErasureOutcome:
        """Erase the patient's data now if the retention period is over, else schedule it."""
        attempt = Attempt(ctx, EventType.PATIENT_RECORD, "operation", EventAction.EXECUTE)

        def work(conn: Connection) -> ErasureOutcome:
            pid = check_id(patient_id, "patient")
            level = sensitivity_max(self.records.repo.sensitivities(conn, pid))
            self.records.door.authorize(
                conn, attempt, Action.ERASE, Resource("Patient", pid, pid, level)
            )
            attempt.target("Patient", pid, pid)
            due = self.due_date(conn, pid, ctx.now)
            self._schedule(conn, pid, ctx.actor.user_id, ctx.now, max(due, ctx.now))
            if due > ctx.now:
                self.flags.set_restricted(conn, pid, True, ctx.now)
                notify(conn, pid, NoticeKind.ERASURE_SCHEDULED, ctx.now, due_at=instant(due))
            return ErasureOutcome(pid, False, due)

        outcome = self.records.door.run(attempt, work)
        if outcome.due_at > ctx.now:
            return outcome
        self._carry_out(outcome.patient_id, ctx.now, ctx.actor.user_id, str(ctx.actor.role))
        return ErasureOutcome(outcome.patient_id, True, outcome.due_at)

    def _schedule(
        self, conn: Connection, patient_id: str, by: str, now: datetime, due: datetime
    ) -> None:
        t = scheduled_erasures.c
        found = conn.execute(select(t.patient_id).where(t.patient_id == patient_id)).first()
        values = dict(requested_by=by, requested_at=now, due_at=due, done_at=None)
        if found is None:
            conn.execute(insert(scheduled_erasures).values(patient_id=patient_id, **values))
        else:
            conn.execute(
                update(scheduled_erasures).where(t.patient_id == patient_id).values(**values)
            )

    def _carry_out(self, patient_id: str, now: datetime, actor_id: str, actor_role: str) -> None:
        """Shred (audited by the shredder), then mark done, forget identifiers, notify."""
        keyring = self.records.repo.records.keyring
        try:
            keyring.data_key(patient_id)
        except KeyNotFoundError:  # shredded already (KeyShreddedError), or nothing ever sealed
            pass
        else:
            self.shred(patient_id, actor_id=actor_id, actor_role=actor_role)
        for erase in self.also_erase:  # e.g. imaging blobs, unreadable since the shredding
            erase(patient_id)
        with self.records.engine.begin() as conn:
            conn.execute(
                update(scheduled_erasures)
                .where(scheduled_erasures.c.patient_id == patient_id)
                .values(done_at=now)
            )
            self.records.repo.forget_identifiers(conn, patient_id)
            notify(conn, patient_id, NoticeKind.ERASURE_DONE, now)

    def pending(self, conn: Connection, now: datetime) -> list[tuple[str, datetime]]:
        """Scheduled erasures due at ``now``: ``(patient_id, due_at)``."""
        t = scheduled_erasures.c
        rows = conn.execute(
            select(t.patient_id, t.due_at)
            .where(t.done_at.is_(None), t.due_at <= now)
            .order_by(t.due_at, t.patient_id)
        )
        return [(pid, aware(due)) for pid, due in rows]

    def run_due_erasures(self, now: datetime) -> ErasureRun:
        """The periodic job: shred every scheduled erasure that has come due.

        A patient whose record was touched since the request is postponed to the new end of
        retention; a failed shredding (audited by the shredder) stays due for the next run.
        """
        run = ErasureRun()
        with self.records.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            due = self.pending(conn, now)
        for patient_id, _ in due:
            with self.records.engine.begin() as conn:
                new_due = self.due_date(conn, patient_id, now)
                if new_due > now:
                    conn.execute(
                        update(scheduled_erasures)
                        .where(scheduled_erasures.c.patient_id == patient_id)
                        .values(due_at=new_due)
                    )
                    run.postponed.append(patient_id)
                    continue
            try:
                self._carry_out(patient_id, now, JOB_ACTOR_ID, JOB_ACTOR_ROLE)
            except Exception:
                run.failed.append(patient_id)
            else:
                run.shredded.append(patient_id)
        return run
