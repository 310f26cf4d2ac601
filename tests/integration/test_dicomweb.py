"""DICOMweb end to end through the real app (sessions, policy, audit), SQLite and PostgreSQL:
STOW-RS -> QIDO-RS (the keys OHIF sends) -> WADO-RS (instances, metadata, frames, bulk data),
one audit entry per study or series request, the same answer for unknown and forbidden."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sqlalchemy import select

from dicomweb_world import (
    PUBLIC,
    ct_files,
    dicomweb_world,
    multipart,
    split_multipart,
    stow_headers,
)
from secretum.audit.store import audit_entries
from web_world import WebWorld

Stored = tuple[WebWorld, str, str, list[bytes]]


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> WebWorld:
    return dicomweb_world(tmp_path, database_url=db_url)


def _stow(
    world: WebWorld, files: list[bytes], who: str = "gp", path: str = "/dicomweb/studies"
) -> Any:
    return world.client(who).post(path, content=multipart(files), headers=stow_headers())


def _audit(world: WebWorld, actor_id: str) -> list[dict[str, Any]]:
    with world.platform.engine.connect() as conn:
        query = select(audit_entries).where(audit_entries.c.actor_id == actor_id)
        return [dict(r) for r in conn.execute(query.order_by(audit_entries.c.seq)).mappings()]


@pytest.fixture
def stored(world: WebWorld) -> tuple[WebWorld, str, str, list[bytes]]:
    study, series, files = ct_files(3)
    response = _stow(world, files)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    body = response.json()
    assert body["00081190"]["Value"] == [f"{PUBLIC}/dicomweb/studies/{study}"]
    refs = body["00081199"]["Value"]
    assert len(refs) == 3 and "00081198" not in body
    sops = [pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID for f in files]
    assert [r["00081155"]["Value"][0] for r in refs] == sops
    assert refs[0]["00081190"]["Value"][0].endswith(f"/series/{series}/instances/{sops[0]}")
    return world, study, series, files


def test_stow_then_qido_studies_with_ohif_keys(
    stored: tuple[WebWorld, str, str, list[bytes]],
) -> None:
    world, study, _, _ = stored
    radio = world.client("radio")
    own = world.users["own"].user_id
    ohif = {
        "00100020": own,
        "PatientName": "*zeph*",
        "StudyDate": "20260101-20261231",
        "ModalitiesInStudy": "CT",
        "limit": "101",
        "offset": "0",
        "fuzzymatching": "false",
        "includefield": "00081030,00080060,00080090,00100030",
    }
    # the study's PatientName is make_ct's "Martin^Sophie": *zeph* does not match it
    assert radio.get("/dicomweb/studies", params=ohif).json() == []
    ohif["PatientName"] = "*martin*"
    [found] = radio.get("/dicomweb/studies", params=ohif).json()
    assert found["0020000D"]["Value"] == [study]
    assert found["00100010"]["Value"][0]["Alphabetic"] == "Martin^Sophie"
    assert found["00080061"]["Value"] == ["CT"] and found["00201208"]["Value"] == [3]
    fuzzy = {"PatientID": own, "PatientName": "soph mart", "fuzzymatching": "true"}
    assert len(radio.get("/dicomweb/studies", params=fuzzy).json()) == 1
    fuzzy["fuzzymatching"] = "false"
    assert radio.get("/dicomweb/studies", params=fuzzy).json() == []
    # date ranges, open ends, a list of UIDs, includefield=all, limit/offset
    for dates, n in (("20261129", 1), ("20261130-", 0), ("-20261129", 1), ("20200101-20201231", 0)):
        got = radio.get("/dicomweb/studies", params={"PatientID": own, "StudyDate": dates})
        assert len(got.json()) == n, dates
    uids = f"1.2.3\\{study}"
    got = radio.get("/dicomweb/studies", params={"StudyInstanceUID": uids, "includefield": "all"})
    assert [s["0020000D"]["Value"][0] for s in got.json()] == [study]
    assert radio.get("/dicomweb/studies", params={"PatientID": own, "offset": "1"}).json() == []
    assert radio.get("/dicomweb/studies", params={"NoSuchKeyword": "x"}).status_code == 400
    assert radio.get("/dicomweb/studies", params={"limit": "-1"}).status_code == 400


def test_qido_series_and_instances(stored: tuple[WebWorld, str, str, list[bytes]]) -> None:
    world, study, series, _ = stored
    radio = world.client("radio")
    [s] = radio.get(
        f"/dicomweb/studies/{study}/series", params={"includefield": "0008103E,00080021"}
    ).json()
    assert s["0020000E"]["Value"] == [series] and s["00201209"]["Value"] == [3]
    assert s["00080060"]["Value"] == ["CT"] and s["0020000D"]["Value"] == [study]
    assert radio.get(
        f"/dicomweb/studies/{study}/series", params={"SeriesInstanceUID": series}
    ).json()
    assert radio.get(f"/dicomweb/studies/{study}/series", params={"Modality": "MR"}).json() == []
    got = radio.get(
        f"/dicomweb/studies/{study}/series/{series}/instances",
        params={"limit": "1", "includefield": "00080018"},
    ).json()
    assert len(got) == 1 and got[0]["00200013"]["Value"] == [1]
    assert len(radio.get(f"/dicomweb/studies/{study}/instances").json()) == 3
    assert len(radio.get("/dicomweb/instances", params={"StudyInstanceUID": study}).json()) == 3
    assert len(radio.get("/dicomweb/series", params={"0020000D": study}).json()) == 1


def test_wado_instances_metadata_frames_bulk(
    stored: tuple[WebWorld, str, str, list[bytes]],
) -> None:
    world, study, series, files = stored
    radio = world.client("radio")
    radio_id = world.users["radio"].user_id
    before = len(_audit(world, radio_id))
    accept = {"accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    got = radio.get(f"/dicomweb/studies/{study}", headers=accept)
    assert got.status_code == 200
    parts = split_multipart(got.headers["content-type"], got.content)
    assert sorted(d for _, d in parts) == sorted(files)  # byte for byte, as stored
    assert all(t.startswith("application/dicom") for t, _ in parts)
    assert len(_audit(world, radio_id)) == before + 1  # one entry for the whole study
    sop = pydicom.dcmread(io.BytesIO(files[1])).SOPInstanceUID
    one = radio.get(f"/dicomweb/studies/{study}/series/{series}/instances/{sop}")
    assert [d for _, d in split_multipart(one.headers["content-type"], one.content)] == [files[1]]

    meta = radio.get(f"/dicomweb/studies/{study}/series/{series}/metadata")
    assert meta.status_code == 200 and meta.headers["content-type"] == "application/dicom+json"
    assert len(meta.json()) == 3
    first = next(m for m in meta.json() if m["00080018"]["Value"] == [sop])
    uri = first["7FE00010"]["BulkDataURI"]
    assert uri == f"{PUBLIC}/dicomweb/studies/{study}/series/{series}/instances/{sop}/bulk/7FE00010"
    for tag in ("00280010", "00280011", "00280100", "00280030", "00200032", "00281052"):
        assert tag in first, tag
    assert len(radio.get(f"/dicomweb/studies/{study}/metadata").json()) == 3
    [inst] = radio.get(f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/metadata").json()
    assert inst["00080018"]["Value"] == [sop]

    pixels = pydicom.dcmread(io.BytesIO(files[1])).PixelData
    frames_accept = {
        "accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    }
    before = len(_audit(world, radio_id))
    frame = radio.get(
        f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/1", headers=frames_accept
    )
    assert frame.status_code == 200
    [(ctype, data)] = split_multipart(frame.headers["content-type"], frame.content)
    assert data == pixels and "transfer-syntax=1.2.840.10008.1.2.1" in ctype
    assert len(_audit(world, radio_id)) == before + 1  # a frames request = one opening
    plain = radio.get(
        f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/1",
        headers={"accept": "application/octet-stream"},
    )
    assert plain.content == pixels
    bulk = radio.get(uri.removeprefix(PUBLIC), headers=frames_accept)
    assert split_multipart(bulk.headers["content-type"], bulk.content)[0][1] == pixels
    missing = radio.get(f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/2")
    assert missing.status_code == 404


def test_unknown_and_forbidden_get_the_same_answer(
    stored: tuple[WebWorld, str, str, list[bytes]],
) -> None:
    world, study, series, _ = stored
    # "nocare"'s doctor is radio, not gp; the patient "other" is someone else entirely
    paths = ["", "/metadata", f"/series/{series}/metadata", "/series"]
    for who in ("other", "nocare"):
        client = world.client(who)
        for path in paths:
            forbidden = client.get(f"/dicomweb/studies/{study}{path}")
            unknown = client.get(f"/dicomweb/studies/1.2.826.0.1.999{path}")
            assert forbidden.status_code == unknown.status_code, (who, path)
            assert forbidden.content == unknown.content, (who, path)
            assert forbidden.status_code in (200, 404)
        got = client.get("/dicomweb/studies", params={"StudyInstanceUID": study})
        assert got.json() == []
    # the owner (patient) reads their own study
    own = world.client("own")
    assert [s["0020000D"]["Value"][0] for s in own.get("/dicomweb/studies").json()] == [study]


def test_refusals_are_audited(stored: tuple[WebWorld, str, str, list[bytes]]) -> None:
    world, study, _, _ = stored
    other = world.users["other"].user_id
    before = len(_audit(world, other))
    assert world.client("other").get(f"/dicomweb/studies/{study}/metadata").status_code == 404
    rows = _audit(world, other)[before:]
    assert len(rows) == 1 and rows[0]["outcome"] != 0


def test_without_a_session_401_and_a_patient_cannot_stow(world: WebWorld) -> None:
    _, _, files = ct_files(1)
    anonymous = world.client()
    assert anonymous.get("/dicomweb/studies").status_code == 401
    assert (
        anonymous.post(
            "/dicomweb/studies", content=multipart(files), headers=stow_headers()
        ).status_code
        == 401
    )
    assert _stow(world, files, who="own").status_code == 403
    # a session without its CSRF token cannot STOW
    client = world.client("gp")
    del client.headers["x-csrf-token"]
    assert (
        client.post(
            "/dicomweb/studies", content=multipart(files), headers=stow_headers()
        ).status_code
        == 403
    )
    assert world.client("radio").get("/dicomweb/studies").json() == []


def test_stow_into_a_named_study(world: WebWorld) -> None:
    study, _, files = ct_files(2)
    _, _, others = ct_files(1)
    response = _stow(world, [files[0], others[0], files[1]], path=f"/dicomweb/studies/{study}")
    assert response.status_code == 202
    body = response.json()
    assert len(body["00081199"]["Value"]) == 2
    [failed] = body["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xA900]
    # the instance of the other study was not stored
    radio = world.client("radio")
    assert len(radio.get(f"/dicomweb/studies/{study}/instances").json()) == 2
    payload = json.dumps(body)
    assert "Martin" not in payload


def test_without_consent_nobody_reads_what_was_sent(world: WebWorld) -> None:
    """``noconsent`` gave no teleradiology consent: gp's study of them waits for reconciliation
    (under a holding key), and gp, who sent it, reads nothing: the same as an unknown study."""
    noconsent = world.users["noconsent"].user_id
    archive = world.services.imaging
    with world.platform.engine.begin() as conn:  # set-up: nobody may write their record now
        archive.store.register_identifier(conn, noconsent, "HOPITAL-NORD", "NOC-1", world.clock.now)
    study, series, files = ct_files(1, patient_id="NOC-1")
    assert _stow(world, files).status_code == 200
    client = world.client("gp")
    for path in ("", "/metadata", f"/series/{series}/metadata", "/series"):
        got = client.get(f"/dicomweb/studies/{study}{path}")
        unknown = client.get(f"/dicomweb/studies/1.2.826.0.1.999{path}")
        assert (got.status_code, got.content) == (unknown.status_code, unknown.content), path
    assert client.get("/dicomweb/studies", params={"PatientID": noconsent}).json() == []
    assert client.get("/dicomweb/studies", params={"StudyInstanceUID": study}).json() == []


def test_large_instances_stream_in_chunks(
    stored: tuple[WebWorld, str, str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past READ_AHEAD_MAX an instance is not decrypted ahead but streamed chunk by chunk."""
    from secretum.web.routes import dicomweb

    world, study, _, files = stored
    monkeypatch.setattr(dicomweb, "READ_AHEAD_MAX", 1000)
    monkeypatch.setattr(dicomweb, "CHUNK", 4096)
    got = world.client("radio").get(f"/dicomweb/studies/{study}")
    assert sorted(
        d for _, d in split_multipart(got.headers["content-type"], got.content)
    ) == sorted(files)


def test_qido_by_dicom_patient_id_and_issuer(
    stored: tuple[WebWorld, str, str, list[bytes]],
) -> None:
    world, study, _, _ = stored
    radio = world.client("radio")
    params = {"PatientID": "SYN0001", "IssuerOfPatientID": "HOPITAL-NORD"}
    assert [
        s["0020000D"]["Value"][0] for s in radio.get("/dicomweb/studies", params=params).json()
    ] == [study]
    params["IssuerOfPatientID"] = "ELSEWHERE"
    assert radio.get("/dicomweb/studies", params=params).json() == []
    # someone outside the care team: nothing, as for an unknown identifier
    params["IssuerOfPatientID"] = "HOPITAL-NORD"
    assert world.client("other").get("/dicomweb/studies", params=params).json() == []
