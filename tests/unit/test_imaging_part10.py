"""Part-10 validation (issue 10, section 4): every bad input is refused with a stable reason and
the right DICOMweb/DIMSE status; nothing but InvalidInstance ever escapes parse_instance."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

import imaging_data as data
from secretum.imaging.part10 import (
    FAILURE_STATUSES,
    InvalidInstance,
    Reason,
    check_resend,
    content_digest,
    is_valid_uid,
    parse_instance,
    same_content,
)

MAX = 1_000_000


def _ct(**kw: object) -> bytes:
    return data.to_bytes(data.make_ct(1, **kw)[0])  # type: ignore[arg-type]


def _refused(blob: bytes, reason: Reason, max_bytes: int = MAX) -> InvalidInstance:
    with pytest.raises(InvalidInstance) as info:
        parse_instance(blob, max_bytes=max_bytes)
    assert info.value.reason is reason, info.value
    return info.value


def test_valid_ct_parses_and_extracts_identifiers() -> None:
    ds = data.make_ct(1)[0]
    parsed = parse_instance(data.to_bytes(ds), max_bytes=MAX)
    assert parsed.sop_instance_uid == ds.SOPInstanceUID
    assert parsed.study_instance_uid == ds.StudyInstanceUID
    assert parsed.series_instance_uid == ds.SeriesInstanceUID
    assert parsed.sop_class_uid == ds.SOPClassUID
    assert parsed.patient_id == "SYN0001"
    assert parsed.issuer_of_patient_id == "HOPITAL-NORD"
    assert parsed.is_native


def test_implicit_vr_and_deflated_parse_with_same_digest() -> None:
    ds = data.make_ct(1)[0]
    explicit = parse_instance(data.to_bytes(ds), max_bytes=MAX)
    implicit = parse_instance(data.to_bytes(ds, implicit=True), max_bytes=MAX)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    deflated = parse_instance(data.to_bytes(ds), max_bytes=MAX)
    assert explicit.digest == implicit.digest == deflated.digest
    assert deflated.transfer_syntax_uid == DeflatedExplicitVRLittleEndian


def _jpeg_instance() -> bytes:
    ds = data.make_ct(1)[0]
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    frame = b"\xff\xd8" + bytes(range(40)) + b"\xff\xd9"
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return data.to_bytes(ds)


def test_encapsulated_instance_is_stored_as_received() -> None:
    parsed = parse_instance(_jpeg_instance(), max_bytes=MAX)
    assert parsed.transfer_syntax_uid == JPEGBaseline8Bit
    assert not parsed.is_native


def test_oversize_is_refused_out_of_resources() -> None:
    blob = _ct()
    err = _refused(blob, Reason.TOO_LARGE, max_bytes=len(blob) - 1)
    assert (err.dicomweb_failure_reason, err.dimse_status) == (0xA700, 0xA700)
    parse_instance(blob, max_bytes=len(blob))  # the limit itself is allowed


def test_deflate_bomb_is_refused_before_inflating_it_all() -> None:
    ds = data.make_ct(1)[0]
    ds.Rows = ds.Columns = 1024
    ds.PixelData = bytes(1024 * 1024 * 2)  # 2 MiB of zeros deflates to a few KiB
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    blob = data.to_bytes(ds)
    assert len(blob) < 100_000
    _refused(blob, Reason.TOO_LARGE, max_bytes=100_000)


def test_not_part10() -> None:
    blob = _ct()
    _refused(blob[128:], Reason.NOT_PART10)  # no preamble
    _refused(b"\x00" * 128 + b"DICM", Reason.NOT_PART10)  # no file meta
    _refused(b"GET / HTTP/1.1\r\n" * 20, Reason.NOT_PART10)
    _refused(b"", Reason.NOT_PART10)


def test_every_truncation_is_refused() -> None:
    """Cut anywhere (inside an element, at a boundary, inside the meta): never accepted."""
    blob = _ct()
    for cut in range(0, len(blob)):
        with pytest.raises(InvalidInstance):
            parse_instance(blob[:cut], max_bytes=MAX)


def test_truncated_pixel_data_and_sequence_are_truncated() -> None:
    ds = data.make_ct(2)[1]
    ds["ReferencedImageSequence"].is_undefined_length = True
    blob = data.to_bytes(ds)
    _refused(blob[:-1], Reason.TRUNCATED)
    # cut inside the undefined-length sequence: after its item tag, before its delimiters
    start = blob.index(b"\x08\x00\x40\x11")  # (0008,1140) Referenced Image Sequence
    _refused(blob[: start + 30], Reason.TRUNCATED)
    jpeg = _jpeg_instance()
    _refused(jpeg[:-8], Reason.TRUNCATED)  # sequence delimiter of the fragments missing


def test_truncated_deflated_body() -> None:
    ds = data.make_ct(1)[0]
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    blob = data.to_bytes(ds)
    with pytest.raises(InvalidInstance) as info:
        parse_instance(blob[:-10], max_bytes=MAX)
    assert info.value.reason in (Reason.TRUNCATED, Reason.MALFORMED)


def test_unsupported_transfer_syntax() -> None:
    blob = _ct().replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.2\x00", 1)
    err = _refused(blob, Reason.UNSUPPORTED_TRANSFER_SYNTAX)  # explicit VR big endian
    assert err.dicomweb_failure_reason == 0xC122


@pytest.mark.parametrize("sop_class", ["1.2.840.10008.1.20.1", "1.2.3.4.5"])
def test_unsupported_sop_class(sop_class: str) -> None:
    ds = data.make_ct(1)[0]
    ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    err = _refused(data.to_bytes(ds), Reason.UNSUPPORTED_SOP_CLASS)
    assert (err.dicomweb_failure_reason, err.dimse_status) == (0x0122, 0x0122)


@pytest.mark.parametrize(
    "keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"]
)
def test_missing_uid(keyword: str) -> None:
    ds = data.make_ct(1)[0]
    delattr(ds, keyword)
    with pytest.raises(InvalidInstance) as info:
        parse_instance(data.to_bytes(ds), max_bytes=MAX)
    assert info.value.reason in (Reason.MISSING_UID, Reason.META_MISMATCH)
    assert info.value.dicomweb_failure_reason == 0xA900


@pytest.mark.parametrize("bad", ["1.02.3", "1..2", "1.2.", "1.2.a", "1." + "2" * 70, "1.2 .3"])
def test_invalid_uid_syntax(bad: str) -> None:
    assert not is_valid_uid(bad)
    ds = data.make_ct(1)[0]
    ds.StudyInstanceUID = bad
    err = _refused(data.to_bytes(ds), Reason.INVALID_UID)
    assert err.dimse_status == 0x0117


def test_valid_uid_syntax() -> None:
    assert is_valid_uid("1.2.840.10008.5.1.4.1.1.2")
    assert is_valid_uid("2.25.0")
    assert is_valid_uid("1." + "2" * 62)
    assert not is_valid_uid("1." + "2" * 63)


def test_media_storage_uid_must_match() -> None:
    ds = data.make_ct(1)[0]
    uid = ds.SOPInstanceUID.encode()
    other = uid[:-1] + (b"1" if uid[-1:] != b"1" else b"2")
    blob = data.to_bytes(ds)
    assert blob.index(uid) < blob.index(b"DICM") + 200  # first occurrence: in the file meta
    _refused(blob.replace(uid, other, 1), Reason.META_MISMATCH)


def test_image_without_pixel_data() -> None:
    ds = data.make_ct(1)[0]
    del ds.PixelData
    _refused(data.to_bytes(ds), Reason.MISSING_PIXEL_DATA)


def test_undecodable_value_is_malformed_not_a_crash() -> None:
    blob = bytearray(_ct())
    at = blob.index(b"\x28\x00\x10\x00US")  # Rows, explicit VR US, length 2
    blob[at + 6 : at + 8] = b"\x03\x00"  # odd length for US: 3 bytes
    blob[at + 8 : at + 8] = b"\x00"
    with pytest.raises(InvalidInstance):
        parse_instance(bytes(blob), max_bytes=MAX)


def test_resend_same_content_is_idempotent_other_content_conflicts() -> None:
    ds = data.make_ct(1)[0]
    first = parse_instance(data.to_bytes(ds), max_bytes=MAX)
    again = parse_instance(data.to_bytes(ds, implicit=True), max_bytes=MAX)
    check_resend(first.digest, again)  # same content, other encoding: no error
    assert same_content(first.digest, content_digest(again.dataset))
    ds.PatientName = "Other^Patient"
    changed = parse_instance(data.to_bytes(ds), max_bytes=MAX)
    assert changed.sop_instance_uid == first.sop_instance_uid
    with pytest.raises(InvalidInstance) as info:
        check_resend(first.digest, changed)
    assert info.value.reason is Reason.CONFLICT
    assert info.value.dicomweb_failure_reason == 0x0111


def test_every_reason_has_both_statuses() -> None:
    assert set(FAILURE_STATUSES) == set(Reason)
    for status in FAILURE_STATUSES.values():
        assert 0 < status.dicomweb_failure_reason <= 0xFFFF
        assert 0 < status.dimse_status <= 0xFFFF


def test_errors_never_quote_patient_data() -> None:
    ds = data.make_ct(1)[0]
    ds.StudyInstanceUID = "Martin^Sophie"
    err = _refused(data.to_bytes(ds), Reason.INVALID_UID)
    assert "Martin" not in str(err)


# ---- fuzz -----------------------------------------------------------------------------------


def _seeds() -> list[bytes]:
    ct = data.make_ct(2)[1]
    ct["ReferencedImageSequence"].is_undefined_length = True
    deflated = data.make_ct(1)[0]
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return [
        data.to_bytes(ct),
        data.to_bytes(data.make_ct(1)[0], implicit=True),
        data.to_bytes(deflated),
        _jpeg_instance(),
        data.to_bytes(data.make_us()),
    ]


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    blob = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(blob) - 1, 0)))
        if kind == "flip" and blob:
            blob[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and blob:
            blob[at] = draw(st.sampled_from([0x00, 0xFF, 0xFE, 0xE0, 0xDD, 0x0D]))
        elif kind == "insert":
            blob[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del blob[at : at + draw(st.integers(1, 16))]
        else:
            del blob[at:]
    return bytes(blob)


@settings(
    max_examples=300,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_fuzz_parse_returns_or_refuses(blob: bytes) -> None:
    try:
        parsed = parse_instance(blob, max_bytes=MAX)
    except InvalidInstance as err:
        assert err.reason in FAILURE_STATUSES
        assert err.reason is not Reason.PROCESSING_FAILURE, err.__cause__
    else:
        assert parsed.dataset is not None and len(parsed.digest) == 32
        assert parsed.digest == _reference_digest(parsed.dataset)


def test_fuzz_seeds_are_valid() -> None:
    for seed in SEEDS:
        parse_instance(seed, max_bytes=MAX)


@pytest.mark.parametrize("vr", [b"TI", b"XX"])
def test_unknown_vr_in_the_file_meta_is_malformed_not_a_failure_of_ours(vr: bytes) -> None:
    """Found by the fuzz test: an unknown VR in a file-meta element (here the Media Storage
    SOP Class UID) is refused as malformed, not as a processing failure."""
    data = bytearray(SEEDS[0])
    at = data.index(b"\x02\x00\x02\x00UI")
    data[at + 4 : at + 6] = vr
    with pytest.raises(InvalidInstance) as refused:
        parse_instance(bytes(data), max_bytes=MAX)
    assert refused.value.reason is Reason.MALFORMED


# ---- the digest's meaning -------------------------------------------------------------------


def _reference_digest(ds: Dataset) -> bytes:
    """The digest as first defined (stored digests mean this): every element but the file
    meta and group lengths encoded by pydicom, implicit VR little endian, in tag order;
    sequences item by item. The archive hashes binary values without copying them: it must
    give the very same bytes."""
    h = hashlib.sha256()

    def walk(ds: Dataset) -> None:
        for elem in ds:
            tag = int(elem.tag)
            if (tag >> 16) == 0x0002 or (tag & 0xFFFF) == 0:
                continue
            if elem.VR == "SQ":
                h.update(struct.pack("<LL", tag, len(elem.value)) + b"SQ")
                for item in elem.value:
                    h.update(b"\xfe\xff\x00\xe0")
                    walk(item)
                    h.update(b"\xfe\xff\x0d\xe0")
                continue
            buf = DicomBytesIO()
            buf.is_little_endian, buf.is_implicit_VR = True, True
            write_data_element(buf, elem)
            h.update(buf.getvalue())

    walk(ds)
    return h.digest()


def test_digest_of_every_seed_is_the_reference_digest() -> None:
    for seed in SEEDS:
        ds = parse_instance(seed, max_bytes=MAX).dataset
        assert content_digest(ds) == _reference_digest(ds)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["OB", "OW", "UN"]),
            st.binary(max_size=64),
        ),
        max_size=4,
    ),
    st.binary(max_size=300),
    st.booleans(),
)
def test_binary_values_hash_as_pydicom_encodes_them(
    extra: list[tuple[str, bytes]], pixels: bytes, implicit: bool
) -> None:
    """Odd and even lengths, every binary VR, private elements, explicit or implicit VR."""
    ds = data.make_ct(1)[0]
    ds.PixelData = pixels
    for n, (vr, value) in enumerate(extra):
        ds.add_new(0x00091010 + n, vr, value)
    parsed = parse_instance(data.to_bytes(ds, implicit=implicit), max_bytes=MAX).dataset
    assert content_digest(parsed) == _reference_digest(parsed)
    assert content_digest(ds) == _reference_digest(ds)
