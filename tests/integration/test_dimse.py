"""DIMSE over TLS 1.3 with a pynetdicom SCU (SQLite and PostgreSQL): C-ECHO, C-STORE into the
encrypted archive, C-FIND at the three levels, C-GET, C-MOVE to a registered node; bad input
gets its failure status and stores nothing."""

from __future__ import annotations

import threading
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from dimse_world import DimseWorld, dimse_world, get_scu, scu  # noqa: F401 (fixture)
from imaging_archive_world import ImagingWorld, imaging_world  # noqa: F401 (fixture)
from imaging_data import make_ct, to_bytes
from secretum.imaging.dimse import server_ssl_context

FIND = StudyRootQueryRetrieveInformationModelFind


def _store(dw: DimseWorld, slices: list[Dataset], ae: str = "MODALITY") -> list[int]:
    assoc = scu(dw, ae)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in slices]
    finally:
        assoc.release()


def _find(dw: DimseWorld, query: Dataset, ae: str = "PACS") -> tuple[list[int], list[Dataset]]:
    assoc = scu(dw, ae)
    assert assoc.is_established
    statuses, answers = [], []
    try:
        for status, identifier in assoc.send_c_find(query, FIND):
            statuses.append(int(status.Status))
            if identifier is not None and int(status.Status) in (0xFF00, 0xFF01):
                answers.append(identifier)
    finally:
        assoc.release()
    return statuses, answers


def _study_query(**values: Any) -> Dataset:
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = ""
    q.PatientID = ""
    q.StudyDate = ""
    q.AccessionNumber = ""
    q.ModalitiesInStudy = ""
    q.NumberOfStudyRelatedInstances = ""
    q.StudyDescription = ""
    for k, v in values.items():
        setattr(q, k, v)
    return q


def test_echo_store_find_get(dw: DimseWorld) -> None:
    assoc = scu(dw, "PACS")
    assert assoc.is_established
    assert int(assoc.send_c_echo().Status) == 0
    assoc.release()
    slices = make_ct(3)
    assert _store(dw, slices) == [0, 0, 0]
    assert dw.iw.count("imaging_instances") == 3
    study = str(slices[0].StudyInstanceUID)
    series = str(slices[0].SeriesInstanceUID)
    # STUDY level, by the patient's DICOM id and issuer
    statuses, answers = _find(
        dw, _study_query(PatientID="SYN0001", IssuerOfPatientID="HOPITAL-NORD")
    )
    assert statuses[-1] == 0 and len(answers) == 1
    [a] = answers
    assert a.StudyInstanceUID == study and a.AccessionNumber == "ACC1"
    assert int(a.NumberOfStudyRelatedInstances) == 3 and a.StudyDescription == "CT THORAX Martin"
    # by study, with a date range that excludes it, then includes it
    assert _find(dw, _study_query(StudyInstanceUID=study, StudyDate="20270101-"))[1] == []
    assert len(_find(dw, _study_query(StudyInstanceUID=study, StudyDate="20260101-"))[1]) == 1
    # SERIES and IMAGE levels
    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = study
    q.SeriesInstanceUID = ""
    q.Modality = ""
    q.NumberOfSeriesRelatedInstances = ""
    [s] = _find(dw, q)[1]
    assert s.SeriesInstanceUID == series and s.Modality == "CT"
    assert int(s.NumberOfSeriesRelatedInstances) == 3
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = study
    q.SeriesInstanceUID = series
    q.SOPInstanceUID = ""
    q.InstanceNumber = ""
    images = _find(dw, q)[1]
    assert [int(i.InstanceNumber) for i in images] == [1, 2, 3]
    assert {i.SOPInstanceUID for i in images} == {str(d.SOPInstanceUID) for d in slices}
    # C-GET the study: the same instances come back, decrypted, byte-identical pixels
    received: list[Dataset] = []
    assoc = get_scu(dw, "PACS", received)
    assert assoc.is_established
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = study
    statuses = [int(s.Status) for s, _ in assoc.send_c_get(q, dw_get_model())]
    assoc.release()
    assert statuses[-1] == 0
    by_uid = {str(d.SOPInstanceUID): d for d in slices}
    assert len(received) == 3
    for ds in received:
        assert ds.PixelData == by_uid[str(ds.SOPInstanceUID)].PixelData
    # the audit: one entry per request, naming the node and the patient
    rows = dw.iw.audit_rows(dw.nodes["PACS"].node_id)
    assert rows and {r["patient_id"] for r in rows} == {"pat-1"}
    stored = dw.iw.audit_rows(dw.nodes["MODALITY"].node_id)
    assert [r["event_type"] for r in stored] == ["110104"] * 3


def dw_get_model() -> str:
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StudyRootQueryRetrieveInformationModelGet,
    )

    return str(StudyRootQueryRetrieveInformationModelGet)


def test_move_to_a_registered_node(dw: DimseWorld) -> None:
    """C-MOVE: the destination is a registered node (TLS 1.3, our certificate), itself
    referred to the patient; an unknown destination is 0xA801."""
    received: list[Dataset] = []
    base = dw.base
    dest_key, dest_cert = base / "dest.key", base / "dest.pem"
    from imaging_archive_world import NOW
    from secretum.pki import (
        generate_leaf_key,
        issue_server_certificate,
        write_certificates_pem,
        write_private_key_pem,
    )

    key = generate_leaf_key()
    cert = issue_server_certificate(dw.ca, ["localhost", "127.0.0.1"], key.public_key(), NOW)
    write_private_key_pem(dest_key, key)
    write_certificates_pem(dest_cert, [cert, dw.ca.certificate])
    ae = AE(ae_title="VIEWER")
    ae.add_supported_context(CTImageStorage)

    def on_store(event: Any) -> int:
        received.append(event.dataset)
        return 0

    ctx = server_ssl_context(dest_cert, dest_key, dw.cafile)
    dest_server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=ctx,
                                  evt_handlers=[(evt.EVT_C_STORE, on_store)])  # fmt: skip
    try:
        port = dest_server.server_address[1]
        viewer = dw.add_node("VIEWER", "retrieve", host="127.0.0.1", port=port)
        slices = make_ct(2)
        assert _store(dw, slices) == [0, 0]
        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        q.StudyInstanceUID = str(slices[0].StudyInstanceUID)
        model = StudyRootQueryRetrieveInformationModelMove
        # the viewer is not referred to the patient: it may not receive the study
        assoc = scu(dw, "PACS")
        statuses = [int(s.Status) for s, _ in assoc.send_c_move(q, "VIEWER", model)]
        assert statuses[-1] == 0x0124 and received == []
        dw.refer("pat-1", viewer)
        statuses = [int(s.Status) for s, _ in assoc.send_c_move(q, "VIEWER", model)]
        assert statuses[-1] == 0 and len(received) == 2
        statuses = [int(s.Status) for s, _ in assoc.send_c_move(q, "NOBODY", model)]
        assert statuses[-1] == 0xA801
        assoc.release()
    finally:
        dest_server.shutdown()


def test_bad_input_gets_failure_statuses(dw: DimseWorld) -> None:
    [good] = make_ct(1)
    assert _store(dw, [good]) == [0]
    # the same instance again: success, nothing more stored; other content: 0x0111
    assert _store(dw, [good]) == [0]
    changed = make_ct(1, study_uid=str(good.StudyInstanceUID))[0]
    changed.SOPInstanceUID = good.SOPInstanceUID
    changed.SeriesInstanceUID = good.SeriesInstanceUID
    changed.PixelData = bytes(len(changed.PixelData))
    assert _store(dw, [changed]) == [0x0111]
    # missing UIDs
    [no_series] = make_ct(1)
    del no_series.SeriesInstanceUID
    assert _store(dw, [no_series]) == [0xA900]
    # oversize
    dw.iw.archive.max_instance_bytes = 512
    [big] = make_ct(1)
    assert _store(dw, [big]) == [0xA700]
    dw.iw.archive.max_instance_bytes = 512 * 1024 * 1024
    # a malformed data set (a value that cannot be decoded)
    [bad] = make_ct(1)
    raw = to_bytes(bad)
    number = b"\x20\x00\x13\x00IS\x02\x001 "
    assert raw.count(number) == 1
    path = dw.base / "bad.dcm"
    path.write_bytes(raw.replace(number, b"\x20\x00\x13\x00IS\x02\x00x!"))
    assoc = scu(dw, "MODALITY")
    # the archive's validation lets pydicom's lenient IS through; its JSON encoding then fails
    assert int(assoc.send_c_store(path).Status) in (0xC000, 0x0110)
    assoc.release()
    assert dw.iw.count("imaging_instances") == 1
    assert len(dw.iw.blobs()) == 1
    # an unsupported SOP class: its presentation context is rejected
    from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore

    assoc = scu(dw, "MODALITY", contexts=[ModalityWorklistInformationFind, CTImageStorage])
    assert assoc.is_established
    assert [cx.abstract_syntax for cx in assoc.accepted_contexts] == [CTImageStorage]
    assoc.release()
    # and the server is still up
    assoc = scu(dw, "PACS")
    assert int(assoc.send_c_echo().Status) == 0
    assoc.release()


def test_concurrent_associations(dw: DimseWorld) -> None:
    errors: list[Exception] = []

    def worker() -> None:
        try:
            assert _store(dw, make_ct(2)) == [0, 0]
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert dw.iw.count("imaging_instances") == 6


def test_read_back_is_a_valid_part10(dw: DimseWorld) -> None:
    [ds] = make_ct(1)
    assert _store(dw, [ds]) == [0]
    reader = dw.iw.archive.open_study(
        __import__("imaging_archive_world").READING, str(ds.StudyInstanceUID)
    )
    data = reader.instance_bytes(str(ds.SOPInstanceUID))
    back = pydicom.dcmread(__import__("io").BytesIO(data))
    assert back.SOPInstanceUID == ds.SOPInstanceUID and back.PixelData == ds.PixelData


@pytest.fixture(autouse=True)
def _quiet() -> None:
    import logging

    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
