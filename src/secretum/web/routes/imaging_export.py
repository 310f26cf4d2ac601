"""De-identified export of a study (``/imaging/export/{study_uid}``): a practitioner chooses
the project, the PS3.15 options, what to do with burned-in annotation and the purpose (care,
or research with the patient's research consent), then downloads a zip of Part-10 files.

The export is decided and audited once (:class:`~secretum.imaging.export.DeidentifiedExport`)
before the first byte is sent; the zip is then produced instance by instance while it streams
(memory: one instance), its size unknown in advance: the page says how many instances it holds
(``X-Export-Instances``) and the browser's download shows the progress.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Annotated, cast

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from secretum.access.model import Purpose
from secretum.imaging.deid import DeidOptions
from secretum.imaging.export import BurnedIn, ExportPlan, ExportRequest
from secretum.services import Services
from secretum.web import care_pages as pages
from secretum.web import deps
from secretum.web.routes.practice import PractitionerCaller
from secretum.web.templating import render

router = APIRouter(prefix="/imaging", route_class=pages.CarePageRoute, include_in_schema=False)

Svc = Annotated[Services, Depends(deps.services_dep)]
Now = Annotated[datetime, Depends(deps.now_dep)]
Flag = Annotated[str, Form(max_length=8)]
#: The purposes an export may be made for (care purposes need their consent, research its own).
EXPORT_PURPOSES = (Purpose.TELERADIOLOGY, Purpose.RESEARCH)
PAGE = "/imaging/export/{study_uid}"


@router.get(
    "/export/{study_uid}", response_class=HTMLResponse, **pages.back_to("/radiology/worklist")
)
def export_form(study_uid: str, caller: PractitionerCaller, request: Request) -> HTMLResponse:
    """The export form (nothing is read before the export is asked for)."""
    return render(
        request,
        "imaging_export.html",
        study_uid=study_uid,
        purposes=EXPORT_PURPOSES,
        burned_in=list(BurnedIn),
        **pages.ctx(request),
    )


class _QueueWriter(io.RawIOBase):
    """A write-only, unseekable stream whose chunks go to a bounded queue."""

    def __init__(self, chunks: queue.Queue[bytes | BaseException | None]) -> None:
        self._chunks = chunks

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._chunks.put(bytes(data))
        return len(data)


def _zip_stream(plan: ExportPlan) -> Iterator[bytes]:
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)

    def produce() -> None:
        try:
            plan.write_zip(cast(IO[bytes], _QueueWriter(chunks)))
        except BaseException as exc:  # handed to the response, which stops
            chunks.put(exc)
        finally:
            chunks.put(None)

    threading.Thread(target=produce, name="deid-export", daemon=True).start()
    while (item := chunks.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item


@router.post("/export/{study_uid}", **pages.back_to(PAGE))
def export_zip(
    study_uid: str,
    caller: PractitionerCaller,
    svc: Svc,
    now: Now,
    project: Annotated[str, Form(max_length=63)] = "",
    purpose: Annotated[str, Form(max_length=32)] = "",
    burned_in: Annotated[str, Form(max_length=16)] = BurnedIn.REFUSE.value,
    retain_dates: Flag = "",
    clean_descriptors: Flag = "",
    retain_patient_chars: Flag = "",
    retain_device: Flag = "",
) -> StreamingResponse:
    """Decide and audit the export, then stream the zip."""
    if purpose not in {p.value for p in EXPORT_PURPOSES}:
        raise pages.PageError(400, "error.purpose")
    if burned_in not in {b.value for b in BurnedIn}:
        raise pages.PageError(400, "error.invalid")
    options = DeidOptions(
        retain_long_modified_dates=bool(retain_dates),
        clean_descriptors=bool(clean_descriptors),
        retain_patient_chars=bool(retain_patient_chars),
        retain_device_identity=bool(retain_device),
    )
    request = ExportRequest(project.strip(), options, BurnedIn(burned_in))
    plan = svc.imaging_export.prepare(caller.context(Purpose(purpose), now), study_uid, request)
    return StreamingResponse(
        _zip_stream(plan),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="deid-{request.project}.zip"',
            "X-Export-Instances": str(plan.total),
            "Cache-Control": "no-store",
        },
    )
