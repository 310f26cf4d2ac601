"""De-identification (issue 10, section 5): PS3.15 Annex E Basic Profile and four options,
checked generically over Table E.1-1 (not a hand list), plus keyed UIDs, pseudonyms, date
shifts, private tags, burned-in flag and the zip export."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import string
import zipfile
from pathlib import Path
from typing import Any

import pydicom
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

import imaging_data as data
from secretum.imaging import e11_table
from secretum.imaging.deid import (
    Deidentifier,
    DeidOptions,
    DeidResult,
    effective_action,
    table_rows,
    write_zip,
)
from secretum.imaging.part10 import is_valid_uid, parse_instance

BASIC = DeidOptions()
ALL = DeidOptions(True, True, True, True)
MARKERS = {0x00120062, 0x00120063, 0x00120064, 0x00280303}


def _key() -> bytes:
    return os.urandom(32)


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# ---- a data set holding every attribute of Table E.1-1 -------------------------------------

_TEXT = {"PN", "LO", "SH", "LT", "ST", "UT", "UC", "CS", "AE"}


def _value(vr: str, i: int) -> Any:
    if vr in _TEXT:
        return f"V{i:04d}QZ" if vr != "CS" else f"V{i:04d}QZ".upper()
    return {
        "DA": "20010203",
        "TM": "101112",
        "DT": "20010203101112",
        "UI": f"1.2.3.{i}",
        "AS": "042Y",
        "IS": str(4000 + i),
        "DS": f"{4000 + i}.5",
        "US": 4242,
        "SS": 4242,
        "UL": 4242,
        "SL": 4242,
        "FL": 4242.0,
        "FD": 4242.0,
        "OB": b"\x01\x02\x03\x04",
        "OW": b"\x01\x02\x03\x04",
        "UN": b"\x01\x02\x03\x04",
    }.get(vr)


def table_dataset() -> tuple[Dataset, dict[int, Any]]:
    """A CT carrying one value in every Table E.1-1 attribute pydicom can encode."""
    ds = data.make_ct(1)[0]
    originals: dict[int, Any] = {}
    for i, (tag, mask, _name, _basic, _opts) in enumerate(sorted(table_rows())):
        if mask != 0xFFFFFFFF or tag >> 16 < 0x0008:
            continue
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        if tag in ds:
            del ds[tag]  # replaced by a value of our own, recognisable in the output
        if vr == "SQ":
            item = Dataset()
            item.PatientName = f"Nested{i:04d}^Name"
            item.ReferencedSOPInstanceUID = f"1.2.3.9{i}"
            ds.add_new(tag, vr, Sequence([item]))
            originals[tag] = f"Nested{i:04d}"
            continue
        value = _value(vr, i)
        if value is None:
            continue
        ds.add_new(tag, vr, value)
        originals[tag] = value
    return ds, originals


def _changed(out: Dataset, tag: int, original: Any) -> bool:
    if tag not in out:
        return True
    value = out[tag].value
    if out[tag].VR == "SQ":
        return original not in repr(value) if value else True
    if value in (None, "", b"") or (hasattr(value, "__len__") and len(value) == 0):
        return True
    return str(value) != str(original)


def test_basic_profile_changes_every_identifying_attribute_of_table_e11() -> None:
    ds, originals = table_dataset()
    assert len(originals) > 400  # the table is really exercised
    out = Deidentifier(_key(), BASIC).deidentify(ds).dataset
    checked = 0
    for tag, original in originals.items():
        action = effective_action(tag, BASIC)
        assert action in {"X", "Z", "D", "U"}, (hex(tag), action)
        assert _changed(out, tag, original), (hex(tag), keyword_for_tag(tag), out.get(tag))
        checked += 1
    blob = _bytes(out)
    for original in originals.values():
        if isinstance(original, str) and "QZ" in original:
            assert original.encode() not in blob
    assert checked == len(originals)


@pytest.mark.parametrize(
    ("options", "column"),
    [
        (DeidOptions(retain_long_modified_dates=True), "rtnLongModifDatesOpt"),
        (DeidOptions(clean_descriptors=True), "cleanDescOpt"),
        (DeidOptions(retain_patient_chars=True), "rtnPatCharsOpt"),
        (DeidOptions(retain_device_identity=True), "rtnDevIdOpt"),
    ],
)
def test_each_option_changes_exactly_its_column(options: DeidOptions, column: str) -> None:
    ds, originals = table_dataset()
    key = _key()
    basic = Deidentifier(key, BASIC).deidentify(ds).dataset
    optioned = Deidentifier(key, options).deidentify(ds).dataset
    column_tags = {tag for tag, mask, _, _, opts in table_rows() if column in opts}
    differing = {
        int(e.tag)
        for e in basic
        if int(e.tag) in originals and (e.tag not in optioned or optioned[e.tag] != e)
    } | {int(e.tag) for e in optioned if int(e.tag) not in basic}
    assert differing - MARKERS <= column_tags
    kept = {t for t in column_tags & set(originals) if effective_action(t, options) == "K"}
    for tag in kept:
        if optioned[tag].VR == "SQ":  # kept, its items still go through the table
            assert len(optioned[tag].value) == 1
        else:
            assert str(optioned[tag].value) == str(originals[tag]), hex(tag)
    assert differing - MARKERS, "the option changed nothing"


def test_retain_device_identity_keeps_device_serial_and_station() -> None:
    ct = data.make_ct(1)[0]
    basic = Deidentifier(_key(), BASIC).deidentify(ct).dataset
    dev = Deidentifier(_key(), DeidOptions(retain_device_identity=True)).deidentify(ct).dataset
    assert dev.DeviceSerialNumber == "SN-4242-XYZ" and dev.StationName == "CT-NORD-01"
    assert dev.ContributingEquipmentSequence[0].StationName == "CT-NORD-01"
    assert basic.get("DeviceSerialNumber") != "SN-4242-XYZ"
    assert basic.get("StationName") != "CT-NORD-01"
    assert dev.get("InstitutionName") != "Hopital Nord"  # institution is another option


def test_retain_patient_characteristics() -> None:
    ct = data.make_ct(1)[0]
    basic = Deidentifier(_key(), BASIC).deidentify(ct).dataset
    kept = Deidentifier(_key(), DeidOptions(retain_patient_chars=True)).deidentify(ct).dataset
    for keyword in ("PatientSex", "PatientAge", "PatientSize", "PatientWeight"):
        assert str(kept[keyword].value) == str(ct[keyword].value)
        assert not basic.get(keyword)
    assert "PatientBirthDate" not in kept or not kept.PatientBirthDate


def test_modified_dates_shift_consistently_per_patient() -> None:
    key = _key()
    deid = Deidentifier(key, DeidOptions(retain_long_modified_dates=True))
    first = data.make_ct(1, study_date="20260105")[0]
    later = data.make_ct(1, study_date="20261129", accession="ACC9")[0]
    other = data.make_ct(1, patient_id="SYN9999", name="Autre^Patient")[0]
    a, b, c = (deid.deidentify(x).dataset for x in (first, later, other))

    def day(value: str) -> dt.date:
        return dt.datetime.strptime(value, "%Y%m%d").date()

    assert a.StudyDate != "20260105"
    assert day(b.StudyDate) - day(a.StudyDate) == dt.timedelta(days=328)  # interval kept
    assert a.StudyDate == a.SeriesDate == a.AcquisitionDate == a.ContentDate
    assert a.StudyTime == "120000"
    offset_other = day(c.StudyDate) - day("20261129")
    offset_one = day(b.StudyDate) - day("20261129")
    assert offset_one != offset_other  # (1 in 3650 chance of a collision for fixed keys)
    assert Deidentifier(key, BASIC).deidentify(first).dataset.get("StudyDate") in (None, "")
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"
    again = Deidentifier(key, DeidOptions(retain_long_modified_dates=True)).deidentify(first)
    assert again.dataset.StudyDate == a.StudyDate  # same project later: same dates


def test_clean_descriptors_keeps_descriptions_without_identifiers() -> None:
    ct = data.make_ct(1)[0]
    basic = Deidentifier(_key(), BASIC).deidentify(ct).dataset
    clean = Deidentifier(_key(), DeidOptions(clean_descriptors=True)).deidentify(ct).dataset
    assert "StudyDescription" not in basic and "SeriesDescription" not in basic
    assert clean.SeriesDescription == "AXIAL 1mm"
    assert "CT THORAX" in clean.StudyDescription
    assert "martin" not in clean.StudyDescription.lower()  # the patient's name is scrubbed
    assert "iodine" in str(clean.PatientComments)


def test_uids_keyed_per_project_with_referential_integrity() -> None:
    cts = data.make_ct(3)
    key = _key()
    one = [Deidentifier(key, BASIC).deidentify(ds).dataset for ds in cts]
    two = [Deidentifier(key, ALL).deidentify(ds).dataset for ds in cts]  # a later export
    other = [Deidentifier(_key(), BASIC).deidentify(ds).dataset for ds in cts]
    for a, b, c, orig in zip(one, two, other, cts, strict=True):
        for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            assert a[keyword].value == b[keyword].value != orig[keyword].value
            assert a[keyword].value != c[keyword].value
            assert is_valid_uid(a[keyword].value) and a[keyword].value.startswith("2.25.")
        assert a.FrameOfReferenceUID == one[0].FrameOfReferenceUID
        assert a.StudyInstanceUID == one[0].StudyInstanceUID
        assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
        assert a.SOPClassUID == orig.SOPClassUID  # registered UIDs are kept
    for result in one[1:]:
        ref = result.ReferencedImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == one[0].SOPInstanceUID
        assert ref.ReferencedSOPClassUID == cts[0].SOPClassUID


def test_patient_pseudonym_links_within_a_project_only() -> None:
    key = _key()
    s1 = data.make_ct(1)[0]
    s2 = data.make_ct(1, study_date="20270101")[0]
    p1 = Deidentifier(key, BASIC).deidentify(s1).dataset.PatientID
    p2 = Deidentifier(key, ALL).deidentify(s2).dataset.PatientID
    p3 = Deidentifier(_key(), BASIC).deidentify(s1).dataset.PatientID
    assert p1 == p2 != p3
    assert "SYN0001" not in p1
    out = Deidentifier(key, BASIC).deidentify(s1).dataset
    assert out.PatientName == p1
    assert "OtherPatientIDs" not in out and "OtherPatientIDsSequence" not in out
    assert "IssuerOfPatientID" not in out


def test_nested_identifiers_in_sequences_are_removed() -> None:
    out = Deidentifier(_key(), BASIC).deidentify(data.make_ct(1)[0]).dataset
    item = out.ContributingEquipmentSequence[0]
    assert item.Manufacturer == "ACME Imaging"  # not identifying, kept
    assert item.get("InstitutionName") != "Hopital Nord"
    assert not item.get("OperatorsName") or item.OperatorsName != "Petit^Louis"


def test_private_tags_removed_unless_safe_listed() -> None:
    ct = data.make_ct(1)[0]
    block = ct.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "IS", "1000")  # B_value: safe-listed
    block.add_new(0x10, "LO", "Martin^Sophie")  # same block, not safe-listed
    result = Deidentifier(_key(), BASIC).deidentify(ct)
    out = result.dataset
    assert not any(e.tag.group == 0x0009 for e in out)
    kept = [e for e in out if e.tag.is_private]
    assert {int(e.tag) for e in kept} == {0x00190010, 0x0019100C}
    assert result.actions_applied_counts["private_removed"] >= 3
    assert b"Martin" not in _bytes(out)
    bare = Deidentifier(_key(), BASIC, safe_private=frozenset()).deidentify(ct).dataset
    assert not any(e.tag.is_private for e in bare)


def test_burned_in_annotation_is_flagged() -> None:
    deid = Deidentifier(_key(), BASIC)
    assert deid.deidentify(data.make_us(burned_in="YES")).burned_in_flag
    assert deid.deidentify(data.make_us(burned_in=None)).burned_in_flag  # US: flagged anyway
    ct = data.make_ct(1)[0]
    assert not deid.deidentify(ct).burned_in_flag
    ct.BurnedInAnnotation = "YES"
    assert deid.deidentify(ct).burned_in_flag
    sc = data.make_ct(1)[0]
    sc.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
    sc.Modality = "CT"
    assert deid.deidentify(sc).burned_in_flag


def test_deidentification_markers_and_codes() -> None:
    out = Deidentifier(_key(), ALL).deidentify(data.make_ct(1)[0]).dataset
    assert out.PatientIdentityRemoved == "YES"
    got = [(i.CodeValue, i.CodingSchemeDesignator) for i in out.DeidentificationMethodCodeSequence]
    assert got == [(c, "DCM") for c in ("113100", "113107", "113105", "113108", "113109")]
    meanings = [i.CodeMeaning for i in out.DeidentificationMethodCodeSequence]
    assert meanings[0] == "Basic Application Confidentiality Profile"
    basic = Deidentifier(_key(), BASIC).deidentify(data.make_ct(1)[0]).dataset
    assert [i.CodeValue for i in basic.DeidentificationMethodCodeSequence] == ["113100"]


def test_input_is_not_modified_and_key_is_required() -> None:
    ct = data.make_ct(1)[0]
    before = _bytes(ct)
    Deidentifier(_key(), ALL).deidentify(ct)
    assert _bytes(ct) == before
    with pytest.raises(ValueError):
        Deidentifier(b"short", BASIC)
    assert "key" not in repr(Deidentifier(b"k" * 32, BASIC)).lower().replace("deid", "")


def test_table_is_generated_and_small() -> None:
    path = Path(e11_table.__file__)
    assert path.stat().st_size < 1024 * 1024
    assert e11_table.STANDARD_REVISION and len(e11_table.SOURCE_COMMIT) == 40
    assert len(table_rows()) > 600
    assert effective_action(0x00100010, BASIC) == "Z"  # Patient's Name
    assert effective_action(0x00181000, DeidOptions(retain_device_identity=True)) == "K"


class _Unseekable(io.RawIOBase):
    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.buf += bytes(b)
        return len(b)


def test_zip_holds_valid_part10_files_and_an_anonymous_manifest() -> None:
    deid = Deidentifier(_key(), DeidOptions(retain_long_modified_dates=True))
    sources = [*data.make_ct(3), data.make_us()]
    stream = _Unseekable()
    manifest = write_zip((deid.deidentify(ds) for ds in sources), stream)
    archive = zipfile.ZipFile(io.BytesIO(bytes(stream.buf)))
    names = archive.namelist()
    assert "manifest.json" in names and len(names) == 5
    for name in names:
        if name.endswith(".dcm"):
            blob = archive.read(name)
            parsed = parse_instance(blob, max_bytes=10_000_000)
            ds = pydicom.dcmread(io.BytesIO(blob), force=False)
            assert name.endswith(parsed.sop_instance_uid + ".dcm")
            assert ds.PatientIdentityRemoved == "YES"
    stored = json.loads(archive.read("manifest.json"))
    assert stored == json.loads(json.dumps(manifest))
    assert stored["instances"] == 4 and sum(f["burned_in_flag"] for f in stored["files"]) == 1
    text = archive.read("manifest.json").decode()
    for secret in ("SYN0001", "Martin", "Leroy", "Hopital", "ACC1", "19700101"):
        assert secret not in text
    for ds in sources:
        assert ds.SOPInstanceUID not in text
    skipped = write_zip(
        (deid.deidentify(ds) for ds in sources), io.BytesIO(), exclude_burned_in=True
    )
    assert skipped["instances"] == 3 and skipped["excluded_burned_in"] == 1


# ---- property: identifying text never survives ---------------------------------------------


def _identifying_targets(options: DeidOptions) -> list[tuple[int, str]]:
    """Text attributes of Table E.1-1 the options do not retain (nor clean)."""
    out = []
    for tag, mask, _name, _basic, _opts in table_rows():
        if mask != 0xFFFFFFFF or tag >> 16 < 0x0008:
            continue
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        if vr in {"PN", "LO", "SH", "LT", "ST", "UT", "UC"} and effective_action(tag, options) in {
            "X",
            "Z",
            "D",
            "U",
        }:
            out.append((tag, vr))
    return sorted(out)


OPTIONS = st.builds(DeidOptions, st.booleans(), st.booleans(), st.booleans(), st.booleans())
KEY = b"property-test-project-key-000000"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    options=OPTIONS,
    text=st.text(alphabet=string.ascii_letters, min_size=8, max_size=16),
    picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=6),
)
def test_random_identifying_text_never_survives(
    options: DeidOptions, text: str, picks: list[int]
) -> None:
    targets = _identifying_targets(options)
    deid = Deidentifier(KEY, options)
    baseline = _bytes(deid.deidentify(data.make_ct(1)[0]).dataset)
    assume(text.encode() not in baseline)
    ds = data.make_ct(1)[0]
    for pick in picks:
        tag, vr = targets[pick % len(targets)]
        ds.add_new(tag, vr, text)
    ds.PatientID = text  # the identifier itself
    ds.ContributingEquipmentSequence[0].OperatorsName = text  # nested
    ds.private_block(0x0009, "ACME 1.0").add_new(0x12, "LO", text)  # private
    result = deid.deidentify(ds)
    blob = _bytes(result.dataset)
    assert text.encode() not in blob
    stream = io.BytesIO()
    write_zip([result], stream)
    archive = zipfile.ZipFile(stream)
    for name in archive.namelist():
        assert text.encode() not in archive.read(name)


def test_result_type() -> None:
    result = Deidentifier(_key(), BASIC).deidentify(data.make_ct(1)[0])
    assert isinstance(result, DeidResult)
    assert result.actions_applied_counts["U"] >= 3
