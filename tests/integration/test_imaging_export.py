"""De-identified export end to end (SQLite and PostgreSQL), real policy: a zip of Part-10
files or a STOW-RS, per project (keyed UIDs link across exports), options chosen per export,
burned-in annotation refused / excluded / flagged, one decision and one audit entry."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imaging_archive_world import (  # noqa: F401 (iw is a fixture)
    NOW,
    RADIOLOGIST,
    READING,
    SENDER,
    STRANGER,
    TR,
    ImagingWorld,
    imaging_world,
)
from imaging_data import make_us
from imaging_export_world import StowReceiver, consent_research, ct_study, ingest, zip_datasets
from secretum.access.context import RequestContext
from secretum.access.errors import AccessDenied
from secretum.access.model import Purpose
from secretum.audit.model import EventType, Outcome
from secretum.imaging.deid import DeidOptions
from secretum.imaging.export import (
    BurnedIn,
    DeidentifiedExport,
    ExportRefused,
    ExportRequest,
)

RESEARCH = RequestContext(RADIOLOGIST, Purpose.RESEARCH, NOW)
ORTHANC = "/usr/sbin/Orthanc"


@pytest.fixture
def world(iw: ImagingWorld) -> ImagingWorld:
    iw.patient("pat-1")
    iw.register("pat-1", "SYN0001")
    return iw


def _zip(world: ImagingWorld, ctx: RequestContext, uid: str, request: ExportRequest) -> bytes:
    plan = DeidentifiedExport(world.archive).prepare(ctx, uid, request)
    out = io.BytesIO()
    plan.write_zip(out)
    return out.getvalue()


def test_zip_export_for_care_is_deidentified_linked_per_project_and_audited_once(
    world: ImagingWorld,
) -> None:
    slices = ct_study(world, 3)
    uid = str(slices[0].StudyInstanceUID)
    before = len(world.audit_rows(RADIOLOGIST.user_id))
    seen: list[tuple[int, int]] = []
    plan = DeidentifiedExport(world.archive).prepare(READING, uid, ExportRequest("second-opinion"))
    out = io.BytesIO()
    plan.write_zip(out, progress=lambda done, total: seen.append((done, total)))
    manifest, datasets = zip_datasets(out.getvalue())
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert manifest["instances"] == 3 and len(datasets) == 3
    for ds in datasets:
        assert ds.PatientIdentityRemoved == "YES"
        assert str(ds.PatientName) != "Martin^Sophie" and ds.PatientID != "SYN0001"
        assert str(ds.StudyInstanceUID).startswith("2.25.") and ds.StudyInstanceUID != uid
        assert "StudyDate" not in ds or ds.StudyDate != "20261129"
        assert ds.get((0x0009, 0x0010)) is None  # the private block is gone
    # one decision, one audit entry (Export), naming the patient
    rows = world.audit_rows(RADIOLOGIST.user_id)[before:]
    assert [(r["event_type"], r["outcome"], r["patient_id"]) for r in rows] == [
        (EventType.EXPORT.value, Outcome.SUCCESS.value, "pat-1")
    ]
    # the same project links (same new UIDs and pseudonym), another project does not
    _, again = zip_datasets(_zip(world, READING, uid, ExportRequest("second-opinion")))
    _, other = zip_datasets(_zip(world, READING, uid, ExportRequest("another-project")))
    assert {d.SOPInstanceUID for d in again} == {d.SOPInstanceUID for d in datasets}
    assert {d.PatientID for d in again} == {d.PatientID for d in datasets}
    assert not {d.SOPInstanceUID for d in other} & {d.SOPInstanceUID for d in datasets}
    assert {d.PatientID for d in other} != {d.PatientID for d in datasets}


def test_a_later_study_of_the_same_patient_links_in_the_project(world: ImagingWorld) -> None:
    first = ct_study(world, 1, study_date="20260101", accession="A1")
    second = ct_study(world, 1, study_date="20260301", accession="A2")
    request = ExportRequest("cohort-1", DeidOptions(retain_long_modified_dates=True))
    _, a = zip_datasets(_zip(world, READING, str(first[0].StudyInstanceUID), request))
    _, b = zip_datasets(_zip(world, READING, str(second[0].StudyInstanceUID), request))
    assert a[0].PatientID == b[0].PatientID
    # dates shifted by the same per-patient offset: the interval is kept
    from datetime import date

    def day(text: str) -> date:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))

    assert a[0].StudyDate != "20260101"
    assert (day(b[0].StudyDate) - day(a[0].StudyDate)).days == 59


def test_research_needs_the_research_consent(world: ImagingWorld) -> None:
    uid = str(ct_study(world, 1)[0].StudyInstanceUID)
    with pytest.raises(AccessDenied) as refused:
        DeidentifiedExport(world.archive).prepare(RESEARCH, uid, ExportRequest("cohort-1"))
    assert refused.value.reason == "deny.no-consent"
    last = world.audit_rows(RADIOLOGIST.user_id)[-1]
    assert (last["event_type"], last["outcome"]) == (EventType.EXPORT.value, 4)
    consent_research(world, "pat-1")
    manifest, _ = zip_datasets(_zip(world, RESEARCH, uid, ExportRequest("cohort-1")))
    assert manifest["instances"] == 1


def test_outsiders_and_purposes_without_consent_are_refused(world: ImagingWorld) -> None:
    uid = str(ct_study(world, 1)[0].StudyInstanceUID)
    export = DeidentifiedExport(world.archive)
    for ctx, reason in (
        (RequestContext(STRANGER, TR, NOW), "deny.not-in-care-team"),
        (RequestContext(RADIOLOGIST, Purpose.TELECONSULTATION, NOW), "deny.no-consent"),
        (RequestContext(RADIOLOGIST, Purpose.OPERATIONS, NOW), "deny.default"),
    ):
        with pytest.raises(AccessDenied) as refused:
            export.prepare(ctx, uid, ExportRequest("p"))
        assert refused.value.reason == reason


def test_burned_in_annotation_is_refused_excluded_or_flagged(world: ImagingWorld) -> None:
    slices = ct_study(world, 2)
    uid = str(slices[0].StudyInstanceUID)
    us = make_us(burned_in="YES")
    us.StudyInstanceUID = uid
    us.PatientID, us.IssuerOfPatientID = "SYN0001", "HOPITAL-NORD"
    ingest(world, [us])
    export = DeidentifiedExport(world.archive)
    with pytest.raises(ExportRefused):
        export.prepare(READING, uid, ExportRequest("p"))
    manifest, datasets = zip_datasets(
        _zip(world, READING, uid, ExportRequest("p", burned_in=BurnedIn.EXCLUDE))
    )
    assert manifest["instances"] == 2 and all(d.Modality == "CT" for d in datasets)
    manifest, datasets = zip_datasets(
        _zip(world, READING, uid, ExportRequest("p", burned_in=BurnedIn.FLAG))
    )
    assert manifest["instances"] == 3
    assert [f["burned_in_flag"] for f in manifest["files"]].count(True) == 1  # type: ignore[index,union-attr]


def test_a_bad_project_name_is_refused() -> None:
    with pytest.raises(ExportRefused):
        ExportRequest("Projet Martin")


def test_stow_rs_to_another_server(world: ImagingWorld) -> None:
    slices = ct_study(world, 3)
    uid = str(slices[0].StudyInstanceUID)
    plan = DeidentifiedExport(world.archive).prepare(READING, uid, ExportRequest("pacs-b"))
    with StowReceiver() as receiver:
        outcome = plan.stow(receiver.url)
    assert (outcome.stored, outcome.failed, outcome.status_code) == (3, 0, 200)
    assert receiver.content_types[0].startswith('multipart/related; type="application/dicom"')
    assert len(receiver.received) == 3
    for ds in receiver.received:
        assert ds.PatientIdentityRemoved == "YES" and ds.PatientID != "SYN0001"
        assert ds.StudyInstanceUID != uid


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[str]:
    """Orthanc from Debian with its DICOMweb plugin, on free ports (the receiving server)."""
    http_port, dicom_port = _free_port(), _free_port()
    config = {
        "Name": "deid-receiver",
        "StorageDirectory": str(tmp_path / "orthanc"),
        "IndexDirectory": str(tmp_path / "orthanc"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": ["/usr/share/orthanc/plugins"],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    path = tmp_path / "orthanc.json"
    path.write_text(json.dumps(config))
    process = subprocess.Popen(
        [ORTHANC, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(url + "/system", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("Orthanc did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_stow_rs_to_orthanc(world: ImagingWorld, orthanc: str) -> None:
    slices = ct_study(world, 2)
    uid = str(slices[0].StudyInstanceUID)
    plan = DeidentifiedExport(world.archive).prepare(READING, uid, ExportRequest("orthanc"))
    outcome = plan.stow(orthanc + "/dicom-web/studies")
    assert (outcome.stored, outcome.failed, outcome.status_code) == (2, 0, 200)
    instances = httpx.get(orthanc + "/instances?expand", timeout=10).json()
    assert len(instances) == 2
    for instance in instances:
        tags = httpx.get(f"{orthanc}/instances/{instance['ID']}/simplified-tags", timeout=10)
        found = tags.json()
        assert found["PatientIdentityRemoved"] == "YES"
        assert found.get("PatientName") != "Martin^Sophie" and found.get("PatientID") != "SYN0001"
        assert found["StudyInstanceUID"] != uid
