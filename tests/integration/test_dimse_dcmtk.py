"""DIMSE over TLS 1.3 with dcmtk as the real client (echoscu, storescu, findscu with
``+tls key cert +cf ca``; dcmtk 3.6.7's getscu and movescu have no TLS options, so C-GET and
C-MOVE are tested with pynetdicom in test_dimse.py), against the server in this process
(SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom

from dimse_world import AE_TITLE, DimseWorld, dimse_world  # noqa: F401 (fixture)
from imaging_archive_world import NOW, ImagingWorld, imaging_world  # noqa: F401 (fixture)
from imaging_data import make_ct, to_bytes


def _dcmtk(
    dw: DimseWorld, tool: str, ae: str, *args: str, inputs: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    files = dw.files[ae]
    tls = ["+tls", str(files.key), str(files.cert), "+cf", str(dw.cafile)]
    peer = ["127.0.0.1", str(dw.port)]
    command = [tool, "-aet", ae, "-aec", AE_TITLE, *tls, *args, *peer, *(inputs or [])]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _write(dir_: Path, n: int = 3) -> tuple[list[pydicom.Dataset], list[str]]:
    dir_.mkdir(parents=True, exist_ok=True)
    slices = make_ct(n)
    paths = []
    for i, ds in enumerate(slices):
        path = dir_ / f"ct{i}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(str(path))
    return slices, paths


def test_dcmtk_echo_store_find(dw: DimseWorld, tmp_path: Path) -> None:
    echo = _dcmtk(dw, "echoscu", "PACS")
    assert echo.returncode == 0, echo.stderr
    slices, paths = _write(tmp_path / "in")
    store = _dcmtk(dw, "storescu", "MODALITY", inputs=paths)
    assert store.returncode == 0, store.stderr
    assert dw.iw.count("imaging_instances") == 3
    study = str(slices[0].StudyInstanceUID)
    # C-FIND (study root), answers extracted to files
    out = tmp_path / "find"
    out.mkdir()
    find = _dcmtk(dw, "findscu", "PACS", "-S", "-X", "-od", str(out),
                  "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=SYN0001",
                  "-k", "IssuerOfPatientID=HOPITAL-NORD", "-k", "StudyInstanceUID",
                  "-k", "NumberOfStudyRelatedInstances")  # fmt: skip
    assert find.returncode == 0, find.stderr
    [answer] = [pydicom.dcmread(p) for p in sorted(out.iterdir())]
    assert answer.StudyInstanceUID == study and int(answer.NumberOfStudyRelatedInstances) == 3
    # (C-GET, C-MOVE: dcmtk 3.6.7's getscu and movescu have no TLS options; pynetdicom's SCU
    # covers them in test_dimse.py)


def test_dcmtk_refusals(dw: DimseWorld, tmp_path: Path) -> None:
    """Without TLS, with another node's certificate, with an unknown AE title, without a
    scope: refused; the server stays up."""
    files = dw.files["PACS"]
    plain = subprocess.run(["echoscu", "-aet", "PACS", "-aec", AE_TITLE, "-to", "5",
                            "127.0.0.1", str(dw.port)],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert plain.returncode != 0
    dw.files["STRANGER"] = files  # PACS's certificate, another AE title
    assert _dcmtk(dw, "echoscu", "STRANGER").returncode != 0
    dw.files["MODALITY"], modality = files, dw.files["MODALITY"]  # AE of one, cert of another
    assert _dcmtk(dw, "echoscu", "MODALITY").returncode != 0
    dw.files["MODALITY"] = modality
    _, paths = _write(tmp_path / "in", 1)
    refused = _dcmtk(dw, "storescu", "NOSCOPE", inputs=paths)
    assert refused.returncode != 0
    assert dw.iw.count("imaging_instances") == 0
    assert _dcmtk(dw, "echoscu", "PACS").returncode == 0
