"""Record sealing: seal + open of 1 KiB records vs raw AESGCM on the same buffers.

Both sides draw a fresh 96-bit nonce per message and authenticate associated data; Secretum's
side also builds and checks its format (version byte, key id) and binds the record's context.
Contexts are built once per record, as a read or write path does from the row it handles.
"""

from __future__ import annotations

import os
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.common import Figure
from secretum.crypto.context import RecordContext
from secretum.crypto.keys import DataKey
from secretum.crypto.records import open_sealed, seal


def _best_rate(fn: object, n: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(n)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return n / best


def run(quick: bool = False) -> list[Figure]:
    n = 20_000 if quick else 100_000
    payloads = [os.urandom(1024) for _ in range(256)]
    contexts = [RecordContext("Observation", f"obs-{i}", f"pat-{i % 17}", 1) for i in range(256)]
    aads = [c.encode() for c in contexts]
    key, _ = DataKey.generate()
    raw = AESGCM(os.urandom(32))

    def baseline(count: int) -> None:
        for i in range(count):
            j = i & 255
            nonce = os.urandom(12)
            raw.decrypt(nonce, raw.encrypt(nonce, payloads[j], aads[j]), aads[j])

    def secretum(count: int) -> None:
        for i in range(count):
            j = i & 255
            open_sealed(key, seal(key, payloads[j], contexts[j]), contexts[j])

    base = _best_rate(baseline, n)
    ours = _best_rate(secretum, n)
    return [
        Figure(
            name="record seal+open 1 KiB",
            value=ours,
            unit="records/s",
            baseline_name="raw AESGCM encrypt+decrypt",
            baseline_value=base,
            target="ratio >= 0.5",
            passed=ours / base >= 0.5,
        )
    ]


if __name__ == "__main__":
    for fig in run():
        print(fig.as_dict())
