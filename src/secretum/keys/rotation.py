"""KEK rotation: a new KEK version, then every wrapped key rewrapped in short batches.

The server keeps serving while it runs: each batch is its own short transaction, and a key
wrapped under the old version still opens until that version is retired. A rotation that
crashed half-way is resumed by running it again: whatever is still wrapped below the current
version is rewrapped, and no new version is made while that is so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from secretum.keys.keyring import KeyRing

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RotationReport:
    from_version: int
    to_version: int
    rewrapped: int
    resumed: bool


class RetireRefused(RuntimeError):
    """Keys still depend on a version that was asked to be retired."""


def rotate(
    keyring: KeyRing,
    *,
    batch_size: int = 500,
    progress: Progress | None = None,
    max_batches: int | None = None,
) -> RotationReport:
    """Rotate to a new KEK version (or finish an interrupted rotation) and rewrap every key.

    ``max_batches`` stops early (as a crash would); ``progress(done, total)`` is called after
    each batch.
    """
    kms = keyring.kms
    before = kms.current_version()
    resumed = keyring.count_below(before) > 0
    target = before if resumed else kms.create_version()
    total = keyring.count_below(target)
    done = batches = 0
    if progress:
        progress(0, total)
    while max_batches is None or batches < max_batches:
        n = keyring.rewrap_batch(target, batch_size)
        batches += 1
        done += n
        if progress:
            progress(done, max(total, done))
        if n == 0 and keyring.count_below(target) == 0:
            break
    return RotationReport(
        from_version=before if not resumed else min(kms.versions()),
        to_version=target,
        rewrapped=done,
        resumed=resumed,
    )


def retire(keyring: KeyRing, below: int) -> None:
    """Destroy KEK versions below ``below``, once no wrapped key depends on them."""
    left = keyring.count_below(below)
    if left:
        raise RetireRefused(
            f"{left} wrapped keys still use a KEK version below {below}: "
            "run `secretum keys rotate` to finish the rotation first"
        )
    keyring.kms.retire_below(below)
