"""Benchmark of file encryption (:mod:`secretum.crypto.streaming`).

Figures, all measured in this run (best of 3):

* encrypt / decrypt throughput of ``encrypt_stream`` / ``decrypt_stream`` (in-memory source,
  null sink) against raw ``AESGCM.encrypt`` / ``AESGCM.decrypt`` applied to the same 1 MiB
  segments with the same nonces: target ratio >= 0.8 both ways;
* the same throughputs against Tink's own Python streaming AEAD on the same data and key,
  reported (no longer a target: Tink's Python wrapper is no peer worth beating);
* random 64 KiB range reads (a fresh :func:`decrypt_range` per request, as an HTTP range
  request does) in a file of 64 full 1 MiB segments, against raw ``AESGCM.decrypt`` of the
  one segment that covers each range. A range read also authenticates the file's last
  segment, which proves the size: this file, whose last segment is full, is the worst case
  (two segments decrypted per read; a file of one segment pays nothing extra). Target
  ratio >= 0.05 (most of the rest is copying the ciphertext out of the source);
* peak memory growth while 1 GiB is encrypted from a generator-backed reader into a pipe and
  decrypted from that pipe into a null sink, in a fresh child process so that nothing else
  pollutes the high-water mark: target < 64 MiB. The 1 GiB never exists in memory.

``quick=True`` uses 32 MiB for throughput and 128 MiB for the memory check.
Run alone with ``.venv/bin/python -m bench.bench_files [--quick]``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bench.common import Figure
from secretum.crypto.context import FileContext
from secretum.crypto.streaming import decrypt_range, decrypt_stream, encrypt_stream
from secretum.crypto.streaming_format import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    Layout,
    parse_header,
)

MiB = 1 << 20
_AD = FileContext("scan", "file-bench", "patient-bench", 1).encode()


class NullSink(io.RawIOBase):
    """A writable stream that counts and drops what it is given (optionally hashing it)."""

    def __init__(self, digest: bool = False) -> None:
        super().__init__()
        self.count = 0
        self.hash = hashlib.blake2b() if digest else None

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        n = len(b) if not isinstance(b, memoryview) else b.nbytes
        if self.hash is not None:
            self.hash.update(b)
        self.count += n
        return n


class PatternReader(io.RawIOBase):
    """A readable stream of ``size`` bytes repeating a 1 MiB block: never materialised."""

    def __init__(self, size: int, block: bytes) -> None:
        super().__init__()
        self.remaining = size
        self.block = block
        self.offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = min(len(view), self.remaining, len(self.block) - self.offset)
        view[:n] = memoryview(self.block)[self.offset : self.offset + n]
        self.offset = (self.offset + n) % len(self.block)
        self.remaining -= n
        return n


def _best_of(runs: int, fns: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best time of ``runs`` runs of each function, interleaved so noise hits them all alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _segments(ciphertext: bytes, layout: Layout) -> list[tuple[bytes, memoryview]]:
    """The (nonce, segment) pairs of a ciphertext, as raw AESGCM would see them."""
    salt, prefix = parse_header(ciphertext[:HEADER_SIZE])
    del salt
    view = memoryview(ciphertext)
    count = layout.segment_count(layout.plaintext_size(len(ciphertext)))
    out = []
    for i in range(count):
        start = layout.ct_start(i)
        end = min((i + 1) * layout.segment_size, len(ciphertext))
        nonce = prefix + i.to_bytes(4, "big") + bytes((int(i == count - 1),))
        out.append((nonce, view[start:end]))
    return out


def _tink_primitive(key: bytes) -> Any:
    import tink
    from tink import secret_key_access, streaming_aead
    from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

    streaming_aead.register()
    proto_key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(version=0, key_value=key)
    proto_key.params.ciphertext_segment_size = DEFAULT_SEGMENT_SIZE
    proto_key.params.derived_key_size = 32
    proto_key.params.hkdf_hash_type = common_pb2.SHA256
    keyset = tink_pb2.Keyset(primary_key_id=1)
    entry = keyset.key.add()
    entry.key_data.type_url = "type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey"
    entry.key_data.value = proto_key.SerializeToString()
    entry.key_data.key_material_type = tink_pb2.KeyData.SYMMETRIC
    entry.status = tink_pb2.ENABLED
    entry.key_id = 1
    entry.output_prefix_type = tink_pb2.RAW
    handle = tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
    return handle.primitive(streaming_aead.StreamingAead)


def _throughput(size: int, runs: int = 3) -> list[Figure]:
    key = os.urandom(32)
    data = os.urandom(size)
    layout = Layout(DEFAULT_SEGMENT_SIZE)
    mib = size / MiB

    sink = io.BytesIO()
    encrypt_stream(key, io.BytesIO(data), sink, _AD)
    ciphertext = sink.getvalue()
    del sink

    def ours_encrypt() -> None:
        encrypt_stream(key, io.BytesIO(data), cast(BinaryIO, NullSink()), _AD)

    def ours_decrypt() -> None:
        decrypt_stream(key, io.BytesIO(ciphertext), cast(BinaryIO, NullSink()), _AD)

    # Raw AESGCM on the very same segments and nonces, with the per-file key: no I/O at all.
    salt, _ = parse_header(ciphertext[:HEADER_SIZE])
    file_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_AD).derive(key)
    aead = AESGCM(file_key)  # created once, like the streaming code does
    segments = _segments(ciphertext, layout)
    data_view = memoryview(data)
    plain = [
        data_view[layout.pt_start(i) : layout.pt_start(i) + len(seg) - 16]
        for i, (_, seg) in enumerate(segments)
    ]

    def raw_encrypt() -> None:
        for (nonce, _), pt in zip(segments, plain, strict=True):
            aead.encrypt(nonce, pt, None)

    def raw_decrypt() -> None:
        for nonce, seg in segments:
            aead.decrypt(nonce, seg, None)

    tink_sa = _tink_primitive(key)

    class _Closing(NullSink):
        def close(self) -> None:  # Tink closes its destination: keep the sink usable
            pass

    def tink_encrypt() -> None:
        with tink_sa.new_encrypting_stream(_Closing(), _AD) as stream:
            for start in range(0, size, MiB):
                stream.write(data_view[start : start + MiB])

    def tink_decrypt() -> None:
        with tink_sa.new_decrypting_stream(io.BytesIO(ciphertext), _AD) as stream:
            buf = bytearray(MiB)
            while stream.readinto(buf):
                pass

    seconds = _best_of(
        runs,
        {
            "ours_enc": ours_encrypt,
            "raw_enc": raw_encrypt,
            "tink_enc": tink_encrypt,
            "ours_dec": ours_decrypt,
            "raw_dec": raw_decrypt,
            "tink_dec": tink_decrypt,
        },
    )
    t = {name: mib / secs for name, secs in seconds.items()}
    label = f"{size // MiB} MiB, 1 MiB segments"
    figures = []
    for op, short in (("encrypt", "enc"), ("decrypt", "dec")):
        ours, raw, tnk = t[f"ours_{short}"], t[f"raw_{short}"], t[f"tink_{short}"]
        figures.append(
            Figure(
                name=f"file {op} {label}",
                value=ours,
                unit="MiB/s",
                baseline_name=f"raw AESGCM.{op} on the same 1 MiB buffers",
                baseline_value=raw,
                target="ratio >= 0.8",
                passed=ours >= 0.8 * raw,
            )
        )
        figures.append(
            Figure(
                name=f"file {op} {label} vs Tink",
                value=ours,
                unit="MiB/s",
                baseline_name=f"Tink Python streaming AEAD {op}",
                baseline_value=tnk,
                target="reported",
                passed=None,
            )
        )
    return figures


def _ranges(size: int, count: int = 200, runs: int = 3) -> list[Figure]:
    """Range reads per second, each through its own reader (header, key derivation and all)."""
    key = os.urandom(32)
    layout = Layout(DEFAULT_SEGMENT_SIZE)
    size = (size // MiB) * layout.pt_segment - HEADER_SIZE  # the last segment is a full one
    sink = io.BytesIO()
    encrypt_stream(key, io.BytesIO(os.urandom(size)), sink, _AD)
    ciphertext = sink.getvalue()
    src = io.BytesIO(ciphertext)
    span = 64 * 1024
    rng = random.Random(8)
    offsets = [rng.randrange(0, size - span) for _ in range(count)]
    # Raw: decrypt the segment holding each range's first byte, nothing else.
    salt, _ = parse_header(ciphertext[:HEADER_SIZE])
    aead = AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_AD).derive(key))
    segments = _segments(ciphertext, layout)

    def ours() -> None:
        for offset in offsets:
            decrypt_range(key, src, _AD, offset, span)

    def raw() -> None:
        for offset in offsets:
            nonce, seg = segments[layout.segment_of(offset)]
            aead.decrypt(nonce, seg, None)

    seconds = _best_of(runs, {"ours": ours, "raw": raw})
    rate = {name: count / secs for name, secs in seconds.items()}
    return [
        Figure(
            name=f"file range read 64 KiB, {len(segments)} full segments",
            value=rate["ours"],
            unit="/s",
            baseline_name="raw AESGCM.decrypt of the covering 1 MiB segment",
            baseline_value=rate["raw"],
            target="ratio >= 0.05",
            passed=rate["ours"] >= 0.05 * rate["raw"],
        )
    ]


def _status_kib(field: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` figure of this process from ``/proc/self/status`` (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _maxrss_kib() -> int:
    """Peak RSS by getrusage. On Linux it includes the parent's RSS at fork: fallback only."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


def memory_child(size: int) -> dict[str, float]:
    """Encrypt ``size`` pattern bytes into a pipe and decrypt them from it; report memory."""
    key = os.urandom(32)
    block = os.urandom(MiB)
    expected = hashlib.blake2b()
    for start in range(0, size, MiB):
        expected.update(block[: min(MiB, size - start)])
    rfd, wfd = os.pipe()
    sink = NullSink(digest=True)
    tracemalloc.start()
    precise = _reset_peak_rss()
    base_rss = (_status_kib("VmRSS") if precise else None) or _maxrss_kib()
    base_traced = tracemalloc.get_traced_memory()[0]
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with open(wfd, "wb", buffering=0) as w:
                encrypt_stream(key, cast(BinaryIO, PatternReader(size, block)), w, _AD)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    with open(rfd, "rb", buffering=0) as r:
        written = decrypt_stream(key, r, cast(BinaryIO, sink), _AD)
    producer.join()
    peak_traced = tracemalloc.get_traced_memory()[1] - base_traced
    tracemalloc.stop()
    if errors:
        raise errors[0]
    assert sink.hash is not None
    if written != size or sink.hash.digest() != expected.digest():
        raise AssertionError("memory check: the round trip did not give the plaintext back")
    peak_rss = (_status_kib("VmHWM") if precise else None) or _maxrss_kib()
    return {
        "rss_growth_mib": max(0, peak_rss - base_rss) / 1024,
        "traced_peak_mib": peak_traced / MiB,
    }


def _memory(size: int) -> list[Figure]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_files", "--memory-child", str(size)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],  # so that ``bench`` is importable
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    label = f"{size // MiB} MiB" if size < 1 << 30 else f"{size >> 30} GiB"
    return [
        Figure(
            name=f"peak RSS growth, {label} encrypt+decrypt streamed",
            value=got["rss_growth_mib"],
            unit="MiB",
            target="< 64 MiB",
            passed=got["rss_growth_mib"] < 64,
        ),
        Figure(
            name=f"peak traced allocations, {label} encrypt+decrypt streamed",
            value=got["traced_peak_mib"],
            unit="MiB",
            target="< 64 MiB",
            passed=got["traced_peak_mib"] < 64,
        ),
    ]


def run(quick: bool = False) -> list[Figure]:
    """Measure the figures: 256 MiB and a 1 GiB memory check, or 32 / 128 MiB if ``quick``."""
    figures = _throughput(32 * MiB if quick else 256 * MiB)
    figures += _ranges(64 * MiB)
    figures += _memory(128 * MiB if quick else 1 << 30)
    return figures


def _print(figures: list[Figure]) -> None:
    print(f"{'figure':<58} {'value':>12} {'baseline':>12} {'ratio':>7}  {'target':<15} ok")
    for f in figures:
        base = f"{f.baseline_value:,.1f}" if f.baseline_value is not None else "-"
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "-"
        print(
            f"{f.name:<58} {f.value:>8,.1f} {f.unit:<3} {base:>12} {ratio:>7}  "
            f"{f.target:<15} {'yes' if f.passed else 'NO'}"
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        print(json.dumps(memory_child(int(sys.argv[2]))))
    else:
        _print(run(quick="--quick" in sys.argv[1:]))
