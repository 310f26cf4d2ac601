"""De-identified export of a study (issue 10, section 5; DICOM PS3.15 Annex E).

A practitioner of the patient's care team sends a study out de-identified: for a second opinion
(a care purpose, with its consent) or for research (the patient's research consent,
``Purpose.RESEARCH``). The policy rule ``allow.imaging-deidentified-export`` decides
(:data:`~secretum.access.model.Action.EXPORT_DEIDENTIFIED`); :meth:`DeidentifiedExport.prepare`
asks it once and writes one audit entry (DCM 110106 Export, naming the study and the patient),
then returns an :class:`ExportPlan` that writes the instances, de-identified one at a time (memory
stays at one instance), as a zip of Part-10 files (:meth:`ExportPlan.write_zip`, to any
writable stream: an HTTP response) or as a STOW-RS request to another DICOMweb server
(:meth:`ExportPlan.stow`). Both report progress (instances done, total) to a callback.

Per export the caller chooses:

* the **project**: a short name (``[a-z0-9-]``); its key is a named secret of the key ring
  (``imaging/deid-project/<name>``, 256 random bits drawn on first use, never shown), so the UIDs
  and the patient pseudonym of a later export of the same patient in the same project are the
  same (they link), and unrelated in another project;
* the PS3.15 **options** (:class:`~secretum.imaging.deid.DeidOptions`);
* what to do with **burned-in annotation** (:class:`BurnedIn`): an instance is flagged when
  its BurnedInAnnotation is YES or its modality or SOP class commonly carries text in its
  pixels (ultrasound, secondary capture, photographs, scanned documents...; see
  :func:`~secretum.imaging.deid.burned_in`). Pixels are never cleaned here. ``refuse`` (the
  default) refuses the whole export before anything is written; ``exclude`` leaves the flagged
  instances out; ``flag`` sends them, marked in the zip's manifest, for a reviewer who has
  agreed to check the pixels. The flags are computed from the sealed metadata before the
  export starts, so a refusal sends nothing.

Private attributes are removed unless safe-listed (:data:`~secretum.imaging.deid.SAFE_PRIVATE`).
"""

from __future__ import annotations

import io
import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any

import httpx
import pydicom
from pydicom.dataset import Dataset
from sqlalchemy.engine import Connection

from secretum.access.context import RequestContext
from secretum.access.door import Attempt
from secretum.access.errors import Refused
from secretum.access.model import Action, Resource
from secretum.audit.model import EventAction, EventType
from secretum.imaging.archive import ImagingArchive, StudyReader
from secretum.imaging.archive_model import STUDY_KIND, StudyNotFound
from secretum.imaging.deid import Deidentifier, DeidOptions, DeidResult, burned_in, write_zip

#: A project name: what the key ring's secret is named after (no free text).
PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
PROJECT_SECRET = "imaging/deid-project/"  # noqa: S105 (a name prefix)
PROJECT_KEY_BYTES = 32
#: ``progress(done, total)`` after each instance.
Progress = Callable[[int, int], None]

_BURNED_IN_ANNOTATION, _MODALITY, _SOP_CLASS = "00280301", "00080060", "00080016"
_REFERENCED_SOP_SEQUENCE, _FAILED_SOP_SEQUENCE = "00081199", "00081198"


class BurnedIn(StrEnum):
    """What an export does with instances whose pixels may show identifying text."""

    REFUSE = "refuse"
    EXCLUDE = "exclude"
    FLAG = "flag"


class ExportRefused(Refused):
    """The export cannot go as asked (burned-in annotation under ``refuse``, a bad project)."""

    status = 422
    code = "business-rule"


class StowFailed(Exception):
    """The receiving server answered a STOW-RS with an error (its status code only)."""


@dataclass(frozen=True)
class ExportRequest:
    project: str
    options: DeidOptions = field(default_factory=DeidOptions)
    burned_in: BurnedIn = BurnedIn.REFUSE

    def __post_init__(self) -> None:
        if not PROJECT_NAME.fullmatch(self.project):
            raise ExportRefused("a project name is 1-63 characters: a-z, 0-9, -")


@dataclass(frozen=True)
class StowOutcome:
    """What the receiving server said: instances stored, instances it refused."""

    stored: int
    failed: int
    status_code: int


def _flag_of(meta: dict[str, Any] | None, sop_class_uid: str) -> bool:
    ds = Dataset()
    for tag in (_BURNED_IN_ANNOTATION, _MODALITY):
        element = (meta or {}).get(tag)
        if element is not None:
            ds.update(Dataset.from_json({tag: element}))
    ds.SOPClassUID = sop_class_uid
    return burned_in(ds)


class ExportPlan:
    """An allowed, audited export: write its instances de-identified (once)."""

    def __init__(
        self,
        reader: StudyReader,
        deidentifier: Deidentifier,
        flagged: dict[str, bool],
        request: ExportRequest,
    ) -> None:
        self._reader = reader
        self._deid = deidentifier
        self._flagged = flagged
        self.request = request
        self.sop_uids = [
            uid
            for uid, flag in flagged.items()
            if not (flag and request.burned_in is BurnedIn.EXCLUDE)
        ]

    @property
    def total(self) -> int:
        """Instances the export will send."""
        return len(self.sop_uids)

    @property
    def flagged(self) -> int:
        """Instances flagged for burned-in annotation (sent under ``flag``, else left out)."""
        return sum(self._flagged.values())

    def results(self, progress: Progress | None = None) -> Iterator[DeidResult]:
        """The de-identified instances, one at a time (decrypted, de-identified, dropped)."""
        for done, uid in enumerate(self.sop_uids, start=1):
            ds = pydicom.dcmread(io.BytesIO(self._reader.instance_bytes(uid)))
            result = self._deid.deidentify(ds)
            del ds
            yield result
            if progress is not None:
                progress(done, self.total)

    def write_zip(self, fileobj: IO[bytes], progress: Progress | None = None) -> dict[str, Any]:
        """A zip of Part-10 files and ``manifest.json`` (see
        :func:`~secretum.imaging.deid.write_zip`) into ``fileobj`` (may be unseekable)."""
        return write_zip(self.results(progress), fileobj)

    def stow(
        self,
        url: str,
        *,
        client: httpx.Client | None = None,
        progress: Progress | None = None,
    ) -> StowOutcome:
        """STOW-RS (PS3.18 §10.5) of the de-identified instances to ``url`` (the receiving
        server's ``.../studies`` endpoint), as one multipart/related request whose body is
        produced instance by instance."""
        boundary = "secretum-" + secrets.token_hex(16)
        own = client is None
        http = client or httpx.Client(timeout=httpx.Timeout(60.0))

        def body() -> Iterator[bytes]:
            for result in self.results(progress):
                buf = io.BytesIO()
                result.dataset.save_as(buf, enforce_file_format=True)
                yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                yield buf.getvalue()
                yield b"\r\n"
            yield f"--{boundary}--\r\n".encode()

        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        }
        try:
            response = http.post(url, content=body(), headers=headers)
        finally:
            if own:
                http.close()
        if response.status_code not in (200, 202, 409):
            raise StowFailed(f"the receiving server answered {response.status_code}")
        stored = failed = 0
        try:
            answer = json.loads(response.content) if response.content else {}
        except ValueError:
            answer = {}
        if isinstance(answer, dict):
            stored = len(answer.get(_REFERENCED_SOP_SEQUENCE, {}).get("Value", []))
            failed = len(answer.get(_FAILED_SOP_SEQUENCE, {}).get("Value", []))
        return StowOutcome(stored, failed, response.status_code)


class DeidentifiedExport:
    """The export use case (see the module docstring)."""

    def __init__(self, archive: ImagingArchive) -> None:
        self.archive = archive

    def project_key(self, project: str) -> bytes:
        if not PROJECT_NAME.fullmatch(project):
            raise ExportRefused("a project name is 1-63 characters: a-z, 0-9, -")
        return self.archive.keyring.secret(
            PROJECT_SECRET + project, generate=lambda: secrets.token_bytes(PROJECT_KEY_BYTES)
        )

    def prepare(self, ctx: RequestContext, study_uid: str, request: ExportRequest) -> ExportPlan:
        """Decide and audit the export of one study (one decision, one entry, refused or
        not); the :class:`ExportPlan` then writes it. Refused: AccessDenied (no care
        relationship, no consent for the purpose: research or care), StudyNotFound,
        ExportRefused (burned-in annotation under :attr:`BurnedIn.REFUSE`)."""
        attempt = Attempt(ctx, EventType.EXPORT, "operation", EventAction.READ)
        archive = self.archive

        def work(conn: Connection) -> tuple[StudyReader, dict[str, bool]]:
            study = archive.store.find_study(conn, study_uid)
            if study is None:
                raise StudyNotFound("no such study")
            resource = Resource(STUDY_KIND, study.patient_id, study.study_key, study.sensitivity)
            archive.door.authorize(conn, attempt, Action.EXPORT_DEIDENTIFIED, resource)
            rows = archive.store.instance_rows(conn, study, with_meta=True)
            flagged = {row.sop_uid: _flag_of(meta, row.sop_class_uid) for row, meta in rows}
            if request.burned_in is BurnedIn.REFUSE and any(flagged.values()):
                raise ExportRefused(
                    "some instances may show identifying text in their pixels (burned-in"
                    " annotation): exclude them, or flag them for review"
                )
            reader = StudyReader(archive.store, study.owner, [row for row, _ in rows])
            return reader, flagged

        key = self.project_key(request.project)
        reader, flagged = archive.door.read(attempt, work)
        return ExportPlan(reader, Deidentifier(key, request.options), flagged, request)
