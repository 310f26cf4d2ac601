"""Rendering a stored frame as an 8-bit image (WADO-RS rendered / thumbnail, the viewer).

A frame is what :meth:`~secretum.imaging.archive.StudyReader.read_frame` returns: its pixel
bytes as stored. :func:`render` turns it into a PNG or JPEG through the grayscale pipeline of
PS3.3 C.11 (figure C.11-1):

1. **Stored values** out of the bytes: ``BitsAllocated`` 8/16/32, little or big endian, signed
   or not (``PixelRepresentation``), the bits above ``BitsStored`` masked off (unsigned) or
   sign-extended (signed);
2. **Modality LUT**: ``RescaleSlope`` x value + ``RescaleIntercept`` (Hounsfield units for CT);
3. **VOI LUT**: a window (center, width, function ``LINEAR``, ``LINEAR_EXACT`` or ``SIGMOID``,
   PS3.3 C.11.2.1.2), from the request (``window=center,width,function`` of PS3.18 8.3.5.1.3),
   else the data set's first ``WindowCenter``/``WindowWidth``, else the frame's range;
4. **Presentation**: ``MONOCHROME1`` inverted (its minimum is white).

RGB frames (``SamplesPerPixel`` 3, either planar configuration) and ``YBR_FULL`` are shown as
colour, without a window. Only native (uncompressed) transfer syntaxes are decoded here: an
encapsulated frame (JPEG, JPEG 2000, RLE...) is refused with :class:`CannotRender` (HTTP 406:
the archive holds it and can send it as stored through WADO-RS frames; it cannot render it).
The output is scaled to fit a viewport (``viewport=vw,vh``, aspect kept) or a thumbnail box.

Nothing here reads the archive nor knows who asks: the callers have already been through the
door (one audit entry per study or series request).
"""

from __future__ import annotations

import enum
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from secretum.access.errors import Refused

#: Transfer syntaxes whose frames are raw pixels (the deflated one: the archive inflates it).
NATIVE_SYNTAXES = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
    }
)
#: Longest side of a thumbnail unless the request asks for another viewport.
THUMBNAIL_SIZE = 128
#: Largest viewport side a request may ask for (a bound on the work one request makes).
MAX_VIEWPORT = 4096
JPEG_QUALITY = 90
#: Frames whose stored values span fewer values than this go through one lookup table.
LUT_LIMIT = 1 << 17


class CannotRender(Refused):
    """This frame cannot be rendered here (compressed transfer syntax, unsupported
    photometric interpretation or pixel layout): HTTP 406, a fixed reason, never a crash."""

    status = 406
    code = "not-supported"


class BadRenderRequest(Refused):
    """A malformed rendering parameter (window, viewport, quality): HTTP 400."""

    status = 400
    code = "invalid"


class Format(enum.StrEnum):
    PNG = "image/png"
    JPEG = "image/jpeg"


class VoiFunction(enum.StrEnum):
    LINEAR = "linear"
    LINEAR_EXACT = "linear_exact"
    SIGMOID = "sigmoid"


@dataclass(frozen=True)
class Window:
    """A VOI window in modality units (Hounsfield units for CT)."""

    center: float
    width: float
    function: VoiFunction = VoiFunction.LINEAR

    def __post_init__(self) -> None:
        if not (np.isfinite(self.center) and np.isfinite(self.width)):
            raise BadRenderRequest("window values must be finite numbers")
        smallest = 1.0 if self.function is VoiFunction.LINEAR else 0.0
        if self.width < smallest or (self.width <= 0):
            raise BadRenderRequest("window width too small")

    @classmethod
    def parse(cls, text: str) -> Window:
        """``center,width[,function]`` (PS3.18 8.3.5.1.3; function case-insensitive)."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) not in (2, 3):
            raise BadRenderRequest("window is center,width[,function]")
        try:
            center, width = float(parts[0]), float(parts[1])
        except ValueError:
            raise BadRenderRequest("window values must be numbers") from None
        function = VoiFunction.LINEAR
        if len(parts) == 3:
            try:
                function = VoiFunction(parts[2].lower().replace("-", "_"))
            except ValueError:
                raise BadRenderRequest("unknown window function") from None
        return cls(center, width, function)


#: Window presets for CT (center, width in HU), as radiologists name them.
CT_PRESETS: dict[str, Window] = {
    "lung": Window(-600, 1500),
    "bone": Window(300, 1500),
    "soft-tissue": Window(40, 400),
    "brain": Window(40, 80),
}


def parse_viewport(text: str) -> tuple[int, int]:
    """``vw,vh`` of PS3.18 (the optional source rectangle is not supported: refused)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise BadRenderRequest("viewport is vw,vh")
    try:
        vw, vh = int(parts[0]), int(parts[1])
    except ValueError:
        raise BadRenderRequest("viewport values must be integers") from None
    if not (1 <= vw <= MAX_VIEWPORT and 1 <= vh <= MAX_VIEWPORT):
        raise BadRenderRequest("viewport out of range")
    return vw, vh


@dataclass(frozen=True)
class PixelModule:
    """The attributes that say how to read and show a frame (Image Pixel, Modality LUT and
    VOI LUT modules), from the data set or its DICOM JSON."""

    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str
    samples_per_pixel: int = 1
    planar_configuration: int = 0
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    window: Window | None = None
    transfer_syntax_uid: str = ExplicitVRLittleEndian

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.columns * self.samples_per_pixel * self.bits_allocated // 8

    @classmethod
    def from_dataset(cls, ds: Dataset, transfer_syntax_uid: str | None = None) -> PixelModule:
        values: dict[str, Any] = {}
        for keyword in _KEYWORDS:
            if keyword in ds and ds[keyword].value not in (None, ""):
                values[keyword] = ds[keyword].value
        if transfer_syntax_uid is None:
            meta = getattr(ds, "file_meta", None)
            transfer_syntax_uid = str(getattr(meta, "TransferSyntaxUID", ExplicitVRLittleEndian))
        return cls._build(values, transfer_syntax_uid)

    @classmethod
    def from_json(cls, attrs: Mapping[str, Any], transfer_syntax_uid: str) -> PixelModule:
        """From the DICOM JSON model of an instance (PS3.18 F.2)."""
        values: dict[str, Any] = {}
        for keyword, tag in _KEYWORDS.items():
            found = attrs.get(tag, {}).get("Value")
            if found:
                values[keyword] = found if len(found) > 1 else found[0]
        return cls._build(values, transfer_syntax_uid)

    @classmethod
    def _build(cls, v: dict[str, Any], transfer_syntax_uid: str) -> PixelModule:
        try:
            rows, columns = int(v["Rows"]), int(v["Columns"])
            bits_allocated = int(v["BitsAllocated"])
            bits_stored = int(v.get("BitsStored", bits_allocated))
            window = None
            if "WindowCenter" in v and "WindowWidth" in v:
                try:
                    window = Window(_first(v["WindowCenter"]), _first(v["WindowWidth"]))
                except (BadRenderRequest, ValueError, TypeError):
                    window = None  # a nonsensical stored window: fall back to the range
            return cls(
                rows=rows,
                columns=columns,
                bits_allocated=bits_allocated,
                bits_stored=bits_stored,
                pixel_representation=int(v.get("PixelRepresentation", 0)),
                photometric=str(v.get("PhotometricInterpretation", "MONOCHROME2")).strip(),
                samples_per_pixel=int(v.get("SamplesPerPixel", 1)),
                planar_configuration=int(v.get("PlanarConfiguration", 0)),
                rescale_slope=float(v.get("RescaleSlope", 1.0)),
                rescale_intercept=float(v.get("RescaleIntercept", 0.0)),
                window=window,
                transfer_syntax_uid=str(transfer_syntax_uid),
            )
        except (KeyError, ValueError, TypeError):
            raise CannotRender("no image pixel module") from None


_KEYWORDS = {
    "Rows": "00280010",
    "Columns": "00280011",
    "BitsAllocated": "00280100",
    "BitsStored": "00280101",
    "PixelRepresentation": "00280103",
    "PhotometricInterpretation": "00280004",
    "SamplesPerPixel": "00280002",
    "PlanarConfiguration": "00280006",
    "RescaleSlope": "00281053",
    "RescaleIntercept": "00281052",
    "WindowCenter": "00281050",
    "WindowWidth": "00281051",
}


def _first(value: Any) -> float:
    """The first of a multi-valued attribute (WindowCenter may hold several windows)."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0]
    return float(value)


def stored_values(frame: bytes, pm: PixelModule) -> NDArray[Any]:
    """The stored values of a native frame, shape (rows, columns[, samples])."""
    if pm.transfer_syntax_uid not in NATIVE_SYNTAXES:
        raise CannotRender("compressed transfer syntax: rendering not supported")
    if pm.bits_allocated not in (8, 16, 32) or not 1 <= pm.bits_stored <= pm.bits_allocated:
        raise CannotRender("unsupported bits allocated")
    if pm.samples_per_pixel not in (1, 3) or pm.rows < 1 or pm.columns < 1:
        raise CannotRender("unsupported pixel layout")
    if len(frame) < pm.frame_bytes:
        raise CannotRender("frame shorter than its pixel module")
    order = ">" if pm.transfer_syntax_uid == ExplicitVRBigEndian else "<"
    kind = "i" if pm.pixel_representation == 1 else "u"
    dtype = np.dtype(f"{order}{kind}{pm.bits_allocated // 8}")
    count = pm.rows * pm.columns * pm.samples_per_pixel
    raw = np.frombuffer(frame, dtype=dtype, count=count)
    # int32 holds every value of up to 16 bits stored (and their shifts); wider ones need int64
    bits = 64 if pm.bits_allocated == 32 else 32
    values: NDArray[np.signedinteger[Any]]
    if kind == "u":
        unsigned: NDArray[np.unsignedinteger[Any]] = raw.astype(f"u{bits // 8}")
        if pm.bits_stored < pm.bits_allocated:  # the bits above BitsStored are not the value
            unsigned = unsigned & unsigned.dtype.type((1 << pm.bits_stored) - 1)
        values = unsigned.astype(f"i{bits // 8}")
    else:
        values = raw.astype(f"i{bits // 8}")
        if pm.bits_stored < pm.bits_allocated:  # sign-extend from BitsStored
            values = (values << (bits - pm.bits_stored)) >> (bits - pm.bits_stored)
    if pm.samples_per_pixel == 1:
        return values.reshape(pm.rows, pm.columns)
    if pm.planar_configuration == 1:
        return values.reshape(3, pm.rows, pm.columns).transpose(1, 2, 0)
    return values.reshape(pm.rows, pm.columns, 3)


def modality_values(frame: bytes, pm: PixelModule) -> NDArray[np.float64]:
    """Stored values through the modality LUT (slope and intercept)."""
    return stored_values(frame, pm).astype(np.float64) * pm.rescale_slope + pm.rescale_intercept


def apply_window(values: NDArray[np.float64], window: Window) -> NDArray[np.uint8]:
    """The VOI LUT function of PS3.3 C.11.2.1.2 onto 0..255."""
    c, w = window.center, window.width
    if window.function is VoiFunction.SIGMOID:
        with np.errstate(over="ignore"):
            out = 255.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
    elif window.function is VoiFunction.LINEAR_EXACT:
        out = np.clip(((values - c) / w + 0.5) * 255.0, 0.0, 255.0)
        out = np.where(values <= c - w / 2, 0.0, np.where(values > c + w / 2, 255.0, out))
    else:  # LINEAR, with its half-unit offsets
        low, high = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
        span = (values - (c - 0.5)) / (w - 1) if w > 1 else np.zeros_like(values)
        out = np.clip((span + 0.5) * 255.0, 0.0, 255.0)
        out = np.where(values <= low, 0.0, np.where(values > high, 255.0, out))
    return np.rint(out).astype(np.uint8)


def _range_window(values: NDArray[np.float64]) -> Window:
    low, high = float(values.min()), float(values.max())
    return Window((low + high) / 2 + 0.5, max(high - low + 1, 1.0))


def to_image(frame: bytes, pm: PixelModule, window: Window | None = None) -> Image.Image:
    """The frame as an 8-bit Pillow image (grayscale ``L`` or ``RGB``)."""
    photometric = pm.photometric.upper()
    if pm.samples_per_pixel == 3:
        if photometric not in ("RGB", "YBR_FULL"):
            raise CannotRender("unsupported photometric interpretation")
        rgb = stored_values(frame, pm)
        if pm.bits_allocated > 8:
            rgb = rgb >> (pm.bits_stored - 8) if pm.bits_stored > 8 else rgb
        pixels = np.clip(rgb, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, "YCbCr" if photometric == "YBR_FULL" else "RGB")
        return image.convert("RGB")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise CannotRender("unsupported photometric interpretation")
    stored = stored_values(frame, pm)
    low, high = int(stored.min()), int(stored.max())
    if high - low < LUT_LIMIT:
        # modality and VOI LUTs as one table over the values present (what PS3.3 draws as
        # LUTs): the formula once per distinct value, then one lookup per pixel
        domain = np.arange(low, high + 1, dtype=np.float64)
        modality = domain * pm.rescale_slope + pm.rescale_intercept
        chosen = window or pm.window or _range_window(modality)
        gray = apply_window(modality, chosen)[stored - low]
    else:
        values = stored.astype(np.float64) * pm.rescale_slope + pm.rescale_intercept
        chosen = window or pm.window or _range_window(values)
        gray = apply_window(values, chosen)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return Image.fromarray(gray, "L")


def effective_window(frame: bytes, pm: PixelModule, window: Window | None = None) -> Window | None:
    """The window :func:`to_image` applies to this frame (None for colour): the one asked,
    else the data set's, else the frame's range."""
    if pm.samples_per_pixel == 3:
        return None
    return window or pm.window or _range_window(modality_values(frame, pm))


def _fit(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    scale = min(box[0] / image.width, box[1] / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR)


def encode(image: Image.Image, fmt: Format, quality: int = JPEG_QUALITY) -> bytes:
    out = io.BytesIO()
    if fmt is Format.JPEG:
        image.save(out, "JPEG", quality=quality)
    else:
        image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def render(
    frame: bytes,
    pm: PixelModule,
    fmt: Format = Format.PNG,
    *,
    window: Window | None = None,
    viewport: tuple[int, int] | None = None,
    quality: int = JPEG_QUALITY,
) -> bytes:
    """The frame as a PNG or JPEG (see the module docstring)."""
    if not 1 <= quality <= 100:
        raise BadRenderRequest("quality is 1..100")
    image = to_image(frame, pm, window)
    if viewport is not None:
        image = _fit(image, viewport)
    return encode(image, fmt, quality)


def thumbnail(
    frame: bytes,
    pm: PixelModule,
    fmt: Format = Format.JPEG,
    *,
    window: Window | None = None,
    viewport: tuple[int, int] | None = None,
) -> bytes:
    """A small rendering (fits :data:`THUMBNAIL_SIZE` unless ``viewport`` says otherwise)."""
    box = viewport or (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    return render(frame, pm, fmt, window=window, viewport=box, quality=80)


def pick_format(accept: str | None, default: Format = Format.PNG) -> Format:
    """The media type to answer ``accept`` with (PNG or JPEG); CannotRender (406) if neither
    is acceptable. ``*/*``, ``image/*`` or nothing: ``default``. ``multipart/related;
    type="image/png"`` (what DICOMweb clients send for several frames) names its part type."""
    if not accept:
        return default
    best: tuple[float, int, Format] | None = None
    for position, item in enumerate(accept.split(",")):
        kind, _, rest = item.strip().partition(";")
        kind = kind.strip().lower()
        params = {}
        for param in rest.split(";"):
            name, _, value = param.strip().partition("=")
            params[name.strip().lower()] = value.strip().strip('"').lower()
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 0.0
        if q <= 0:
            continue
        if kind == "multipart/related":
            kind = params.get("type", "")
        fmt = {
            "image/png": Format.PNG,
            "image/jpeg": Format.JPEG,
            "image/*": default,
            "*/*": default,
        }.get(kind)
        if fmt is not None and (best is None or (q, -position) > best[:2]):
            best = (q, -position, fmt)
    if best is None:
        raise CannotRender("only image/png and image/jpeg are rendered")
    return best[2]
