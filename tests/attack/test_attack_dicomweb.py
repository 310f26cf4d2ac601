"""Hostile STOW-RS bodies and probes (issue 10, section 4, over HTTP).

Malformed and truncated Part-10 parts, an unsupported SOP class, missing UIDs, a body cut
short, a wrong boundary, an oversize instance, a SOP Instance UID resent with other content:
each gets a clear DICOMweb failure (Failure Reason per instance, or 400/415 for the body),
nothing is half stored (an instance is indexed with its blob, or not at all), and the server
keeps answering. The multipart reader is fuzzed with hypothesis.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomweb_world import ct_files, dicomweb_world, multipart, stow_headers
from imaging_data import make_ct, to_bytes
from secretum.web.multipart_related import MalformedBody, RelatedReader
from web_world import WebWorld


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebWorld]:
    yield dicomweb_world(tmp_path_factory.mktemp("dicomweb"), max_instance_mib=1)


def _count(world: WebWorld) -> tuple[int, int]:
    """(instance rows, imaging blobs on disk)."""
    from sqlalchemy import func, select

    from secretum.imaging.tables import imaging_instances

    with world.platform.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(imaging_instances)).scalar_one()
    blob_dir = world.platform.settings.blob_area_dir("imaging")
    blobs = sum(1 for p in Path(blob_dir).rglob("*") if p.is_file())
    return int(rows), blobs


def _post(
    world: WebWorld, body: bytes, headers: dict[str, str] | None = None, who: str = "gp"
) -> Any:
    return world.client(who).post(
        "/dicomweb/studies", content=body, headers=headers or stow_headers()
    )


def _reasons(body: dict[str, Any]) -> list[int]:
    return [item["00081197"]["Value"][0] for item in body.get("00081198", {}).get("Value", [])]


def _with(ds: pydicom.Dataset, **changes: Any) -> bytes:
    for name, value in changes.items():
        if value is None:
            del ds[name]
        else:
            setattr(ds, name, value)
    return to_bytes(ds)


def test_each_bad_part_fails_alone_and_nothing_half_stored(world: WebWorld) -> None:
    good = make_ct(4)
    before = _count(world)
    whole = to_bytes(good[0])
    unsupported = _with(good[1], SOPClassUID="1.2.840.10008.1.1")  # Verification: no storage
    unsupported_meta = pydicom.dcmread(io.BytesIO(unsupported))
    unsupported_meta.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.1"
    unsupported = to_bytes(unsupported_meta)
    missing = to_bytes(good[2])
    ds = pydicom.dcmread(io.BytesIO(missing))
    del ds.SeriesInstanceUID
    missing = to_bytes(ds)
    parts = [
        whole,
        b"this is not DICOM at all",
        to_bytes(good[3])[: len(whole) // 2],  # a Part-10 file cut in its pixel data
        unsupported,
        missing,
        b"\x00" * 128 + b"DICM" + b"\xff" * 64,  # a preamble and garbage
    ]
    response = _post(world, multipart(parts))
    assert response.status_code == 202, response.text
    body = response.json()
    assert len(body["00081199"]["Value"]) == 1
    reasons = _reasons(body)
    assert len(reasons) == 5
    assert reasons[0] == 0xC000 and reasons[1] == 0xC000 and reasons[2] == 0x0122
    assert reasons[3] == 0xA900 and reasons[4] == 0xC000
    rows, blobs = _count(world)
    assert (rows - before[0], blobs - before[1]) == (1, 1)  # the good one: row and blob


def test_a_resend_with_other_content_is_a_conflict(world: WebWorld) -> None:
    [ds] = make_ct(1)
    first = to_bytes(ds)
    assert _post(world, multipart([first])).status_code == 200
    before = _count(world)
    again = _post(world, multipart([first]))  # same content: idempotent success
    assert again.status_code == 200 and "00081198" not in again.json()
    ds.PatientName = "Other^Content"
    conflict = _post(world, multipart([to_bytes(ds)]))
    assert conflict.status_code == 409
    assert _reasons(conflict.json()) == [0x0111]
    assert _count(world) == before
    # the stored instance is still the first one
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    got = world.client("radio").get(f"/dicomweb/studies/{study}/series/{series}/instances/{sop}")
    assert first in got.content


def test_a_body_cut_short(world: WebWorld) -> None:
    _, _, files = ct_files(2)
    whole = multipart(files)
    before = _count(world)
    # cut inside the second part: the first is whole (stored), the second fails
    cut = whole[: len(whole) - len(files[1]) // 2]
    response = _post(world, cut)
    assert response.status_code == 202
    assert _reasons(response.json()) == [0xC000]
    assert _count(world)[0] == before[0] + 1
    # cut inside the first part: nothing whole, nothing stored, 400
    response = _post(world, whole[: len(files[0]) // 2])
    assert response.status_code == 400
    assert _count(world)[0] == before[0] + 1


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ('multipart/related; type="application/dicom"; boundary=not-the-one', 400),
        ('multipart/related; type="application/dicom"', 400),
        ('multipart/related; type="application/dicom"; boundary="a\x01b"', 400),
        ('multipart/related; type="application/dicom+json"; boundary=b0und4ry', 415),
        ("application/dicom", 415),
        ("", 415),
    ],
)
def test_wrong_boundary_or_media_type(world: WebWorld, content_type: str, status: int) -> None:
    _, _, files = ct_files(1)
    before = _count(world)
    headers = {"content-type": content_type, "accept": "application/dicom+json"}
    assert _post(world, multipart(files), headers).status_code == status
    assert _count(world) == before


def test_an_oversize_instance_fails_without_being_buffered(world: WebWorld) -> None:
    [big] = make_ct(1)
    big.PixelData = b"\x01\x00" * (700 * 1024)  # 1.4 MiB > SECRETUM_MAX_INSTANCE_MIB=1
    big.Rows, big.Columns = 700, 1024
    _, _, small = ct_files(1)
    before = _count(world)
    response = _post(world, multipart([to_bytes(big), small[0]]))
    assert response.status_code == 202
    assert _reasons(response.json()) == [0xA700]
    assert _count(world)[0] == before[0] + 1


def test_a_part_of_another_type_fails(world: WebWorld) -> None:
    _, _, files = ct_files(1)
    body = multipart([b'{"not": "dicom"}'], part_type="application/json")
    response = _post(world, body)
    assert response.status_code == 409 and _reasons(response.json()) == [0xC000]
    assert _post(world, multipart(files)).status_code == 200


def test_a_patient_cannot_stow_even_their_own_images(world: WebWorld) -> None:
    _, _, files = ct_files(1)
    before = _count(world)
    assert _post(world, multipart(files), who="own").status_code == 403
    assert _count(world) == before


# -- fuzzing ---------------------------------------------------------------------------------

_BOUNDARY = "fuzzb0undary"
_parts = st.lists(st.binary(max_size=300), min_size=1, max_size=4)


def _feed_all(body: bytes, cuts: list[int], limit: int = 10_000) -> list[bytes]:
    reader = RelatedReader(_BOUNDARY, max_part_bytes=limit)
    out: list[bytes] = []
    last = 0
    for cut in [*sorted({c % (len(body) + 1) for c in cuts}), len(body)]:
        out += [p.data for p in reader.feed(body[last:cut])]
        last = cut
    reader.close()
    return out


@settings(max_examples=300, deadline=None)
@given(parts=_parts, cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_fuzz_any_chunking_gives_the_same_parts(parts: list[bytes], cuts: list[int]) -> None:
    parts = [p for p in parts if f"--{_BOUNDARY}".encode() not in b"\r\n" + p + b"\r\n"]
    if not parts:
        return
    body = multipart(parts, _BOUNDARY)
    assert _feed_all(body, cuts) == parts


@settings(max_examples=500, deadline=None)
@given(
    parts=_parts,
    position=st.integers(min_value=0),
    noise=st.binary(min_size=1, max_size=16),
    mode=st.sampled_from(["insert", "overwrite", "truncate"]),
    cuts=st.lists(st.integers(min_value=0), max_size=4),
)
def test_fuzz_a_damaged_body_only_raises_malformed(
    parts: list[bytes], position: int, noise: bytes, mode: str, cuts: list[int]
) -> None:
    body = multipart(parts, _BOUNDARY)
    at = position % (len(body) + 1)
    if mode == "insert":
        body = body[:at] + noise + body[at:]
    elif mode == "overwrite":
        body = body[:at] + noise + body[at + len(noise) :]
    else:
        body = body[:at]
    try:
        got = _feed_all(body, cuts, limit=64)
    except MalformedBody:
        return
    for part in got:
        assert len(part) <= 64  # a part past the limit comes back empty (too_large)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(position=st.integers(min_value=0), noise=st.binary(min_size=1, max_size=32))
def test_fuzz_the_endpoint_never_fails_the_server(
    world: WebWorld, position: int, noise: bytes
) -> None:
    [ds] = make_ct(1)
    data = to_bytes(ds)
    at = position % len(data)
    damaged = data[:at] + noise + data[at + len(noise) :]
    before = _count(world)
    response = _post(world, multipart([damaged]))
    assert response.status_code in (200, 202, 409, 400), response.text
    stored = response.status_code == 200
    rows, blobs = _count(world)
    assert rows - before[0] == blobs - before[1] == (1 if stored else 0)
    assert world.client().get("/healthz").status_code == 200


def test_the_reader_drops_a_part_past_its_limit_as_it_arrives() -> None:
    reader = RelatedReader(_BOUNDARY, max_part_bytes=1000)
    body = multipart([b"x" * 5000, b"small"], _BOUNDARY)
    held = []
    parts = []
    for i in range(0, len(body), 100):
        parts += reader.feed(body[i : i + 100])
        held.append(sum(len(c) for c in reader._chunks))
    reader.close()
    assert max(held) <= 1000  # never more than the limit in memory
    assert [(p.too_large, p.data) for p in parts] == [(True, b""), (False, b"small")]


def test_too_many_parts_or_headers_are_refused() -> None:
    reader = RelatedReader(_BOUNDARY, max_part_bytes=100, max_parts=3)
    with pytest.raises(MalformedBody):
        reader.feed(multipart([b"a"] * 4, _BOUNDARY))
    reader = RelatedReader(_BOUNDARY, max_part_bytes=100)
    header = f"--{_BOUNDARY}\r\nX-Long: {'y' * 10_000}\r\n\r\nabc\r\n--{_BOUNDARY}--"
    with pytest.raises(MalformedBody):
        reader.feed(header.encode())
