"""Memory stays flat during a large ingest: instances stream through one at a time (parsed,
encrypted into their blob, then dropped); only small index rows wait for the batch.

Measured with tracemalloc (Python allocations: the parser's copies of an instance, the index
rows; the streaming AEAD's segment buffers are fixed-size mappings). The peak while ingesting
N instances must stay within a few instances' worth, and must not grow with N. The 200 MB run
is marked ``slow``; the default run ingests 40 MB.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest
from pydicom.uid import generate_uid

from imaging_archive_world import NOW, SENDER, SENDING, TR, ImagingWorld, imaging_world  # noqa: F401
from imaging_data import make_ct, to_bytes
from secretum.imaging.archive import WRITES_IN_FLIGHT

FRAME = 512 * 512 * 2
FRAMES = 4
INSTANCE = FRAME * FRAMES  # 2 MiB of pixels per instance


def _instances(count: int) -> Iterator[bytes]:
    """``count`` distinct 2 MiB instances of one study, built one at a time."""
    ds = make_ct(1)[0]
    ds.Rows = ds.Columns = 512
    ds.NumberOfFrames = FRAMES
    ds.PixelData = bytes(range(256)) * (INSTANCE // 256)
    for i in range(count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        yield to_bytes(ds)


def _peak_during_ingest(iw: ImagingWorld, count: int) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        results = iw.archive.ingest(SENDING, _instances(count))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert len(results) == count and all(r.ok for r in results)
    return peak


def _check_flat(iw: ImagingWorld, count: int) -> None:
    if iw.engine.dialect.name != "sqlite":
        pytest.skip("memory does not depend on the database")
    iw.patient("pat-1")
    iw.register("pat-1", "SYN0001")
    small = _peak_during_ingest(iw, 4)
    large = _peak_during_ingest(iw, count)
    # a handful of copies of one instance (the received bytes, the parsed data set, the digest
    # encoder's buffer), never the request
    assert large < 8 * INSTANCE, (small, large)
    # does not grow with the request: the slack is the instances whose blob is still being
    # written while the next one is validated (how many of them a short run reaches depends on
    # timing)
    assert large < small + (1 + WRITES_IN_FLIGHT) * INSTANCE, (small, large)
    assert len(iw.blobs()) == 4 + count
    print(
        f"peak while ingesting {count} x 2 MiB: {large / 2**20:.1f} MiB ({small / 2**20:.1f} for 4)"
    )


def test_memory_stays_flat_ingesting_40_mb(iw: ImagingWorld) -> None:
    _check_flat(iw, 20)


@pytest.mark.slow
def test_memory_stays_flat_ingesting_200_mb(iw: ImagingWorld) -> None:
    _check_flat(iw, 100)
