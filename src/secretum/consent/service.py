"""Consent use cases: grant, withdraw, read the history, export as FHIR.

"Before any processing, the patient gives clear consent": one explicit opt-in per purpose (for
SHARING, naming the practitioner), against an exact text version (its SHA-256). Each grant or
withdrawal is

* decided by the policy through the door (:class:`~secretum.access.door.Door`,
  ``Action.MANAGE_CONSENT``: the patient on their own record, or a practitioner of the care
  team recording a paper form after a fresh step-up), refused attempts audited too,
* kept as evidence: who, when, which text, how (method code), from which address,
* audited in the same transaction (DICOM 110110 Patient Record, ``Consent/<id>``, PATRQT),
* notified to the patient when someone else acted on their behalf.

Withdrawal is effective on the very next request: the facts are read from the database on
every request (:func:`secretum.policy.facts.load_facts`), never cached.

A consent recorded on paper by a practitioner needs the form: the date the patient signed it
(:class:`PaperForm`, kept in :mod:`secretum.consent.paper`) and its scan, stored as an
encrypted document of the patient and named by :meth:`ConsentService.attach_paper_form`. A form
must not silently override the patient's own later decision: one dated in the future, or on
or before the day of the patient's latest withdrawal of the same consent, is refused
(:class:`PaperFormPredatesWithdrawal`); the patient can consent again online, or sign a new
form. Forms carry a day, not a time, so on the withdrawal's own day the withdrawal stands.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from secretum.access.context import RequestContext
from secretum.access.door import Attempt, Door
from secretum.access.guard import Guard
from secretum.access.model import (
    CONSENTED_PURPOSES,
    Action,
    Actor,
    Purpose,
    Resource,
    Role,
)
from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType, Outcome
from secretum.consent import paper, store
from secretum.consent.fhir import to_fhir_consent
from secretum.consent.store import ConsentMethod, ConsentRecord, Evidence, NoActiveConsent
from secretum.consent.texts import ConsentTexts, default_texts
from secretum.notices.store import NoticeKind, notify
from secretum.storage.times import utc

#: Which roles may record a consent by each method.
METHOD_ROLES: dict[ConsentMethod, Role] = {
    ConsentMethod.WEB_CHECKBOX: Role.PATIENT,
    ConsentMethod.PAPER_SCANNED: Role.PRACTITIONER,
}


class PaperFormRequired(ValueError):
    """A consent on paper is recorded with its signed form (date and scan), or not at all."""


class PaperFormDate(ValueError):
    """The form's signing date is impossible (in the future)."""


class PaperFormPredatesWithdrawal(ValueError):
    """The form was signed on or before the day the patient withdrew this consent: recording
    it would silently override the patient's later decision."""


@dataclass(frozen=True, slots=True)
class PaperForm:
    """The paper form behind a consent recorded by a practitioner: the date written on it."""

    signed_on: date


class ConsentService:
    """Grants and withdrawals of patients' consents: each one use case through the door
    (decided once, audited once, refused attempts included), in its own transaction."""

    def __init__(
        self, engine: Engine, audit: AuditLog, guard: Guard, texts: ConsentTexts | None = None
    ) -> None:
        self.door = Door(engine, audit, guard)
        self.texts = texts or default_texts()

    @staticmethod
    def _attempt(ctx: RequestContext, action: EventAction, subtype: str) -> Attempt:
        """Managing consents is always at the patient's request (PATRQT), whoever acts."""
        managing = ctx.for_purpose(Purpose.PATIENT_REQUEST)
        return Attempt(managing, EventType.PATIENT_RECORD, subtype, action)

    # -- changes ------------------------------------------------------------------------------

    def grant(
        self,
        ctx: RequestContext,
        *,
        patient_id: str,
        purpose: Purpose,
        text_sha256: str,
        method: ConsentMethod,
        grantee_id: str | None = None,
        evidence_id: str | None = None,
        paper_form: PaperForm | None = None,
    ) -> ConsentRecord:
        """Record the patient's opt-in to ``purpose`` under the text ``text_sha256``.

        Granting again what is already active under the same text changes nothing and returns
        the existing consent. Raises :class:`~secretum.access.errors.AccessDenied`,
        :class:`~secretum.consent.texts.UnknownText` or :class:`ValueError`.

        On paper (:attr:`ConsentMethod.PAPER_SCANNED`) ``paper_form`` is required
        (:class:`PaperFormRequired`) and its date checked against the patient's latest
        withdrawal (:class:`PaperFormPredatesWithdrawal`, :class:`PaperFormDate`); its scan is
        then named with :meth:`attach_paper_form` (or here, as ``evidence_id``).
        """
        attempt = self._attempt(ctx, EventAction.CREATE, "create")
        attempt.target("Consent", None, patient_id)
        now = utc(ctx.now)
        actor = ctx.actor

        def work(conn: Connection) -> ConsentRecord:
            purpose_ = Purpose(purpose)
            method_ = ConsentMethod(method)
            if purpose_ not in CONSENTED_PURPOSES:
                raise ValueError(f"{purpose_} needs no consent")
            if (purpose_ is Purpose.SHARING) != (grantee_id is not None):
                raise ValueError("a SHARING consent, and only it, names a practitioner")
            if grantee_id == patient_id:
                raise ValueError("a patient does not share with themselves")
            text = self.texts.by_hash(text_sha256)
            if text.purpose is not purpose_:
                raise ValueError("this consent text is for another purpose")
            self._authorize(conn, attempt, patient_id, method_)
            if method_ is ConsentMethod.PAPER_SCANNED:
                if paper_form is None:
                    raise PaperFormRequired("a consent on paper needs its signed form")
                self._check_form_date(conn, patient_id, purpose_, grantee_id, paper_form, now)
            for existing in store.active_consents(
                conn, patient_id, now, purpose=purpose_, grantee_id=grantee_id
            ):
                if existing.text_sha256 == text_sha256:
                    attempt.target("Consent", existing.consent_id)
                    return existing
            evidence = Evidence(
                method_, actor.user_id, str(actor.role), now, ctx.source_address, evidence_id
            )
            consent_id = secrets.token_hex(16)
            attempt.target("Consent", consent_id)
            store.insert_grant(
                conn,
                consent_id=consent_id,
                patient_id=patient_id,
                purpose=purpose_,
                grantee_id=grantee_id,
                text_sha256=text.sha256,
                text_version=text.version,
                language=text.language,
                evidence=evidence,
            )
            if method_ is ConsentMethod.PAPER_SCANNED and paper_form is not None:
                paper.record_form(conn, consent_id, paper_form.signed_on, now, evidence_id)
            self._notify(conn, actor, patient_id, now, [consent_id], purpose_, "granted")
            record = store.get(conn, consent_id)
            assert record is not None
            return record

        return self.door.run(attempt, work)

    def withdraw(
        self,
        ctx: RequestContext,
        *,
        patient_id: str,
        purpose: Purpose,
        method: ConsentMethod,
        grantee_id: str | None = None,
        evidence_id: str | None = None,
    ) -> list[ConsentRecord]:
        """Withdraw every active consent of ``patient_id`` to ``purpose`` (for SHARING: the one
        naming ``grantee_id``), effective from ``ctx.now``. Raises :class:`NoActiveConsent`
        when there is none. One audit entry per consent withdrawn (the attempt's names the
        first)."""
        attempt = self._attempt(ctx, EventAction.UPDATE, "update")
        attempt.target("Consent", None, patient_id)
        now = utc(ctx.now)
        actor = ctx.actor

        def work(conn: Connection) -> list[ConsentRecord]:
            purpose_ = Purpose(purpose)
            method_ = ConsentMethod(method)
            if purpose_ is Purpose.SHARING and grantee_id is None:
                raise ValueError("withdrawing a SHARING consent names the practitioner")
            self._authorize(conn, attempt, patient_id, method_)
            active = store.active_consents(
                conn, patient_id, now, purpose=purpose_, grantee_id=grantee_id
            )
            if not active:
                raise NoActiveConsent(f"no active consent to {purpose_}")
            evidence = Evidence(
                method_, actor.user_id, str(actor.role), now, ctx.source_address, evidence_id
            )
            attempt.target("Consent", active[0].consent_id)
            for consent in active[1:]:
                attempt.also.append(self._event(attempt, consent.consent_id))
            for consent in active:
                store.insert_withdrawal(conn, consent.consent_id, evidence)
            ids = [c.consent_id for c in active]
            self._notify(conn, actor, patient_id, now, ids, purpose_, "withdrawn")
            withdrawn = [store.get(conn, c.consent_id) for c in active]
            return [w for w in withdrawn if w is not None]

        return self.door.run(attempt, work)

    def attach_paper_form(self, ctx: RequestContext, *, consent_id: str, document_id: str) -> None:
        """Name the stored scan of a paper consent's form (once, by a practitioner allowed to
        manage the patient's consents). Audited as an update of the consent."""
        attempt = self._attempt(ctx, EventAction.UPDATE, "update")
        attempt.target("Consent", consent_id)

        def work(conn: Connection) -> None:
            record = store.get(conn, consent_id)
            if record is None or record.granted.method is not ConsentMethod.PAPER_SCANNED:
                raise LookupError("no such paper consent")
            self._authorize(conn, attempt, record.patient_id, ConsentMethod.PAPER_SCANNED)
            attempt.target("Consent", consent_id)
            if not paper.attach_document(conn, consent_id, document_id):
                raise ValueError("this consent's form is stored already")

        self.door.run(attempt, work)

    def paper_form(self, consent_id: str) -> tuple[date, str | None] | None:
        """``(signed_on, document id of the scan)`` of a consent recorded on paper, or None
        (dates and ids only, for the form's own workflow: not a read of the record)."""
        with self.door.reads.connect() as conn:
            return paper.form_of(conn, consent_id)

    def active_purposes(self, patient_id: str, now: datetime) -> set[Purpose]:
        """The purposes the patient consents to at ``now`` (codes only: which purpose a paper
        form's scan may be stored under, before the use case that stores it decides)."""
        with self.door.reads.connect() as conn:
            return {c.purpose for c in store.active_consents(conn, patient_id, utc(now))}

    @staticmethod
    def _check_form_date(
        conn: Connection,
        patient_id: str,
        purpose: Purpose,
        grantee_id: str | None,
        form: PaperForm,
        now: datetime,
    ) -> None:
        """Refuse a form dated in the future, or on or before the day (UTC) of the patient's
        latest withdrawal of this consent (same purpose, same practitioner for SHARING)."""
        if form.signed_on > now.astimezone(UTC).date():
            raise PaperFormDate("the form is dated in the future")
        withdrawals = [
            c.withdrawn.at
            for c in store.history(conn, patient_id)
            if c.purpose is purpose
            and c.grantee_id == grantee_id
            and c.withdrawn is not None
            and c.withdrawn.at <= now
        ]
        if withdrawals and form.signed_on <= max(withdrawals).astimezone(UTC).date():
            raise PaperFormPredatesWithdrawal(
                "the form was signed before the patient's latest withdrawal"
            )

    # -- reading ------------------------------------------------------------------------------

    def history(self, ctx: RequestContext, patient_id: str) -> list[ConsentRecord]:
        """Every consent of ``patient_id`` with its evidence (withdrawn ones too), audited
        (DCM 110112 Query, E, search)."""
        attempt = Attempt(ctx, EventType.QUERY, "search", EventAction.EXECUTE)

        def work(conn: Connection) -> list[ConsentRecord]:
            resource = Resource("Consent", patient_id=patient_id)
            self.door.authorize(conn, attempt, Action.SEARCH, resource)
            return store.history(conn, patient_id)

        return self.door.read(attempt, work)

    def fhir(self, ctx: RequestContext, consent_id: str) -> dict[str, Any]:
        """The FHIR R4 Consent of ``consent_id``, if the actor may read it; audited."""
        attempt = Attempt(ctx, EventType.PATIENT_RECORD, "read", EventAction.READ)
        attempt.target("Consent", consent_id)

        def work(conn: Connection) -> dict[str, Any]:
            record = store.get(conn, consent_id)
            if record is None:
                raise LookupError("no such consent")
            resource = Resource("Consent", patient_id=record.patient_id, resource_id=consent_id)
            self.door.authorize(conn, attempt, Action.READ, resource)
            return to_fhir_consent(record)

        return self.door.read(attempt, work)

    # -- helpers ------------------------------------------------------------------------------

    def _authorize(
        self, conn: Connection, attempt: Attempt, patient_id: str, method: ConsentMethod
    ) -> None:
        if METHOD_ROLES[method] is not attempt.actor.role:
            raise ValueError(f"a {attempt.actor.role} does not record a consent by {method}")
        resource = Resource("Consent", patient_id=patient_id)
        self.door.authorize(conn, attempt, Action.MANAGE_CONSENT, resource)

    @staticmethod
    def _event(attempt: Attempt, consent_id: str) -> AuditEvent:
        """The entry of one more consent changed by the same attempt."""
        same = replace(attempt, resource_type="Consent", resource_id=consent_id, also=[])
        return same.event(Outcome.SUCCESS)

    @staticmethod
    def _notify(
        conn: Connection,
        actor: Actor,
        patient_id: str,
        now: datetime,
        consent_ids: Iterable[str],
        purpose: Purpose,
        change: str,
    ) -> None:
        """Tell the patient when someone else changed their consents."""
        if actor.role is Role.PATIENT and actor.user_id == patient_id:
            return
        for consent_id in consent_ids:
            notify(
                conn,
                patient_id,
                NoticeKind.CONSENT_CHANGED,
                now,
                actor_id=actor.user_id,
                consent_id=consent_id,
                purpose=str(purpose),
                change=change,
            )
