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
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from secretum.audit.log import AuditLog
from secretum.audit.model import AuditEvent, EventAction, EventType
from secretum.consent import store
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
    ) -> ConsentRecord:
        """Record the patient's opt-in to ``purpose`` under the text ``text_sha256``.

        Granting again what is already active under the same text changes nothing and returns
        the existing consent. Raises :class:`~secretum.policy.decide.AccessDenied`,
        :class:`~secretum.consent.texts.UnknownText` or :class:`ValueError`.
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
