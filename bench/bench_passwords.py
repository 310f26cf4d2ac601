"""The cost of a password check: Argon2id with Secretum's parameters (issue: ~50-100 ms).

Median of several verifications (:func:`secretum.identity.passwords.measure_cost`, the same
tool an operator runs to tune the parameters on a new machine), beside the verification of a
bare SHA-256 of the password as the baseline (what an unslowed hash costs an attacker).
"""

from __future__ import annotations

import hashlib
import time

from bench.common import Figure


def run(quick: bool = False) -> list[Figure]:
    from secretum.identity.passwords import DEFAULT_ARGON2, measure_cost

    seconds = measure_cost(DEFAULT_ARGON2, rounds=3 if quick else 9)
    started = time.perf_counter()
    for _ in range(10_000):
        hashlib.sha256(b"violet tractor mumbles under seven lanterns").digest()
    bare = (time.perf_counter() - started) / 10_000
    ms = seconds * 1000
    return [
        Figure(
            name=(
                f"password check, Argon2id t={DEFAULT_ARGON2.time_cost} "
                f"m={DEFAULT_ARGON2.memory_cost // 1024} MiB p={DEFAULT_ARGON2.parallelism}"
            ),
            value=ms,
            unit="ms",
            baseline_name="bare SHA-256, ms",
            baseline_value=bare * 1000,
            target="50-100 ms",
            passed=50 <= ms <= 100,
        )
    ]
