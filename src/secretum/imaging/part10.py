"""Validation of incoming DICOM Part-10 instances (issue 10, section 4: bad input).

What to call
------------
``parse_instance(data, max_bytes=...)`` with the raw bytes of one Part-10 file (one part of a
STOW-RS multipart body, or a C-STORE data set written as a file) returns a
:class:`ParsedInstance` or raises :class:`InvalidInstance`. It raises nothing else: every error
of the parser below (pydicom, zlib, struct, recursion) is wrapped, so a hostile body can never
take the server down nor leave a half-written instance behind (the caller stores only what
``parse_instance`` returned).

``InvalidInstance.reason`` is a stable machine code (:class:`Reason`); ``FAILURE_STATUSES``
maps each code to the DICOMweb Failure Reason (0008,1197) of PS3.18 Table I.2-2 and to the
DIMSE C-STORE status of PS3.4 Table B.2-1 / PS3.7 Annex C; ``err.dicomweb_failure_reason`` and
``err.dimse_status`` give them directly.

``ParsedInstance.digest`` (= ``content_digest(ds)``) is a SHA-256 of the data set's canonical
encoding, without the file meta. When a SOP Instance UID that is already stored arrives again,
call ``check_resend(stored_digest, parsed)``: same content is an idempotent resend (store
nothing, answer success); other content raises ``InvalidInstance(Reason.CONFLICT)``.

Why a structural walk before pydicom
------------------------------------
pydicom is built to read damaged files leniently: a value cut short is returned short, a data
set cut in the middle of an element header just ends, a deflated body is inflated with no size
limit. For an archive that must store "nothing half stored", that is the wrong default. So the
bytes are first walked element by element (tag, VR, length only, no value decoding) to prove
that every defined length fits, every undefined-length sequence, item and encapsulated pixel
data is closed by its delimiter, nesting is bounded, and a deflated body inflates completely
within the size limit. Only then does pydicom parse the values, and every element is
converted so that a value pydicom cannot decode fails here rather than later in a viewer.
"""

from __future__ import annotations

import enum
import io
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pydicom
from cryptography.hazmat.primitives import hashes
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    RLELossless,
)
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

__all__ = [
    "FAILURE_STATUSES",
    "NATIVE_TRANSFER_SYNTAXES",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "InvalidInstance",
    "ParsedInstance",
    "Reason",
    "check_resend",
    "content_digest",
    "is_storage_sop_class",
    "is_valid_uid",
    "parse_instance",
    "same_content",
]


class Reason(enum.StrEnum):
    """Stable machine codes for a refused instance (logged, counted, mapped to statuses)."""

    TOO_LARGE = "too_large"
    NOT_PART10 = "not_part10"  # no 128-byte preamble + "DICM", or no file meta group
    MALFORMED = "malformed"  # element structure or values that cannot be decoded
    TRUNCATED = "truncated"  # a length or a delimiter points past the end of the data
    UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"
    UNSUPPORTED_SOP_CLASS = "unsupported_sop_class"
    MISSING_UID = "missing_uid"
    INVALID_UID = "invalid_uid"
    META_MISMATCH = "meta_mismatch"  # file meta UIDs disagree with the data set
    MISSING_PIXEL_DATA = "missing_pixel_data"  # image attributes but no pixel data (cut?)
    CONFLICT = "conflict"  # SOP Instance UID already stored with other content
    PROCESSING_FAILURE = "processing_failure"


@dataclass(frozen=True)
class FailureStatus:
    """The two protocol answers for one Reason."""

    dicomweb_failure_reason: int  # Failure Reason (0008,1197), PS3.18 Table I.2-2
    dimse_status: int  # C-STORE response Status (0000,0900)


# PS3.18 Table I.2-2 lists A7xx out of resources, A9xx data set does not match SOP class, Cxxx
# cannot understand, C122 transfer syntax not supported, 0110 processing failure, 0122 SOP class
# not supported, and allows additional codes: 0111 (Duplicate SOP Instance, PS3.7 C.5) for a
# conflicting resend. DIMSE: PS3.4 Table B.2-1 (A7xx, A9xx, Cxxx) and the general statuses of
# PS3.7 Annex C (0110, 0111, 0117 invalid SOP instance, 0122 SOP class not supported). A C-STORE
# transfer syntax is negotiated per presentation context, so if a bad one still arrives it is
# "cannot understand" (C000).
FAILURE_STATUSES: dict[Reason, FailureStatus] = {
    Reason.TOO_LARGE: FailureStatus(0xA700, 0xA700),
    Reason.NOT_PART10: FailureStatus(0xC000, 0xC000),
    Reason.MALFORMED: FailureStatus(0xC000, 0xC000),
    Reason.TRUNCATED: FailureStatus(0xC000, 0xC000),
    Reason.UNSUPPORTED_TRANSFER_SYNTAX: FailureStatus(0xC122, 0xC000),
    Reason.UNSUPPORTED_SOP_CLASS: FailureStatus(0x0122, 0x0122),
    Reason.MISSING_UID: FailureStatus(0xA900, 0xA900),
    Reason.INVALID_UID: FailureStatus(0xA900, 0x0117),
    Reason.META_MISMATCH: FailureStatus(0xA900, 0xA900),
    Reason.MISSING_PIXEL_DATA: FailureStatus(0xA900, 0xA900),
    Reason.CONFLICT: FailureStatus(0x0111, 0x0111),
    Reason.PROCESSING_FAILURE: FailureStatus(0x0110, 0x0110),
}


class InvalidInstance(Exception):
    """The one exception ``parse_instance`` raises. The message never quotes patient data."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message

    @property
    def dicomweb_failure_reason(self) -> int:
        return FAILURE_STATUSES[self.reason].dicomweb_failure_reason

    @property
    def dimse_status(self) -> int:
        return FAILURE_STATUSES[self.reason].dimse_status


# Stored as received. Only the native ones (uncompressed) give pixel access without a codec.
NATIVE_TRANSFER_SYNTAXES: frozenset[str] = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
)
SUPPORTED_TRANSFER_SYNTAXES: frozenset[str] = NATIVE_TRANSFER_SYNTAXES | frozenset(
    {
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        JPEGLossless,
        JPEGLosslessSV1,
        JPEG2000Lossless,
        JPEG2000,
        RLELossless,
    }
)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_MAX_DEPTH = 32  # nested sequences deeper than this are refused (real data: < 10)


def is_valid_uid(value: object) -> bool:
    """PS3.5 9.1: at most 64 chars, digits and dots, no empty or zero-led component."""
    return isinstance(value, str) and 0 < len(value) <= 64 and _UID_RE.match(value) is not None


def is_storage_sop_class(uid: str) -> bool:
    """True for the Storage SOP classes pynetdicom knows (its Storage Service Class table)."""
    return uid_to_service_class(uid) is StorageServiceClass


@dataclass(frozen=True)
class ParsedInstance:
    """A validated instance: store ``data`` as received, index by the UIDs below."""

    data: bytes
    dataset: Dataset
    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str | None
    issuer_of_patient_id: str | None
    #: the data set's canonical encoding (see :func:`content_digest`), in pieces: the values
    #: of binary elements (pixel data) are the data set's own bytes, not copies
    canonical: tuple[bytes, ...] = field(repr=False)

    @cached_property
    def digest(self) -> bytes:
        """``content_digest(dataset)``, hashed on first use (a writer thread of the archive:
        the encoding was proven while parsing, the hashing of the bytes can run in parallel)."""
        return _sha256(self.canonical)

    @property
    def is_native(self) -> bool:
        """Uncompressed pixel data (pixel access without a codec)."""
        return self.transfer_syntax_uid in NATIVE_TRANSFER_SYNTAXES


# --------------------------------------------------------------------------------------------
# Structural walk
# --------------------------------------------------------------------------------------------

_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_DELIM = 0xFFFEE00D
_SEQ_DELIM = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
)
_TAG_LEN = struct.Struct("<HHL")
_TAG_VR_LEN16 = struct.Struct("<HH2sH")
_LEN32 = struct.Struct("<L")
#: VRs whose value is bytes, written as they are (even length: no padding).
_BINARY_VRS = frozenset({"OB", "OW", "OB or OW", "UN"})


class _Walker:
    """Checks the element structure of a little-endian data set without decoding values."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf

    def _need(self, pos: int, n: int, end: int) -> None:
        if pos + n > end:
            raise InvalidInstance(Reason.TRUNCATED, f"data ends inside an element at {pos}")

    def header(self, pos: int, end: int, explicit: bool) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None, value length, header size) of the element at pos."""
        self._need(pos, 8, end)
        group, elem, length = _TAG_LEN.unpack_from(self.buf, pos)
        tag = (group << 16) | elem
        if not explicit or group == 0xFFFE:
            return tag, None, length, 8
        _, _, vr, short_len = _TAG_VR_LEN16.unpack_from(self.buf, pos)
        if vr in _LONG_VRS:
            self._need(pos, 12, end)
            return tag, vr, _LEN32.unpack_from(self.buf, pos + 8)[0], 12
        if not (vr.isalpha() and vr.isupper()):
            raise InvalidInstance(Reason.MALFORMED, f"invalid VR at {pos}")
        return tag, vr, short_len, 8

    def dataset(self, pos: int, end: int, explicit: bool, depth: int, item: bool) -> int:
        """Walk elements from pos; an undefined-length item ends at its delimiter."""
        if depth > _MAX_DEPTH:
            raise InvalidInstance(Reason.MALFORMED, "sequences nested too deep")
        while pos < end:
            tag, vr, length, hdr = self.header(pos, end, explicit)
            if tag == _ITEM_DELIM:
                if item:
                    return pos + 8
                raise InvalidInstance(Reason.MALFORMED, f"stray item delimiter at {pos}")
            if tag in (_ITEM, _SEQ_DELIM):
                raise InvalidInstance(Reason.MALFORMED, f"stray item tag at {pos}")
            pos += hdr
            if length == _UNDEFINED:
                if tag == _PIXEL_DATA and vr in (None, b"OB", b"OW"):
                    pos = self.fragments(pos, end)
                elif vr in (None, b"SQ", b"UN"):
                    # UN with undefined length holds an implicit VR little endian sequence.
                    inner = explicit and vr == b"SQ"
                    pos = self.sequence(pos, end, inner, depth + 1, defined=False)
                else:
                    raise InvalidInstance(Reason.MALFORMED, f"undefined length on VR {vr!r}")
            else:
                self._need(pos, length, end)
                if vr == b"SQ":
                    self.sequence(pos, pos + length, explicit, depth + 1, defined=True)
                pos += length
        if item:
            raise InvalidInstance(Reason.TRUNCATED, "item delimiter missing")
        return pos

    def sequence(self, pos: int, end: int, explicit: bool, depth: int, defined: bool) -> int:
        while True:
            if defined and pos == end:
                return pos
            self._need(pos, 8, end)
            tag, _, length, _ = self.header(pos, end, False)
            pos += 8
            if tag == _SEQ_DELIM and not defined:
                return pos
            if tag != _ITEM:
                raise InvalidInstance(Reason.MALFORMED, f"expected an item at {pos - 8}")
            if length == _UNDEFINED:
                pos = self.dataset(pos, end, explicit, depth, item=True)
            else:
                self._need(pos, length, end)
                self.dataset(pos, pos + length, explicit, depth, item=False)
                pos += length

    def fragments(self, pos: int, end: int) -> int:
        while True:
            tag, _, length, _ = self.header(pos, end, False)
            pos += 8
            if tag == _SEQ_DELIM:
                return pos
            if tag != _ITEM or length == _UNDEFINED:
                raise InvalidInstance(Reason.MALFORMED, "bad encapsulated pixel data")
            self._need(pos, length, end)
            pos += length


def _walk_file(data: bytes, max_bytes: int) -> str:
    """Structural check of a whole Part-10 file; returns its Transfer Syntax UID."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise InvalidInstance(Reason.NOT_PART10, "no 128-byte preamble followed by DICM")
    walker = _Walker(data)
    pos, end = 132, len(data)
    transfer_syntax: str | None = None
    while pos + 2 <= end and data[pos : pos + 2] == b"\x02\x00":  # group 0002 only
        tag, _, length, hdr = walker.header(pos, end, explicit=True)
        if length == _UNDEFINED:
            raise InvalidInstance(Reason.MALFORMED, "undefined length in file meta")
        walker._need(pos + hdr, length, end)
        if tag == 0x00020010:
            raw = data[pos + hdr : pos + hdr + length]
            transfer_syntax = raw.rstrip(b"\x00 ").decode("ascii", "replace")
        pos += hdr + length
    if pos == 132:
        raise InvalidInstance(Reason.NOT_PART10, "file meta information group missing")
    if transfer_syntax is None:
        raise InvalidInstance(Reason.NOT_PART10, "file meta has no Transfer Syntax UID")
    if transfer_syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        raise InvalidInstance(
            Reason.UNSUPPORTED_TRANSFER_SYNTAX, f"transfer syntax {transfer_syntax[:64]}"
        )
    body = data[pos:]
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        body = _inflate(body, limit=max_bytes)
    explicit = transfer_syntax != ImplicitVRLittleEndian
    _Walker(body).dataset(0, len(body), explicit, depth=0, item=False)
    return transfer_syntax


def _inflate(body: bytes, *, limit: int) -> bytes:
    """Inflate a deflated data set, refusing a deflate bomb (more than ``limit`` bytes)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInstance(Reason.MALFORMED, "deflated data set cannot be inflated") from exc
    if len(out) > limit:
        raise InvalidInstance(Reason.TOO_LARGE, f"inflated data set exceeds {limit} bytes")
    if not inflater.eof:
        raise InvalidInstance(Reason.TRUNCATED, "deflated data set is cut short")
    return out


# --------------------------------------------------------------------------------------------
# Parsing and checks
# --------------------------------------------------------------------------------------------


def _touch_all(ds: Dataset) -> None:
    """Convert every raw element (recursively) so undecodable values fail now."""
    for elem in ds.iterall():
        _ = elem.value


def _read(data: bytes) -> Dataset:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=False)
        _touch_all(ds.file_meta)  # an unknown VR in the file meta fails here, not later
        _touch_all(ds)
    except InvalidInstance:
        raise
    except Exception as exc:  # pydicom raises many kinds; none may escape
        raise InvalidInstance(
            Reason.MALFORMED, f"data set cannot be decoded ({type(exc).__name__})"
        ) from exc
    return ds


def _uid(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None or value == "":
        raise InvalidInstance(Reason.MISSING_UID, f"{keyword} missing or empty")
    text = str(value) if isinstance(value, str) else None
    if not is_valid_uid(text):
        raise InvalidInstance(Reason.INVALID_UID, f"{keyword} is not a valid UID")
    assert text is not None
    return text


def _optional_text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_instance(data: bytes, *, max_bytes: int) -> ParsedInstance:
    """Validate one Part-10 file and return it parsed; raise InvalidInstance on any defect."""
    if len(data) > max_bytes:
        raise InvalidInstance(Reason.TOO_LARGE, f"instance exceeds {max_bytes} bytes")
    try:
        transfer_syntax = _walk_file(data, max_bytes)
        ds = _read(data)
        return _check(data, ds, transfer_syntax)
    except InvalidInstance:
        raise
    except Exception as exc:  # a defect of ours must still answer a status, not crash
        raise InvalidInstance(
            Reason.PROCESSING_FAILURE, f"unexpected {type(exc).__name__}"
        ) from exc


def _check(data: bytes, ds: Dataset, transfer_syntax: str) -> ParsedInstance:
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise InvalidInstance(Reason.NOT_PART10, "file meta information missing")
    if str(meta.TransferSyntaxUID) != transfer_syntax:
        raise InvalidInstance(Reason.MALFORMED, "transfer syntax read twice differently")
    sop_class = _uid(ds, "SOPClassUID")
    sop_instance = _uid(ds, "SOPInstanceUID")
    study = _uid(ds, "StudyInstanceUID")
    series = _uid(ds, "SeriesInstanceUID")
    meta_class = _uid(meta, "MediaStorageSOPClassUID")
    meta_instance = _uid(meta, "MediaStorageSOPInstanceUID")
    if meta_instance != sop_instance:
        raise InvalidInstance(
            Reason.META_MISMATCH, "MediaStorageSOPInstanceUID differs from SOPInstanceUID"
        )
    if meta_class != sop_class:
        raise InvalidInstance(
            Reason.META_MISMATCH, "MediaStorageSOPClassUID differs from SOPClassUID"
        )
    if not is_storage_sop_class(sop_class):
        raise InvalidInstance(Reason.UNSUPPORTED_SOP_CLASS, f"SOP class {sop_class}")
    # A file cut exactly between two elements is structurally sound. Pixel Data is the last
    # element of an image, so for image SOP classes such a cut shows as missing pixels. (For
    # other objects, a cut on an element boundary can only be seen by the transport: the
    # multipart boundary or the last-fragment flag of the DIMSE PDV, checked by the caller.)
    is_image = "Image Storage" in UID(sop_class).name
    if (is_image or "Rows" in ds) and not any(k in ds for k in _PIXEL_KEYWORDS):
        raise InvalidInstance(Reason.MISSING_PIXEL_DATA, "image without pixel data")
    try:
        canonical = _canonical(ds)
    except Exception as exc:
        raise InvalidInstance(
            Reason.MALFORMED, f"data set cannot be re-encoded ({type(exc).__name__})"
        ) from exc
    return ParsedInstance(
        data=data,
        dataset=ds,
        transfer_syntax_uid=transfer_syntax,
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_instance_uid=study,
        series_instance_uid=series,
        patient_id=_optional_text(ds, "PatientID"),
        issuer_of_patient_id=_optional_text(ds, "IssuerOfPatientID"),
        canonical=canonical,
    )


# --------------------------------------------------------------------------------------------
# Content digest (resend detection)
# --------------------------------------------------------------------------------------------


def _encode_canonical(update: Callable[[bytes], Any], ds: Dataset) -> None:
    for elem in ds:
        tag = int(elem.tag)
        if (tag >> 16) == 0x0002 or (tag & 0xFFFF) == 0:
            continue  # file meta and group lengths are transport details
        if elem.VR == "SQ":
            update(struct.pack("<LL", tag, len(elem.value)) + b"SQ")
            for item in elem.value:
                update(b"\xfe\xff\x00\xe0")
                _encode_canonical(update, item)
                update(b"\xfe\xff\x0d\xe0")
            continue
        # Implicit VR: the bytes do not depend on whether the sender used explicit VR, and
        # sequences are hashed item by item so defined vs undefined lengths do not matter.
        value = elem.value
        if (
            elem.VR in _BINARY_VRS
            and isinstance(value, bytes)
            and not len(value) % 2
            and not elem.is_undefined_length
        ):
            # what write_data_element writes for it (tag, 32-bit length, the bytes), hashed
            # without copying the value (pixel data: most of the instance)
            update(_TAG_LEN.pack(tag >> 16, tag & 0xFFFF, len(value)))
            update(value)
            continue
        buf = DicomBytesIO()
        buf.is_little_endian = True
        buf.is_implicit_VR = True
        write_data_element(buf, elem)
        update(buf.getvalue())


def content_digest(ds: Dataset) -> bytes:
    """SHA-256 over the data set's canonical encoding (file meta excluded).

    Canonical: elements in tag order, each encoded implicit VR little endian; sequences
    hashed item by item. So the same instance sent once explicit and once implicit VR, or
    with other sequence length encodings, has the same digest; any changed value does not.
    """
    return _sha256(_canonical(ds))


def _canonical(ds: Dataset) -> tuple[bytes, ...]:
    pieces: list[bytes] = []
    _encode_canonical(pieces.append, ds)
    return tuple(pieces)


def _sha256(pieces: tuple[bytes, ...]) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    for piece in pieces:
        h.update(piece)
    return h.finalize()


def same_content(stored_digest: bytes, new_digest: bytes) -> bool:
    """True when a resent instance carries the content already stored."""
    return stored_digest == new_digest


def check_resend(stored_digest: bytes, parsed: ParsedInstance) -> None:
    """For a SOP Instance UID already stored: return if identical (idempotent, store nothing),
    raise InvalidInstance(CONFLICT) if the content differs (the stored one is kept)."""
    if not same_content(stored_digest, parsed.digest):
        raise InvalidInstance(
            Reason.CONFLICT, "SOP Instance UID already stored with different content"
        )
