"""The patient's rights (GDPR) in one place for the web layer: who opened my record, export,
rectification, restriction, erasure. Each method is one guarded, audited use case (see the
modules of :mod:`secretum.rights`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

from secretum.access.context import RequestContext
from secretum.records.fhir import FhirRecord
from secretum.records.service import RecordService
from secretum.rights.access_log import (
    AccessPage,
    GroupPage,
    access_history,
    grouped_access_history,
)
from secretum.rights.erasure import DEFAULT_RETENTION_YEARS, ErasureOutcome, ErasureRun, Erasures
from secretum.rights.export import RecordExport, export_record
from secretum.rights.ports import CareTeamOf, ErasureHook, RestrictionFlags, Shredder
from secretum.rights.requests import request_rectification, set_restriction


class RightsService:
    """The patient's rights over the records of :class:`RecordService`."""

    def __init__(
        self,
        records: RecordService,
        *,
        care_team_of: CareTeamOf,
        flags: RestrictionFlags,
        shred: Shredder,
        retention_years: int = DEFAULT_RETENTION_YEARS,
        also_erase: Sequence[ErasureHook] = (),
    ) -> None:
        self.records = records
        self.care_team_of = care_team_of
        self.flags = flags
        self.erasures = Erasures(
            records, flags, shred, retention_years=retention_years, also_erase=also_erase
        )

    def access_history(
        self,
        ctx: RequestContext,
        patient_id: str,
        *,
        limit: int = 50,
        before: int | None = None,
    ) -> AccessPage:
        """Who accessed the patient's data, newest first (``before``: the page cursor)."""
        return access_history(
            self.records,
            ctx,
            patient_id,
            limit=limit,
            before=before,
        )

    def grouped_access_history(
        self,
        ctx: RequestContext,
        patient_id: str,
        tz: tzinfo,
        *,
        page: int = 1,
        per_page: int = 50,
    ) -> GroupPage:
        """Who accessed the patient's data, in a patient's words: repeated accesses of one
        person, purpose, day and kind grouped, newest first, ``per_page`` groups a page."""
        return grouped_access_history(
            self.records, ctx, patient_id, tz, page=page, per_page=per_page
        )

    def export(
        self,
        ctx: RequestContext,
        patient_id: str,
        *,
        base_url: str | None = None,
    ) -> RecordExport:
        """The whole record: ``.bundle`` (FHIR Bundle) and ``.iter_zip()`` (bundle + files)."""
        return export_record(
            self.records,
            ctx,
            patient_id,
            base_url=base_url,
        )

    def request_rectification(
        self,
        ctx: RequestContext,
        patient_id: str,
        text: str,
        *,
        about: tuple[str, str] | None = None,
    ) -> FhirRecord:
        """Store a rectification request (a sealed FHIR Task) and notify the care team."""
        return request_rectification(
            self.records,
            self.care_team_of,
            ctx,
            patient_id,
            text,
            about=about,
        )

    def set_restriction(
        self,
        ctx: RequestContext,
        patient_id: str,
        restricted: bool = True,
    ) -> None:
        """Restrict (or lift the restriction of) the processing of the patient's data."""
        set_restriction(
            self.records,
            self.flags,
            ctx,
            patient_id,
            restricted,
        )

    def request_erasure(
        self,
        ctx: RequestContext,
        patient_id: str,
    ) -> ErasureOutcome:
        """Shred now if the retention period is over, else restrict and schedule."""
        return self.erasures.request_erasure(ctx, patient_id)

    def run_due_erasures(self, now: datetime) -> ErasureRun:
        """The periodic job shredding scheduled erasures that came due."""
        return self.erasures.run_due_erasures(now)
