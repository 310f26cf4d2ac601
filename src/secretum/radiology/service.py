"""The radiologist's use cases: worklist, report drafts, signing, verification.

Reports are FHIR DiagnosticReports held by the records (sealed with the patient's key,
versioned): every use case goes through the records' door (one policy decision, one audit
entry, DCM 110110 Patient Record) with the records' building blocks
(:class:`~secretum.records.service.RecordService`), never around them. The policy decides as
for any record: a practitioner of the patient's care team (the referral to the radiologist)
with the teleradiology consent writes a report; a patient reads their own, writes none.

Signing (see :mod:`secretum.radiology.canonical` for what is signed)
---------------------------------------------------------------------
1. :meth:`ReportService.begin_signing` (decided as an update of the report): the version to be
   signed is built (status ``final``, or ``amended`` when a version was signed before;
   ``issued`` now; the signer as ``resultsInterpreter``; the version number it will be stored
   as), its canonical SHA-256 becomes the WebAuthn challenge, kept in a single-use, expiring
   ceremony with the version it was built from.
2. The browser asks the radiologist's passkey or security key (``navigator.credentials.get``,
   user verification required).
3. :meth:`ReportService.finish_signing` spends the ceremony (committed at once: a replayed or
   failed assertion never finds it again), rebuilds the version from the same report version
   and time (refused if the report changed meanwhile), verifies the assertion against the
   signer's registered credential, and stores the signed version with the assertion in its
   signature extension. An amendment is a new draft then a new signature: a new version; the
   signed versions before it stay in the report's history.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from secretum.access.context import RequestContext
from secretum.access.door import Attempt
from secretum.access.errors import AccessDenied
from secretum.access.model import Action, Decision, Resource, Sensitivity
from secretum.audit.model import EventAction
from secretum.imaging.archive import ImagingArchive
from secretum.imaging.archive_model import StudyMatch, StudyQuery
from secretum.radiology.canonical import (
    DICOM_UID_SYSTEM,
    REPORT_CODE,
    StoredSignature,
    content_hash,
    signed_version_of,
)
from secretum.radiology.ceremony import (
    CHALLENGE_TTL,
    REPORT,
    SigningRefused,
    SigningStart,
    open_ceremony,
    stored_signature,
    take_ceremony,
    to_sign,
    utc,
)
from secretum.radiology.model import ReportVerification, SignedReport, WorkItem
from secretum.radiology.signing import (
    RelyingParty,
    SignerKeys,
    check_signature,
    signing_options,
)
from secretum.radiology.tables import radiology_reports
from secretum.records.fhir import (
    FhirRecord,
    ResourceNotFound,
    UnprocessableResource,
    VersionConflict,
    validate,
)
from secretum.records.search import IndexRow
from secretum.records.service import RecordService

MAX_REPORT_CHARS = 20_000
#: The one decision of the operator's verification (``secretum report verify``): it opens the
#: report only to hash it and returns a verdict (ids, booleans), never its content.
OPERATOR_CHECK = Decision(True, "allow.signature-check")

#: ``referred(practitioner_id, now)``: the patients referred to this practitioner now.
Referred = Callable[[str, datetime], list[str]]


class ReportService:
    """The radiologist's use cases (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        records: RecordService,
        archive: ImagingArchive,
        keys: SignerKeys,
        rp: RelyingParty,
        referred: Referred,
        *,
        challenge_ttl: timedelta = CHALLENGE_TTL,
    ) -> None:
        self.engine = engine
        self.records = records
        self.archive = archive
        self.keys = keys
        self.rp = rp
        self.referred = referred
        self.door = records.door
        self.challenge_ttl = challenge_ttl

    # -- worklist -------------------------------------------------------------------------------

    def worklist(self, ctx: RequestContext) -> list[WorkItem]:
        """Studies of the patients referred to the actor, without a signed report. Each
        patient's studies are one audited query of the archive (a patient whose studies the
        actor may no longer see, e.g. after a withdrawn consent, is left out)."""
        items: list[WorkItem] = []
        for pid in self.referred(ctx.actor.user_id, ctx.now):
            try:
                studies = self.archive.search_studies(ctx, patient_id=pid)
            except AccessDenied:
                continue
            reports = self.report_index(pid)
            for study in studies:
                index = self.archive.store.study_index(study.study_uid)
                of_study = [r for r in reports if r["study_uid_index"] == index]
                if any(r["signed_version"] is not None for r in of_study):
                    continue
                draft = next((r["report_id"] for r in of_study), None)
                items.append(_item(study, draft))
        return items

    def report_index(self, patient_id: str) -> list[dict[str, Any]]:
        t = radiology_reports.c
        with self.door.reads.connect() as conn:
            rows = conn.execute(
                select(radiology_reports).where(t.patient_id == patient_id).order_by(t.created_at)
            ).mappings()
            return [dict(r) for r in rows]

    def study(self, ctx: RequestContext, study_uid: str) -> tuple[StudyMatch, list[dict[str, Any]]]:
        """One study of the worklist (one audited query: refused unless the actor may see it)
        and the reports about it (ids, signed versions)."""
        found = self.archive.search_studies(ctx, query=StudyQuery(study_uid=study_uid))
        if not found:
            raise ResourceNotFound("no such study")
        index = self.archive.store.study_index(study_uid)
        reports = [
            r for r in self.report_index(found[0].patient_id or "") if r["study_uid_index"] == index
        ]
        return found[0], reports

    # -- drafts ---------------------------------------------------------------------------------

    def save_draft(
        self,
        ctx: RequestContext,
        study_uid: str,
        text: str,
        *,
        report_id: str | None = None,
    ) -> FhirRecord:
        """Create the report of a study, or a new draft version of it (an amendment once
        signed): status ``preliminary``, the text as ``conclusion``."""
        text = text.strip()
        if not text or len(text) > MAX_REPORT_CHARS:
            raise UnprocessableResource(f"a report holds 1 to {MAX_REPORT_CHARS} characters")
        subtype, action = (
            ("create", EventAction.CREATE) if report_id is None else ("update", EventAction.UPDATE)
        )
        attempt = RecordService.attempt(ctx, subtype, action)

        def work(conn: Connection) -> FhirRecord:
            study = self.archive.store.find_study(conn, study_uid)
            if study is None or study.patient_id is None:
                raise ResourceNotFound("no such study")
            pid = study.patient_id
            row: IndexRow | None = None
            if report_id is not None:
                row = self._report_row(conn, attempt, report_id)
                if row.patient_id != pid or self._study_index_of(
                    conn, report_id
                ) != self.archive.store.study_index(study_uid):
                    raise UnprocessableResource("this report is about another study")
            rid = report_id or self.records.fresh_id(conn, None)
            sens = (
                Sensitivity.RESTRICTED
                if Sensitivity.RESTRICTED in {study.sensitivity, row.sensitivity if row else None}
                else Sensitivity.NORMAL
            )
            resource = Resource(REPORT, pid, rid, sens)
            self.door.authorize(
                conn, attempt, Action.CREATE if row is None else Action.UPDATE, resource
            )
            body = validate(
                {
                    "resourceType": REPORT,
                    "id": rid,
                    "status": "preliminary",
                    "code": REPORT_CODE,
                    "subject": {"reference": f"Patient/{pid}"},
                    "imagingStudy": [
                        {
                            "identifier": {
                                "system": DICOM_UID_SYSTEM,
                                "value": f"urn:oid:{study_uid}",
                            }
                        }
                    ],
                    "resultsInterpreter": [{"reference": f"Practitioner/{ctx.actor.user_id}"}],
                    "conclusion": text,
                },
                REPORT,
            )
            record = self.records.write(conn, body, row, pid, sens, ctx.now, attempt=attempt)
            if row is None:
                conn.execute(
                    insert(radiology_reports).values(
                        report_id=rid,
                        patient_id=pid,
                        study_uid_index=self.archive.store.study_index(study_uid),
                        author_id=ctx.actor.user_id,
                        signed_version=None,
                        created_at=ctx.now,
                        updated_at=ctx.now,
                    )
                )
            return record

        return self.door.run(attempt, work)

    def _report_row(self, conn: Connection, attempt: Attempt, report_id: str) -> IndexRow:
        row = self.records.existing(conn, attempt, REPORT, report_id)
        if self._study_index_of(conn, report_id) is None:
            raise ResourceNotFound("no such report")
        return row

    @staticmethod
    def _study_index_of(conn: Connection, report_id: str) -> bytes | None:
        t = radiology_reports.c
        value = conn.execute(select(t.study_uid_index).where(t.report_id == report_id)).scalar()
        return None if value is None else bytes(value)

    # -- signing --------------------------------------------------------------------------------

    def _signed_before(self, conn: Connection, report_id: str) -> bool:
        t = radiology_reports.c
        return (
            conn.execute(select(t.signed_version).where(t.report_id == report_id)).scalar()
            is not None
        )

    def begin_signing(self, ctx: RequestContext, report_id: str) -> SigningStart:
        """Start signing the current version of a report (decided as its update): the
        WebAuthn options whose challenge is the SHA-256 of the canonical form to be signed."""
        attempt = RecordService.attempt(ctx, "operation", EventAction.UPDATE)
        signer = ctx.actor.user_id

        def work(conn: Connection) -> tuple[str, bytes]:
            row = self._report_row(conn, attempt, report_id)
            resource = Resource(REPORT, row.patient_id, report_id, row.sensitivity)
            self.door.authorize(conn, attempt, Action.UPDATE, resource)
            current = self.records.repo.load(conn, row)
            if current.resource.get("status") != "preliminary":
                raise UnprocessableResource("this version is signed already: amend it first")
            issued = ctx.now.astimezone(UTC).replace(microsecond=0)
            body = to_sign(current, signer, issued, self._signed_before(conn, report_id))
            challenge = content_hash(body)
            challenge_id = open_ceremony(
                conn,
                report_id=report_id,
                signer_id=signer,
                base_version=row.version,
                issued=issued,
                content_sha256=challenge,
                expires_at=ctx.now + self.challenge_ttl,
            )
            return challenge_id, challenge

        challenge_id, challenge = self.door.run(attempt, work)
        options = signing_options(self.rp, challenge, self.keys.keys_of(signer))
        return SigningStart(challenge_id, options)

    def finish_signing(
        self,
        ctx: RequestContext,
        report_id: str,
        challenge_id: str,
        credential: str | dict[str, Any],
    ) -> FhirRecord:
        """Verify the assertion and store the signed version (see the module docstring)."""
        attempt = RecordService.attempt(ctx, "update", EventAction.UPDATE)
        signer = ctx.actor.user_id
        taken: dict[str, Any] = {}
        try:
            taken.update(take_ceremony(self.engine, challenge_id, report_id, signer, ctx.now))
        except SigningRefused as exc:
            refusal: Exception | None = exc
        else:
            refusal = None

        def work(conn: Connection) -> FhirRecord:
            row = self._report_row(conn, attempt, report_id)
            resource = Resource(REPORT, row.patient_id, report_id, row.sensitivity)
            self.door.authorize(conn, attempt, Action.UPDATE, resource)
            if refusal is not None:
                raise refusal
            ceremony = taken
            if row.version != ceremony["base_version"]:
                raise VersionConflict("the report changed since signing began")
            current = self.records.repo.load(conn, row)
            issued = utc(ceremony["issued_at"])
            body = to_sign(current, signer, issued, self._signed_before(conn, report_id))
            digest = content_hash(body)
            if digest != bytes(ceremony["content_sha256"]):
                raise SigningRefused("the report changed since signing began")
            sig = stored_signature(credential, signer, digest, ctx.now, self.rp.rp_id)
            key = self.keys.key(sig.credential_id)
            check, count = check_signature(
                self.rp, sig, content_sha256=digest, key=key, version_matches=True
            )
            if not check.valid or key is None or key.blocked:
                raise SigningRefused("the assertion does not sign this report")
            if (count or key.sign_count) and (count or 0) <= key.sign_count:
                raise SigningRefused("the authenticator's counter went back (a cloned key?)")
            if not self.keys.record_use(conn, key, count or 0, ctx.now):
                raise SigningRefused("the credential was used meanwhile")
            body["extension"] = [*body.get("extension", []), sig.extension()]
            body = validate(body, REPORT)
            record = self.records.write(
                conn, body, row, row.patient_id, row.sensitivity, ctx.now, attempt=attempt
            )
            conn.execute(
                update(radiology_reports)
                .where(radiology_reports.c.report_id == report_id)
                .values(signed_version=record.version, updated_at=ctx.now)
            )
            return record

        return self.door.run(attempt, work)

    # -- verification ---------------------------------------------------------------------------

    def check(self, record: FhirRecord) -> ReportVerification:
        sig = StoredSignature.of(record.resource)
        if sig is None:
            return ReportVerification(record.resource_id, record.version, False, None, None, None)
        key = self.keys.key(sig.credential_id)
        version_ok = signed_version_of(record.resource) == record.version
        check, _ = check_signature(
            self.rp,
            sig,
            content_sha256=content_hash(record.resource),
            key=key,
            version_matches=version_ok,
        )
        return ReportVerification(
            record.resource_id, record.version, True, check, sig.signer_id, sig.when
        )

    def verify(
        self, ctx: RequestContext, report_id: str, version: int | None = None
    ) -> ReportVerification:
        """Verify a version (default: the current one) of a report the actor may read."""
        return self.check(self.records.read(ctx, REPORT, report_id, version=version))

    def verify_for_operator(
        self, ctx: RequestContext, report_id: str, version: int | None = None
    ) -> ReportVerification:
        """The operator's check (``secretum report verify``): one decision of this use case's
        own (:data:`OPERATOR_CHECK`), one audit entry naming the report and its patient. The
        report is opened only to hash it; what is returned is a verdict, never its content."""
        attempt = RecordService.attempt(ctx, "operation", EventAction.EXECUTE)

        def work(conn: Connection) -> ReportVerification:
            row = self._report_row(conn, attempt, report_id)
            attempt.target(REPORT, report_id, row.patient_id)
            self.door.rule(attempt, OPERATOR_CHECK)
            if version is not None and not 1 <= version <= row.version:
                raise ResourceNotFound("no such version of this report")
            return self.check(self.records.repo.load(conn, row, version))

        return self.door.read(attempt, work)

    def signed_reports(self, ctx: RequestContext, patient_id: str) -> list[SignedReport]:
        """The last signed version of each report of a patient, with its verification: what
        the patient sees in their record. One audited search of the patient's reports (the
        restricted ones only if the actor may see restricted data)."""
        attempt = RecordService.attempt(ctx, "search", EventAction.EXECUTE)

        def work(conn: Connection) -> list[FhirRecord]:
            t = radiology_reports.c
            signed = conn.execute(
                select(t.report_id, t.signed_version)
                .where(t.patient_id == patient_id, t.signed_version.is_not(None))
                .order_by(t.created_at)
            ).all()
            rows = [(self.records.repo.find(conn, rid), version) for rid, version in signed]
            present = any(
                r is not None and r.sensitivity is Sensitivity.RESTRICTED for r, _ in rows
            )
            scope = self.door.scope(
                conn,
                attempt,
                Action.SEARCH,
                Resource(REPORT, patient_id),
                restricted_present=present,
            )
            return [
                self.records.repo.load(conn, row, int(version))
                for row, version in rows
                if row is not None and row.sensitivity in scope.labels
            ]

        return [SignedReport(r, self.check(r)) for r in self.door.read(attempt, work)]


def _item(study: StudyMatch, draft: str | None) -> WorkItem:
    return WorkItem(
        study.study_uid,
        study.patient_id or "",
        study.attributes,
        study.modalities,
        study.instance_count,
        draft,
    )


def report_digest(record: FhirRecord) -> str:
    """Hex SHA-256 of a report version's canonical form (shown beside a signature)."""
    return content_hash(record.resource).hex()
