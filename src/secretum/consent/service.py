"""Consent use cases: grant, withdraw, read the history, export as FHIR.

"Before any processing, the patient gives clear consent": one explicit opt-in per purpose (for
SHARING, naming the practitioner), against an exact text version (its SHA-256). Each grant or
withdrawal is

* decided by the policy (``Action.MANAGE_CONSENT``: the patient on their own record, or a
  practitioner of the care team recording a paper form after a fresh step-up),
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
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.engine import Connection

from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType
from secretum.consent import paper, store
from secretum.consent.fhir import to_fhir_consent
from secretum.consent.store import ConsentMethod, ConsentRecord, Evidence, NoActiveConsent
from secretum.consent.texts import ConsentTexts, default_texts
from secretum.notices.store import NoticeKind, notify
from secretum.policy.decide import require
from secretum.policy.facts import load_facts
from secretum.policy.model import (
    AUDIT_PURPOSE,
    CONSENTED_PURPOSES,
    Action,
    Actor,
    Decision,
    Purpose,
    Resource,
    Role,
)
from secretum.policy.tables import utc

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
    """Grants and withdrawals of patients' consents, in the caller's transaction."""

    def __init__(self, audit: AuditLog, texts: ConsentTexts | None = None) -> None:
        self.audit = audit
        self.texts = texts or default_texts()

    # -- changes ------------------------------------------------------------------------------

    def grant(
        self,
        conn: Connection,
        actor: Actor,
        *,
        patient_id: str,
        purpose: Purpose,
        text_sha256: str,
        method: ConsentMethod,
        now: datetime,
        grantee_id: str | None = None,
        source_address: str | None = None,
        evidence_id: str | None = None,
        paper_form: PaperForm | None = None,
    ) -> ConsentRecord:
        """Record the patient's opt-in to ``purpose`` under the text ``text_sha256``.

        Granting again what is already active under the same text changes nothing and returns
        the existing consent. Raises :class:`~secretum.policy.decide.AccessDenied`,
        :class:`~secretum.consent.texts.UnknownText` or :class:`ValueError`.

        On paper (:attr:`ConsentMethod.PAPER_SCANNED`) ``paper_form`` is required
        (:class:`PaperFormRequired`) and its date checked against the patient's latest
        withdrawal (:class:`PaperFormPredatesWithdrawal`, :class:`PaperFormDate`); its scan is
        then named with :meth:`attach_paper_form` (or here, as ``evidence_id``).
        """
        now = utc(now)
        purpose = Purpose(purpose)
        method = ConsentMethod(method)
        if purpose not in CONSENTED_PURPOSES:
            raise ValueError(f"{purpose} needs no consent")
        if (purpose is Purpose.SHARING) != (grantee_id is not None):
            raise ValueError("a SHARING consent, and only it, names a practitioner")
        if grantee_id == patient_id:
            raise ValueError("a patient does not share with themselves")
        text = self.texts.by_hash(text_sha256)
        if text.purpose is not purpose:
            raise ValueError("this consent text is for another purpose")
        self._authorize(conn, actor, patient_id, method, now)
        if method is ConsentMethod.PAPER_SCANNED:
            if paper_form is None:
                raise PaperFormRequired("a consent on paper needs its signed form")
            self._check_form_date(conn, patient_id, purpose, grantee_id, paper_form, now)
        for existing in store.active_consents(
            conn, patient_id, now, purpose=purpose, grantee_id=grantee_id
        ):
            if existing.text_sha256 == text_sha256:
                return existing
        evidence = Evidence(
            method, actor.user_id, str(actor.role), now, source_address, evidence_id
        )
        consent_id = secrets.token_hex(16)
        # Built first: an id the audit refuses stops the grant before anything is written.
        event = self._event(actor, patient_id, consent_id, now, EventAction.CREATE, source_address)
        store.insert_grant(
            conn,
            consent_id=consent_id,
            patient_id=patient_id,
            purpose=purpose,
            grantee_id=grantee_id,
            text_sha256=text.sha256,
            text_version=text.version,
            language=text.language,
            evidence=evidence,
        )
        if method is ConsentMethod.PAPER_SCANNED and paper_form is not None:
            paper.record_form(conn, consent_id, paper_form.signed_on, now, evidence_id)
        self.audit.append(conn, event)
        self._notify(conn, actor, patient_id, now, [consent_id], purpose, "granted")
        record = store.get(conn, consent_id)
        assert record is not None
        return record

    def withdraw(
        self,
        conn: Connection,
        actor: Actor,
        *,
        patient_id: str,
        purpose: Purpose,
        method: ConsentMethod,
        now: datetime,
        grantee_id: str | None = None,
        source_address: str | None = None,
        evidence_id: str | None = None,
    ) -> list[ConsentRecord]:
        """Withdraw every active consent of ``patient_id`` to ``purpose`` (for SHARING: the one
        naming ``grantee_id``), effective from ``now``. Raises :class:`NoActiveConsent` when
        there is none."""
        now = utc(now)
        purpose = Purpose(purpose)
        method = ConsentMethod(method)
        if purpose is Purpose.SHARING and grantee_id is None:
            raise ValueError("withdrawing a SHARING consent names the practitioner")
        self._authorize(conn, actor, patient_id, method, now)
        active = store.active_consents(
            conn, patient_id, now, purpose=purpose, grantee_id=grantee_id
        )
        if not active:
            raise NoActiveConsent(f"no active consent to {purpose}")
        evidence = Evidence(
            method, actor.user_id, str(actor.role), now, source_address, evidence_id
        )
        events = [
            self._event(actor, patient_id, c.consent_id, now, EventAction.UPDATE, source_address)
            for c in active
        ]
        for consent in active:
            store.insert_withdrawal(conn, consent.consent_id, evidence)
        self.audit.append_many(conn, events)
        self._notify(
            conn, actor, patient_id, now, [c.consent_id for c in active], purpose, "withdrawn"
        )
        withdrawn = [store.get(conn, c.consent_id) for c in active]
        return [w for w in withdrawn if w is not None]

    def attach_paper_form(
        self,
        conn: Connection,
        actor: Actor,
        *,
        consent_id: str,
        document_id: str,
        now: datetime,
        source_address: str | None = None,
    ) -> None:
        """Name the stored scan of a paper consent's form (once, by a practitioner allowed to
        manage the patient's consents). Audited as an update of the consent."""
        now = utc(now)
        record = store.get(conn, consent_id)
        if record is None or record.granted.method is not ConsentMethod.PAPER_SCANNED:
            raise LookupError("no such paper consent")
        self._authorize(conn, actor, record.patient_id, ConsentMethod.PAPER_SCANNED, now)
        event = self._event(
            actor, record.patient_id, consent_id, now, EventAction.UPDATE, source_address
        )
        if not paper.attach_document(conn, consent_id, document_id):
            raise ValueError("this consent's form is stored already")
        self.audit.append(conn, event)

    def paper_form(self, conn: Connection, consent_id: str) -> tuple[date, str | None] | None:
        """``(signed_on, document id of the scan)`` of a consent recorded on paper, or None."""
        return paper.form_of(conn, consent_id)

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

    def history(
        self,
        conn: Connection,
        actor: Actor,
        patient_id: str,
        now: datetime,
        *,
        purpose: Purpose = Purpose.PATIENT_REQUEST,
        source_address: str | None = None,
    ) -> list[ConsentRecord]:
        """Every consent of ``patient_id`` with its evidence (withdrawn ones too), audited."""
        now = utc(now)
        resource = Resource("Consent", patient_id=patient_id)
        self._require(conn, actor, Action.SEARCH, resource, purpose, now)
        records = store.history(conn, patient_id)
        self.audit.append(
            conn,
            AuditEvent(
                recorded=now,
                event_type=EventType.QUERY,
                action=EventAction.EXECUTE,
                actor_id=actor.user_id,
                actor_role=str(actor.role),
                subtype="search",
                patient_id=patient_id,
                purpose=AUDIT_PURPOSE[purpose],
                source_address=source_address,
            ),
        )
        return records

    def fhir(
        self,
        conn: Connection,
        actor: Actor,
        consent_id: str,
        now: datetime,
        *,
        purpose: Purpose = Purpose.PATIENT_REQUEST,
        source_address: str | None = None,
    ) -> dict[str, Any]:
        """The FHIR R4 Consent of ``consent_id``, if the actor may read it; audited."""
        now = utc(now)
        record = store.get(conn, consent_id)
        if record is None:
            raise LookupError("no such consent")
        resource = Resource("Consent", patient_id=record.patient_id, resource_id=consent_id)
        self._require(conn, actor, Action.READ, resource, purpose, now)
        event = self._event(
            actor, record.patient_id, consent_id, now, EventAction.READ, source_address, purpose
        )
        self.audit.append(conn, event)
        return to_fhir_consent(record)

    # -- helpers ------------------------------------------------------------------------------

    def _authorize(
        self, conn: Connection, actor: Actor, patient_id: str, method: ConsentMethod, now: datetime
    ) -> None:
        if METHOD_ROLES[method] is not actor.role:
            raise ValueError(f"a {actor.role} does not record a consent by {method}")
        resource = Resource("Consent", patient_id=patient_id)
        self._require(conn, actor, Action.MANAGE_CONSENT, resource, Purpose.PATIENT_REQUEST, now)

    @staticmethod
    def _require(
        conn: Connection,
        actor: Actor,
        action: Action,
        resource: Resource,
        purpose: Purpose,
        now: datetime,
    ) -> Decision:
        facts = load_facts(conn, actor, resource.patient_id, now)
        return require(actor, action, resource, purpose, now, facts)

    @staticmethod
    def _event(
        actor: Actor,
        patient_id: str,
        consent_id: str,
        now: datetime,
        action: EventAction,
        source_address: str | None,
        purpose: Purpose = Purpose.PATIENT_REQUEST,
    ) -> AuditEvent:
        subtype = {EventAction.CREATE: "create", EventAction.UPDATE: "update"}.get(action, "read")
        return AuditEvent(
            recorded=now,
            event_type=EventType.PATIENT_RECORD,
            action=action,
            actor_id=actor.user_id,
            actor_role=str(actor.role),
            subtype=subtype,
            resource_type="Consent",
            resource_id=consent_id,
            patient_id=patient_id,
            purpose=AUDIT_PURPOSE[purpose],
            source_address=source_address,
        )

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
