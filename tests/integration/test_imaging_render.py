"""Rendering frames (secretum.imaging.render): the PS3.3 pipeline against a plain, per-pixel
reference, over windows and pixel representations drawn by hypothesis; the archive's frames
(stored, encrypted, read back through a reader) render as their source data set does."""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless

from imaging_archive_world import (  # noqa: F401 (iw is a fixture)
    READING,
    SENDING,
    ImagingWorld,
    imaging_world,
)
from imaging_data import to_bytes
from imaging_phantom import make_phantom
from secretum.imaging.render import (
    CT_PRESETS,
    BadRenderRequest,
    CannotRender,
    Format,
    PixelModule,
    VoiFunction,
    Window,
    apply_window,
    parse_viewport,
    pick_format,
    render,
    stored_values,
    thumbnail,
    to_image,
)
from secretum.imaging.viewing import frame_source

ROWS, COLS = 4, 5


def reference(x: float, w: Window) -> int:
    """PS3.3 C.11.2.1.2, one value at a time (ymin 0, ymax 255), rounded."""
    c, width = w.center, w.width
    if w.function is VoiFunction.LINEAR:
        if x <= c - 0.5 - (width - 1) / 2:
            return 0
        if x > c - 0.5 + (width - 1) / 2:
            return 255
        y = ((x - (c - 0.5)) / (width - 1) + 0.5) * 255
    elif w.function is VoiFunction.LINEAR_EXACT:
        if x <= c - width / 2:
            return 0
        if x > c + width / 2:
            return 255
        y = ((x - c) / width + 0.5) * 255
    else:
        y = 255 / (1 + math.exp(max(-700.0, min(700.0, -4 * (x - c) / width))))
    return round(min(255.0, max(0.0, y)))


@st.composite
def frames(draw: st.DrawFn) -> tuple[bytes, PixelModule, list[int]]:
    """A frame of random stored values with its module; the stored values as integers."""
    bits_allocated = draw(st.sampled_from([8, 16, 32]))
    bits_stored = draw(st.integers(1, bits_allocated))  # 32 bits: beyond the lookup table
    signed = draw(st.booleans())
    big = draw(st.booleans()) and bits_allocated > 8
    low, high = (
        (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1)
        if signed
        else (0, 2**bits_stored - 1)
    )
    values = draw(st.lists(st.integers(low, high), min_size=ROWS * COLS, max_size=ROWS * COLS))
    # bits above BitsStored: garbage the reader must mask (unsigned) or sign-extend over
    junk = (
        draw(st.integers(0, 2 ** (bits_allocated - bits_stored) - 1))
        if bits_allocated > bits_stored
        else 0
    )
    raw = []
    for v in values:  # two's complement in BitsStored bits, then whatever above them
        raw.append((v & ((1 << bits_stored) - 1)) | (junk << bits_stored))
    fmt = {8: "B", 16: "H", 32: "L"}[bits_allocated]
    data = struct.pack((">" if big else "<") + fmt * len(raw), *raw)
    module = PixelModule(
        rows=ROWS,
        columns=COLS,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        pixel_representation=int(signed),
        photometric="MONOCHROME2",
        rescale_slope=draw(st.sampled_from([1.0, 0.5, 2.0, 0.001])),
        rescale_intercept=draw(st.sampled_from([0.0, -1024.0, 100.5])),
        transfer_syntax_uid=ExplicitVRBigEndian if big else ExplicitVRLittleEndian,
    )
    return data, module, values


windows = st.builds(
    lambda c, w, f: Window(c, max(w, 1.0) if f is VoiFunction.LINEAR else w, f),
    st.floats(-5000, 5000, allow_nan=False),
    st.floats(0.01, 10000, allow_nan=False),
    st.sampled_from(list(VoiFunction)),
)


@settings(max_examples=300, deadline=None)
@given(frames(), windows)
def test_pipeline_matches_the_standard_pixel_by_pixel(
    frame: tuple[bytes, PixelModule, list[int]], window: Window
) -> None:
    data, module, values = frame
    assert stored_values(data, module).ravel().tolist() == values
    image = np.asarray(to_image(data, module, window))
    assert image.shape == (ROWS, COLS) and image.dtype == np.uint8
    expected = [
        reference(v * module.rescale_slope + module.rescale_intercept, window) for v in values
    ]
    got = image.ravel().tolist()
    # the vectorised and the scalar arithmetic may round a .5 apart: one grey level at most
    assert all(abs(a - b) <= 1 for a, b in zip(got, expected, strict=True)), (got, expected)


@settings(max_examples=100, deadline=None)
@given(frames(), windows)
def test_monochrome1_is_the_inverse_and_png_is_lossless(
    frame: tuple[bytes, PixelModule, list[int]], window: Window
) -> None:
    data, module, _ = frame
    inverted = PixelModule(**{**module.__dict__, "photometric": "MONOCHROME1"})
    m2 = np.asarray(to_image(data, module, window)).astype(int)
    m1 = np.asarray(to_image(data, inverted, window)).astype(int)
    assert (m1 == 255 - m2).all()
    png = Image.open(io.BytesIO(render(data, module, Format.PNG, window=window)))
    assert png.format == "PNG" and (np.asarray(png) == m2).all()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-3000, 3000, allow_nan=False), min_size=2, max_size=50), windows)
def test_window_is_monotonic(values: list[float], window: Window) -> None:
    ordered = np.array(sorted(values))
    out = apply_window(ordered, window).astype(int)
    assert (np.diff(out) >= 0).all()


@settings(max_examples=200)
@given(st.text(max_size=40))
def test_window_parameter_never_crashes(text: str) -> None:
    try:
        window = Window.parse(text)
    except BadRenderRequest:
        return
    assert math.isfinite(window.center) and window.width > 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("40,400", Window(40, 400)),
        ("-600,1500,linear", Window(-600, 1500)),
        ("40, 80, SIGMOID", Window(40, 80, VoiFunction.SIGMOID)),
        ("1,0.5,linear_exact", Window(1, 0.5, VoiFunction.LINEAR_EXACT)),
    ],
)
def test_window_parameter(text: str, expected: Window) -> None:
    assert Window.parse(text) == expected


@pytest.mark.parametrize("text", ["", "40", "40,0", "40,0.5", "a,b", "1,2,3,4", "nan,400", "1,inf"])
def test_bad_window_parameter(text: str) -> None:
    with pytest.raises(BadRenderRequest):
        Window.parse(text)


def test_viewport_and_formats() -> None:
    assert parse_viewport("256,128") == (256, 128)
    for bad in ("0,1", "1", "a,b", "5000,5000", "1,2,3,4,5,6"):
        with pytest.raises(BadRenderRequest):
            parse_viewport(bad)
    assert pick_format(None) is Format.PNG
    assert pick_format("image/jpeg") is Format.JPEG
    assert pick_format("image/png;q=0.5, image/jpeg") is Format.JPEG
    assert pick_format("image/webp,image/*;q=0.8", Format.JPEG) is Format.JPEG
    assert pick_format("*/*") is Format.PNG
    assert pick_format('multipart/related; type="image/jpeg"') is Format.JPEG
    assert pick_format("multipart/related; type=image/png; q=0.9") is Format.PNG
    for bad in ("image/gif", "application/dicom", "image/png;q=0", "multipart/related"):
        with pytest.raises(CannotRender) as caught:
            pick_format(bad)
        assert caught.value.status == 406


def _ct_module(**changes: object) -> PixelModule:
    base = {
        "rows": 2,
        "columns": 2,
        "bits_allocated": 16,
        "bits_stored": 12,
        "pixel_representation": 0,
        "photometric": "MONOCHROME2",
    }
    return PixelModule(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"transfer_syntax_uid": JPEGBaseline8Bit},
        {"transfer_syntax_uid": RLELossless},
        {"photometric": "PALETTE COLOR"},
        {"bits_allocated": 12},
        {"bits_allocated": 1, "bits_stored": 1},
        {"samples_per_pixel": 2},
    ],
)
def test_what_cannot_be_rendered_is_refused_not_crashed(changes: dict[str, object]) -> None:
    with pytest.raises(CannotRender) as caught:
        render(b"\x00" * 64, _ct_module(**changes))
    assert caught.value.status == 406


def test_a_short_frame_is_refused() -> None:
    with pytest.raises(CannotRender):
        render(b"\x00" * 7, _ct_module())


def test_colour_frames_both_planar_configurations() -> None:
    rgb = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3) * 10
    interleaved = PixelModule(2, 2, 8, 8, 0, "RGB", samples_per_pixel=3)
    planar = PixelModule(2, 2, 8, 8, 0, "RGB", samples_per_pixel=3, planar_configuration=1)
    a = np.asarray(to_image(rgb.tobytes(), interleaved))
    b = np.asarray(to_image(rgb.transpose(2, 0, 1).tobytes(), planar))
    assert (a == rgb).all() and (b == rgb).all()
    jpeg = Image.open(io.BytesIO(render(rgb.tobytes(), interleaved, Format.JPEG)))
    assert jpeg.format == "JPEG" and jpeg.mode == "RGB"


def test_default_window_and_range_window() -> None:
    ds = Dataset()
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored = 1, 3, 16, 16
    ds.PixelRepresentation, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = [40, 400], [400, 2000]  # several windows: the first
    data = np.array([-1000, 40, 1000], "<i2").tobytes()
    module = PixelModule.from_dataset(ds, ExplicitVRLittleEndian)
    assert module.window == Window(40, 400)
    assert np.asarray(to_image(data, module)).tolist() == [[0, 128, 255]]
    del ds.WindowCenter, ds.WindowWidth
    ranged = PixelModule.from_dataset(ds, ExplicitVRLittleEndian)
    assert ranged.window is None
    assert np.asarray(to_image(data, ranged)).tolist()[0][0] == 0
    assert np.asarray(to_image(data, ranged)).tolist()[0][2] == 255


def test_thumbnail_fits_its_box() -> None:
    module = PixelModule(64, 32, 8, 8, 0, "MONOCHROME2")
    image = Image.open(io.BytesIO(thumbnail(bytes(64 * 32), module)))
    assert image.size == (64, 128) and image.format == "JPEG"
    image = Image.open(io.BytesIO(thumbnail(bytes(64 * 32), module, Format.PNG, viewport=(16, 16))))
    assert image.size == (8, 16)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    representation=st.sampled_from([0, 1]),
    photometric=st.sampled_from(["MONOCHROME1", "MONOCHROME2"]),
    preset=st.sampled_from(sorted(CT_PRESETS)),
)
def test_archive_frames_render_as_their_source(
    iw: ImagingWorld, representation: int, photometric: str, preset: str
) -> None:
    """Store a phantom through the archive (encrypted), open it, render a frame: the same
    picture as the source data set's own pixels through the same pipeline."""
    if not hasattr(iw, "_registered"):
        iw.patient("pat-1")
        iw.register("pat-1", "SYN0001")
        iw._registered = True  # type: ignore[attr-defined]
    slices = make_phantom(
        3, 32, pixel_representation=representation, photometric=photometric, issuer="HOPITAL-NORD"
    )
    results = iw.archive.ingest(SENDING, (to_bytes(ds) for ds in slices))
    assert all(r.ok for r in results)
    ds = slices[1]
    reader = iw.archive.open_series(READING, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
    source = frame_source(reader, str(ds.SOPInstanceUID), 1)
    assert source.pixels == bytes(ds.PixelData)
    assert source.module == PixelModule.from_dataset(ds, ExplicitVRLittleEndian)
    window = CT_PRESETS[preset]
    got = np.asarray(to_image(source.pixels, source.module, window))
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    want = np.vectorize(lambda x: reference(x, window))(hu)
    if photometric == "MONOCHROME1":
        want = 255 - want
    assert (np.abs(got.astype(int) - want) <= 1).all()
    assert len(set(got.ravel().tolist())) > 1  # a phantom, not a flat field
