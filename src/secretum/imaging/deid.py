"""De-identification of DICOM instances (issue 10, section 5; DICOM PS3.15 Annex E).

What to call
------------
::

    deid = Deidentifier(project_key, DeidOptions(retain_long_modified_dates=True, ...))
    result = deid.deidentify(parsed.dataset)   # never modifies its argument
    if result.burned_in_flag: ...              # pixels may show identifying text: review/refuse
    write_zip([result, ...], fileobj)          # zip of Part-10 files + manifest.json

``project_key`` is a secret of the export project (at least 16 bytes, kept by the key service,
never logged). The export route, consent check (research consent or care purpose) and audit
are the caller's; this module is pure: no I/O but the zip writer's ``fileobj``.

What it does
------------
* Basic Application Level Confidentiality Profile (Table E.1-1), with any of four options
  chosen per export: Retain Longitudinal Temporal Information with Modified Dates, Clean
  Descriptors, Retain Patient Characteristics, Retain Device Identity. The table is applied to
  every element at every nesting level.
* Compound actions are resolved without knowing the IOD's attribute types, conservatively and
  so that Type 1/2 attributes stay present: ``X/Z`` -> Z, any compound with D -> D (dummy),
  ``X/Z/U*`` -> keep the sequence and replace the UIDs it contains.
* When two chosen options disagree (e.g. Allergies: Retain Patient Characteristics says C,
  Clean Descriptors says C; some others K vs C), C wins over K: cleaning is the safer one.
* U (UIDs): ``2.25.<int(HMAC-SHA256(project_key, "uid" || uid)[:16])>``. The same UID in the
  same project always maps to the same new UID (so references between instances and later
  exports stay linked: ReferencedSOPInstanceUID maps like the SOPInstanceUID it names); another
  project key gives unrelated UIDs. UIDs of attributes not in the table are replaced the same
  way unless they are registered DICOM UIDs (SOP classes, transfer syntaxes, coding schemes).
* Patient ID and Patient's Name become a keyed pseudonym of (Issuer of Patient ID, Patient
  ID): the table allows a dummy value (Z/D, Z), and a pseudonym lets a later export of the
  same patient in the same project link.
* C on dates (Modified Dates option): DA and the date part of DT are shifted by a per-patient
  keyed offset of 1 to 3650 days into the past, the same for all of a patient's studies in a
  project, so intervals are kept; TM is kept. A date that cannot be parsed is emptied.
* C on text (Clean Descriptors, patient characteristics): the text is kept minus every
  identifying value found in the same instance (names and their components, IDs, dates,
  addresses... any value the profile removes), case-insensitively. Sequences are cleaned item
  by item through the table.
* Private attributes (odd groups) are removed unless their (creator, group, element) is in
  ``SAFE_PRIVATE``: a short list of numeric acquisition parameters named in PS3.15 Table
  E.3.10-1 (diffusion b-value and direction), retained because they carry no identity and
  research needs them. Their private creator element is kept with them. Callers may pass
  their own (smaller) list.
* Safety nets beyond the table: a person name (VR PN) in an attribute the table does not
  list is emptied; group length elements are dropped.
* Burned-in annotation: ``burned_in_flag`` is true when BurnedInAnnotation is YES, or the SOP
  class or modality is one that commonly carries text in its pixels (secondary capture,
  ultrasound, video/photographic, visible light, document scans). Pixel data are not cleaned
  here (no Clean Pixel Data option): the caller must not export a flagged instance unreviewed.
* PatientIdentityRemoved = YES, DeidentificationMethod (code meanings),
  DeidentificationMethodCodeSequence with the CID 7050 codes (113100 and one per option; code
  meanings from pydicom's CID 7050 dictionary) and LongitudinalTemporalInformationModified.

Why this source for Table E.1-1
-------------------------------
Candidates were pydicom/deid (recipe files; the basic profile is a hand-maintained recipe
without the option columns), dicognito (its own choice of attributes, not table-driven),
KitwareMedical dicom-anonymizer (its ``dicomfields`` groups tags by the basic-profile action,
generated from the standard, but the option columns are not carried as data), and innolitics
``dicom-standard``, which parses each release of the standard into JSON and keeps every column
of Table E.1-1, including all option columns. The latter is used: tools/gen_deid_table.py
turns its JSON into :mod:`secretum.imaging.e11_table` (620 rows, ~60 KB), which records the
source commit and the standard revision. To update, rerun the generator on a newer JSON.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import re
import zipfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from cryptography.hazmat.primitives import hashes, hmac
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import UID, ExplicitVRLittleEndian

from secretum.imaging import e11_table

__all__ = [
    "SAFE_PRIVATE",
    "DeidOptions",
    "DeidResult",
    "Deidentifier",
    "burned_in",
    "effective_action",
    "table_rows",
    "write_zip",
]

# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

_OPTION_COLUMN = {
    "retain_long_modified_dates": "rtnLongModifDatesOpt",
    "clean_descriptors": "cleanDescOpt",
    "retain_patient_chars": "rtnPatCharsOpt",
    "retain_device_identity": "rtnDevIdOpt",
}


@dataclass(frozen=True)
class _Row:
    value: int
    mask: int
    name: str
    basic: str
    options: dict[str, str]


def _load() -> tuple[dict[int, _Row], list[_Row]]:
    exact: dict[int, _Row] = {}
    masked: list[_Row] = []
    for value, mask, name, basic, opts in e11_table.TABLE:
        options = dict(pair.split("=", 1) for pair in opts.split(",") if pair)
        row = _Row(value, mask, name, basic, options)
        if mask == 0xFFFFFFFF:
            exact[value] = row
        else:
            masked.append(row)
    return exact, masked


_EXACT, _MASKED = _load()


def table_rows() -> list[tuple[int, int, str, str, dict[str, str]]]:
    """Table E.1-1 as (value, mask, name, basic action, option actions), for tests and docs."""
    return [
        (r.value, r.mask, r.name, r.basic, dict(r.options)) for r in (*_EXACT.values(), *_MASKED)
    ]


def _row_for(tag: int) -> _Row | None:
    row = _EXACT.get(tag)
    if row is not None:
        return row
    for candidate in _MASKED:
        if tag & candidate.mask == candidate.value:
            return candidate
    return None


@dataclass(frozen=True)
class DeidOptions:
    """The PS3.15 options chosen for one export (all off = Basic Profile alone)."""

    retain_long_modified_dates: bool = False
    clean_descriptors: bool = False
    retain_patient_chars: bool = False
    retain_device_identity: bool = False

    def columns(self) -> list[str]:
        return [col for attr, col in _OPTION_COLUMN.items() if getattr(self, attr)]


def _resolve(basic: str) -> str:
    if basic == "X/Z":
        return "Z"
    if basic == "X/Z/U*":
        return "U"
    if "D" in basic.split("/"):
        return "D"
    return basic


def effective_action(tag: int, options: DeidOptions) -> str | None:
    """The action (X, Z, D, U, K or C) applied to ``tag`` under ``options``; None if the tag
    is not in Table E.1-1 (private attributes are handled apart)."""
    row = _row_for(tag)
    if row is None:
        return None
    chosen = [row.options[c] for c in options.columns() if c in row.options]
    if "C" in chosen:
        return "C"
    if "K" in chosen:
        return "K"
    return _resolve(row.basic)


# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

# (private creator, group, element offset in the block): PS3.15 Table E.3.10-1 examples.
SAFE_PRIVATE: frozenset[tuple[str, int, int]] = frozenset(
    {
        ("SIEMENS MR HEADER", 0x0019, 0x0C),  # B_value
        ("SIEMENS MR HEADER", 0x0019, 0x0D),  # DiffusionDirectionality
        ("SIEMENS MR HEADER", 0x0019, 0x0E),  # DiffusionGradientDirection
        ("GEMS_PARM_01", 0x0043, 0x39),  # slop_int_6..9 (b-value)
    }
)

_CID7050 = codes.cid7050
_PROFILE_CODE = _CID7050.BasicApplicationConfidentialityProfile
_OPTION_CODE = {
    "retain_long_modified_dates": _CID7050.RetainLongitudinalTemporalInformationModifiedDatesOption,
    "clean_descriptors": _CID7050.CleanDescriptorsOption,
    "retain_patient_chars": _CID7050.RetainPatientCharacteristicsOption,
    "retain_device_identity": _CID7050.RetainDeviceIdentityOption,
}

_TEXT_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "DA", "DT", "TM", "AS"})
_CLEANABLE_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC", "AE", "CS", "PN"})
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT"})
_DUMMY_TEXT = {
    "PN": "ANONYMOUS",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000D",
    "IS": "0",
    "DS": "0",
    "UR": "",
}
_BURNED_IN_MODALITIES = frozenset({"US", "SC", "OT", "XC", "ES", "GM", "DOC", "IVUS"})
_BURNED_IN_CLASS_WORDS = (
    "Secondary Capture",
    "Ultrasound",
    "Video",
    "Photographic",
    "Visible Light",
    "Encapsulated PDF",
)
_MIN_TERM = 3  # shorter identifying fragments (initials, sex) are not scrubbed from text


def _burned_in_class(sop_class: str) -> bool:
    name = UID(sop_class).name if sop_class else ""
    return any(word in name for word in _BURNED_IN_CLASS_WORDS)


def burned_in(ds: Dataset) -> bool:
    """Whether the pixels of ``ds`` may show identifying text: BurnedInAnnotation YES, or a
    modality or SOP class known to carry it (see the module docstring)."""
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        return True
    if str(ds.get("Modality", "")).strip().upper() in _BURNED_IN_MODALITIES:
        return True
    return _burned_in_class(str(ds.get("SOPClassUID", "")))


def _registered(uid: str) -> bool:
    """A UID of the DICOM registry (SOP class, transfer syntax, coding scheme...)."""
    try:
        return UID(uid).name != uid
    except Exception:
        return False


# --------------------------------------------------------------------------------------------
# The de-identifier
# --------------------------------------------------------------------------------------------


@dataclass
class DeidResult:
    dataset: Dataset
    burned_in_flag: bool
    actions_applied_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _Context:
    patient_key: bytes
    scrub: re.Pattern[str] | None
    counts: Counter[str]


class Deidentifier:
    """Applies the profile for one export project; reuse one instance for a whole export."""

    def __init__(
        self,
        project_key: bytes,
        options: DeidOptions,
        *,
        safe_private: frozenset[tuple[str, int, int]] = SAFE_PRIVATE,
    ) -> None:
        if not isinstance(project_key, bytes) or len(project_key) < 16:
            raise ValueError("project_key must be at least 16 bytes")
        self._key = project_key
        self.options = options
        self._safe_private = safe_private
        self._uid_cache: dict[str, str] = {}

    def __repr__(self) -> str:  # never show the key
        return f"Deidentifier(options={self.options!r})"

    # ---- keyed derivations -----------------------------------------------------------------

    def _mac(self, label: bytes, message: bytes) -> bytes:
        mac = hmac.HMAC(self._key, hashes.SHA256())
        mac.update(label + b"\x00" + message)
        return mac.finalize()

    def map_uid(self, uid: str) -> str:
        """The project's replacement for ``uid`` (stable across calls and exports)."""
        uid = uid.strip().rstrip("\x00")
        if not uid:
            return uid
        cached = self._uid_cache.get(uid)
        if cached is None:
            cached = "2.25." + str(int.from_bytes(self._mac(b"uid", uid.encode())[:16], "big"))
            self._uid_cache[uid] = cached
        return cached

    def pseudonym(self, patient_id: str, issuer: str = "") -> str:
        """Keyed pseudonym of a patient identifier (LO, 28 characters)."""
        digest = self._mac(b"patient-id", f"{issuer}\x00{patient_id}".encode())
        return "ANON" + digest[:12].hex().upper()

    def date_offset_days(self, patient_key: bytes) -> int:
        """Per-patient shift, 1..3650 days into the past, same for all of its studies."""
        digest = self._mac(b"date-offset", patient_key)
        return -(1 + int.from_bytes(digest[:4], "big") % 3650)

    # ---- entry point -----------------------------------------------------------------------

    def deidentify(self, ds: Dataset) -> DeidResult:
        """De-identify a copy of ``ds`` (a pydicom Dataset or FileDataset)."""
        original_meta = getattr(ds, "file_meta", None)
        out = copy.deepcopy(Dataset(ds))
        burned_in = self._burned_in(out)
        pid = str(out.get("PatientID", "") or "").strip()
        issuer = str(out.get("IssuerOfPatientID", "") or "").strip()
        if pid:
            patient_key = f"{issuer}\x00{pid}".encode()
        else:  # no identifier: link within the study only
            patient_key = b"study\x00" + str(out.get("StudyInstanceUID", "")).encode()
        ctx = _Context(patient_key, self._scrub_pattern(out), Counter())
        self._process(out, ctx, depth=0)
        self._mark(out)
        out.file_meta = self._file_meta(out, original_meta)
        return DeidResult(out, burned_in, dict(ctx.counts))

    # ---- helpers ---------------------------------------------------------------------------

    def _burned_in(self, ds: Dataset) -> bool:
        return burned_in(ds)

    def _scrub_pattern(self, ds: Dataset) -> re.Pattern[str] | None:
        """Every identifying value of the instance, as one case-insensitive pattern."""
        terms: set[str] = set()
        for elem in ds.iterall():
            if elem.VR not in _TEXT_VRS or elem.value is None:
                continue
            if (elem.tag.group % 2 == 0) and effective_action(int(elem.tag), self.options) in (
                None,
                "K",
                "C",
            ):
                continue
            values = elem.value if _is_multi(elem.value) else [elem.value]
            for value in values:
                text = str(value)
                for term in [text, *re.split(r"[\^=\s,]+", text)]:
                    term = term.strip()
                    if len(term) >= _MIN_TERM:
                        terms.add(term)
        if not terms:
            return None
        ordered = sorted(terms, key=len, reverse=True)
        return re.compile("|".join(re.escape(t) for t in ordered), re.IGNORECASE)

    def _process(self, ds: Dataset, ctx: _Context, depth: int) -> None:
        kept_blocks: set[tuple[int, int]] = set()
        creators: list[int] = []
        for tag in list(ds.keys()):
            elem = ds[tag]
            t = int(tag)
            group, element = t >> 16, t & 0xFFFF
            if element == 0 and group != 0x0002:
                del ds[tag]
                ctx.counts["X"] += 1
                continue
            if group % 2 == 1:
                if 0x0010 <= element <= 0x00FF:
                    creators.append(t)
                    continue
                creator = ds.get((group << 16) | ((element >> 8) & 0xFF))
                name = str(creator.value).strip() if creator is not None else ""
                if element >= 0x1000 and (name, group, element & 0xFF) in self._safe_private:
                    kept_blocks.add((group, (element >> 8) & 0xFF))
                    ctx.counts["K"] += 1
                else:
                    del ds[tag]
                    ctx.counts["private_removed"] += 1
                continue
            self._apply(ds, elem, ctx, depth)
        for t in creators:
            if (t >> 16, t & 0xFF) not in kept_blocks:
                del ds[t]
                ctx.counts["private_removed"] += 1

    def _apply(self, ds: Dataset, elem: DataElement, ctx: _Context, depth: int) -> None:
        t = int(elem.tag)
        if t == 0x00100020 or t == 0x00100010:  # Patient ID, Patient's Name: pseudonym
            issuer = str(ds.get("IssuerOfPatientID", "") or "").strip()
            pid = str(ds.get("PatientID", "") or "").strip()
            elem.value = self.pseudonym(pid, issuer) if pid else ""
            ctx.counts["D"] += 1
            return
        action = effective_action(t, self.options)
        if action is None:
            if elem.VR == "SQ":
                self._recurse(elem, ctx, depth)
            elif elem.VR == "PN":
                elem.value = ""
                ctx.counts["Z"] += 1
            elif elem.VR == "UI":
                self._map_uids(elem, ctx, keep_registered=True)
            return
        ctx.counts[action] += 1
        if action == "X":
            del ds[elem.tag]
        elif action == "Z":
            elem.value = Sequence() if elem.VR == "SQ" else None
        elif action == "D":
            self._dummy(elem, ctx, depth)
        elif action == "U":
            if elem.VR == "SQ":
                self._recurse(elem, ctx, depth)
            else:
                self._map_uids(elem, ctx, keep_registered=True)
        elif action == "K":
            if elem.VR == "SQ":
                self._recurse(elem, ctx, depth)
        elif action == "C":
            self._clean(elem, ctx, depth)

    def _recurse(self, elem: DataElement, ctx: _Context, depth: int) -> None:
        for item in elem.value or []:
            self._process(item, ctx, depth + 1)

    def _map_uids(self, elem: DataElement, ctx: _Context, *, keep_registered: bool) -> None:
        if elem.value is None or elem.value == "":
            return
        values = list(elem.value) if _is_multi(elem.value) else [elem.value]
        mapped = [
            str(v) if keep_registered and _registered(str(v)) else self.map_uid(str(v))
            for v in values
        ]
        elem.value = mapped if len(mapped) > 1 else mapped[0]

    def _dummy(self, elem: DataElement, ctx: _Context, depth: int) -> None:
        vr = elem.VR
        if vr == "SQ":
            self._recurse(elem, ctx, depth)
        elif vr == "UI":
            self._map_uids(elem, ctx, keep_registered=True)
        elif vr in _NUMERIC_VRS:
            elem.value = 0
        elif vr in _DUMMY_TEXT:
            elem.value = _DUMMY_TEXT[vr]
        elif vr in {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}:
            elem.value = b""
        else:
            elem.value = "ANONYMIZED"

    def _clean(self, elem: DataElement, ctx: _Context, depth: int) -> None:
        vr = elem.VR
        if vr == "SQ":
            self._recurse(elem, ctx, depth)
        elif vr in ("DA", "DT"):
            if self.options.retain_long_modified_dates:
                elem.value = _shift(elem.value, vr, self.date_offset_days(ctx.patient_key))
            else:
                elem.value = None
        elif vr == "TM":
            if not self.options.retain_long_modified_dates:
                elem.value = None
        elif vr == "UI":
            self._map_uids(elem, ctx, keep_registered=True)
        elif vr in _CLEANABLE_VRS and elem.value is not None and ctx.scrub is not None:
            pattern = ctx.scrub
            if _is_multi(elem.value):
                elem.value = [pattern.sub("", str(v)) for v in elem.value]
            else:
                elem.value = pattern.sub("", str(elem.value))

    def _mark(self, ds: Dataset) -> None:
        chosen = [attr for attr in _OPTION_CODE if getattr(self.options, attr)]
        code_list = [_PROFILE_CODE, *(_OPTION_CODE[a] for a in chosen)]
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = [c.meaning[:64] for c in code_list]
        items = []
        for c in code_list:
            item = Dataset()
            item.CodeValue = c.value
            item.CodingSchemeDesignator = c.scheme_designator
            item.CodeMeaning = c.meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = (
            "MODIFIED" if self.options.retain_long_modified_dates else "REMOVED"
        )

    @staticmethod
    def _file_meta(ds: Dataset, original: FileMetaDataset | None) -> FileMetaDataset:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ts = original.get("TransferSyntaxUID") if original is not None else None
        meta.TransferSyntaxUID = UID(str(ts or ExplicitVRLittleEndian))
        return meta


def _is_multi(value: Any) -> bool:
    return isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"


def _shift_one(text: str, vr: str, days: int) -> str | None:
    text = text.strip()
    if len(text) < 8:
        return None
    try:
        day = dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None
    shifted = day + dt.timedelta(days=days)
    if shifted.year < 1:
        return None
    new = shifted.strftime("%Y%m%d")
    return new if vr == "DA" else new + text[8:]


def _shift(value: Any, vr: str, days: int) -> Any:
    if value is None or value == "":
        return value
    values = list(value) if _is_multi(value) else [value]
    shifted = [_shift_one(str(v), vr, days) for v in values]
    if any(s is None for s in shifted):
        return None
    return shifted if len(shifted) > 1 else shifted[0]


# --------------------------------------------------------------------------------------------
# Zip export
# --------------------------------------------------------------------------------------------


def write_zip(
    results: Iterable[DeidResult], fileobj: IO[bytes], *, exclude_burned_in: bool = False
) -> dict[str, Any]:
    """Write a zip of Part-10 files and manifest.json to ``fileobj``; return the manifest.

    Results are consumed one by one (a generator keeps memory to one instance) and
    ``fileobj`` may be unseekable (an HTTP response stream). Paths are built from the new
    UIDs only; the manifest holds no identifying data: the profile and options, the table's
    source, and per file its new UIDs, SOP class and burned-in flag.
    """
    files: list[dict[str, Any]] = []
    excluded = 0
    options: dict[str, list[str]] | None = None
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for result in results:
            ds = result.dataset
            if exclude_burned_in and result.burned_in_flag:
                excluded += 1
                continue
            study, series, sop = (
                str(ds.StudyInstanceUID),
                str(ds.SeriesInstanceUID),
                str(ds.SOPInstanceUID),
            )
            path = f"{study}/{series}/{sop}.dcm"
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            with zf.open(path, "w", force_zip64=buf.tell() > 0x7FFFFFFF) as out:
                out.write(buf.getbuffer())
            del buf
            files.append(
                {
                    "path": path,
                    "sop_class_uid": str(ds.SOPClassUID),
                    "study_instance_uid": study,
                    "series_instance_uid": series,
                    "sop_instance_uid": sop,
                    "burned_in_flag": result.burned_in_flag,
                }
            )
            if options is None:
                options = {
                    "methods": list(ds.DeidentificationMethod),
                    "codes": [str(i.CodeValue) for i in ds.DeidentificationMethodCodeSequence],
                }
        manifest = {
            "format": "secretum-deid-export/1",
            "profile": "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile",
            "table_source": f"{e11_table.SOURCE}@{e11_table.SOURCE_COMMIT}",
            "standard_revision": e11_table.STANDARD_REVISION,
            "deidentification": options,
            "instances": len(files),
            "excluded_burned_in": excluded,
            "files": files,
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
    return manifest
