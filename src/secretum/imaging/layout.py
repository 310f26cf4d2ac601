"""Where the frames of a Part-10 instance lie, so one frame is read without the rest.

An instance is stored as received (the Part-10 bytes), encrypted whole with the streaming AEAD
(1 MiB segments). At ingest, :func:`pixel_layout` walks the top-level elements of the file (the
structure was already proven sound by :func:`secretum.imaging.part10.parse_instance`) and
records where the Pixel Data value starts and, for each frame, the byte ranges that hold it:

* **native** transfer syntaxes (uncompressed): frames are contiguous in Pixel Data, each
  ``Rows x Columns x SamplesPerPixel x BitsAllocated / 8`` bytes, so frame *n* is one range;
* **encapsulated** (JPEG, JPEG 2000, RLE): Pixel Data is a sequence of items, the first the
  Basic Offset Table, then the fragments. A frame is one or more fragments: from the Basic
  Offset Table when it has one offset per frame, else one fragment per frame when the counts
  agree, else (a single frame) every fragment. The layout keeps each fragment's value range.

Reading frame *n* is then one :func:`~secretum.crypto.streaming.decrypt_range` over the span
of its ranges (:meth:`PixelLayout.frame_span`), which decrypts only the segments covering it
(plus the last one, which proves the size): a 512x512x16-bit frame (512 KiB) costs at most two
1 MiB segments whatever the size of the instance. :meth:`PixelLayout.frame_from_span` cuts the
frame out of the span (dropping fragment item headers).

When no layout can be made (deflated transfer syntax, bit-packed or float pixels, fragments
that cannot be assigned to frames), :func:`pixel_layout` returns ``None`` and the archive falls
back to decrypting the instance and letting pydicom find the frame: correct, just slower.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from secretum.imaging.part10 import _Walker

_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_SEQ_DELIM = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_ITEM_HEADER = 8

#: A byte range of the plaintext: (offset, length).
Range = tuple[int, int]


@dataclass(frozen=True)
class PixelLayout:
    """Where the Pixel Data of one instance lies in its Part-10 bytes."""

    #: offset of the Pixel Data element (its tag): every byte before it is the "header"
    element_offset: int
    encapsulated: bool
    #: per frame, the value ranges of its fragments (one range for a native frame)
    frames: tuple[tuple[Range, ...], ...]

    def frame_span(self, index: int) -> Range:
        """The one range to decrypt for frame ``index`` (IndexError if there is none)."""
        if not 0 <= index < len(self.frames):
            raise IndexError("no such frame")
        parts = self.frames[index]
        start = parts[0][0]
        end = parts[-1][0] + parts[-1][1]
        return start, end - start

    def frame_from_span(self, index: int, span: bytes) -> bytes:
        """Frame ``index``'s bytes out of its decrypted span (fragment headers removed)."""
        parts = self.frames[index]
        if len(parts) == 1:
            return span
        base = parts[0][0]
        return b"".join(span[off - base : off - base + length] for off, length in parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "element": self.element_offset,
            "encapsulated": self.encapsulated,
            "frames": [[list(r) for r in parts] for parts in self.frames],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PixelLayout:
        frames = tuple(tuple((int(o), int(n)) for o, n in parts) for parts in data["frames"])
        return cls(int(data["element"]), bool(data["encapsulated"]), frames)


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def number_of_frames(ds: Dataset) -> int:
    """NumberOfFrames (1 when absent or unreadable; 0 for an instance without pixels)."""
    if "PixelData" not in ds:
        return 0
    n = _int(ds, "NumberOfFrames", 1)
    return n if n is not None and n > 0 else 1


def _find_pixel_data(data: bytes, explicit: bool) -> tuple[int, int, int] | None:
    """(element offset, value offset, value length) of the top-level Pixel Data, or None."""
    walker, end, pos = _Walker(data), len(data), 132
    while pos + 2 <= end and data[pos : pos + 2] == b"\x02\x00":  # file meta: explicit VR
        _, _, length, hdr = walker.header(pos, end, explicit=True)
        pos += hdr + length
    while pos < end:
        tag, vr, length, hdr = walker.header(pos, end, explicit)
        start = pos + hdr
        if tag == _PIXEL_DATA:
            return pos, start, length
        if tag > _PIXEL_DATA:
            return None
        if length == _UNDEFINED:  # a sequence (or UN holding one): skip it whole
            inner = explicit and vr == b"SQ"
            pos = walker.sequence(start, end, inner, 1, defined=False)
        else:
            pos = start + length
    return None


def _fragments(data: bytes, start: int) -> tuple[list[int], list[tuple[int, int, int]]]:
    """Basic Offset Table values and fragments ``(item offset, value offset, length)``."""
    pos, items = start, []
    while True:
        tag, length = struct.unpack_from("<LL", data, pos)
        tag = ((tag & 0xFFFF) << 16) | (tag >> 16)  # (group, element) read as two uint16 LE
        if tag == _SEQ_DELIM:
            break
        if tag != _ITEM:
            raise ValueError("not an item")
        items.append((pos, pos + _ITEM_HEADER, length))
        pos += _ITEM_HEADER + length
    if not items:
        raise ValueError("no offset table")
    bot_item = items[0]
    table = data[bot_item[1] : bot_item[1] + bot_item[2]]
    offsets = list(struct.unpack(f"<{len(table) // 4}L", table[: len(table) // 4 * 4]))
    return offsets, items[1:]


def _encapsulated_frames(
    data: bytes, value_offset: int, frames: int
) -> tuple[tuple[Range, ...], ...] | None:
    offsets, fragments = _fragments(data, value_offset)
    if not fragments:
        return None
    ranges = [(off, length) for _, off, length in fragments]
    if frames == 1:
        return (tuple(ranges),)
    if len(offsets) == frames and offsets[0] == 0:
        first = fragments[0][0]
        starts = {item - first: i for i, (item, _, _) in enumerate(fragments)}
        if any(o not in starts for o in offsets) or offsets != sorted(offsets):
            return None
        bounds = [starts[o] for o in offsets] + [len(fragments)]
        out = tuple(tuple(ranges[bounds[i] : bounds[i + 1]]) for i in range(frames))
        return out if all(out) else None
    if len(fragments) == frames:
        return tuple((r,) for r in ranges)
    return None


def pixel_layout(data: bytes, transfer_syntax: str, ds: Dataset) -> PixelLayout | None:
    """The layout of a validated Part-10 instance, or None when frames cannot be located."""
    if transfer_syntax == DeflatedExplicitVRLittleEndian or "PixelData" not in ds:
        return None
    try:
        found = _find_pixel_data(data, explicit=transfer_syntax != ImplicitVRLittleEndian)
        if found is None:
            return None
        element, value, length = found
        frames = number_of_frames(ds)
        if length == _UNDEFINED:
            encapsulated = _encapsulated_frames(data, value, frames)
            return None if encapsulated is None else PixelLayout(element, True, encapsulated)
        rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
        samples, bits = _int(ds, "SamplesPerPixel", 1), _int(ds, "BitsAllocated")
        if not rows or not cols or not samples or not bits or bits % 8:
            return None  # bit-packed (1-bit) frames do not start on a byte
        size = rows * cols * samples * bits // 8
        if size * frames > length:
            return None
        native = tuple(((value + i * size, size),) for i in range(frames))
        return PixelLayout(element, False, native)
    except (ValueError, IndexError, struct.error):
        return None
