"""Blob store: where encrypted files live, behind a narrow port (:class:`BlobStore`).

Blobs are opaque ciphertext: the store never sees a plaintext byte nor a key. Writes are all or
nothing: a blob appears under its name only once it was written in full. The adapter is chosen
by configuration (``SECRETUM_BLOB_STORE``, resolved by the composition root): ``local`` is the
folder below (:class:`FileSystemBlobStore`); an S3-compatible adapter for several instances
comes with the scale-out issue and takes the same port.

A blob is written *before* the database transaction that records it (see
:class:`secretum.records.files.FileStore`), so a transaction never waits for file I/O; a blob
whose transaction failed is deleted, and one left by a crash in between is an *orphan* that the
periodic cleanup removes once it is older than a grace period (:meth:`BlobStore.names_before`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from secretum.config import Settings

_NAME = re.compile(r"^[0-9a-f]{32}$")
_PART = ".part-"


class BlobStore(Protocol):
    """Where encrypted files live: put (``writer``), open, delete, exists, and the listing the
    orphan cleanup walks (``names_before``)."""

    def new_name(self) -> str: ...

    def writer(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A file to write the blob into; it appears under ``name`` only if the block ends
        without an exception."""
        ...

    def open(self, name: str) -> BinaryIO: ...

    def delete(self, name: str) -> None:
        """Remove ``name``; nothing happens if it is not there."""
        ...

    def exists(self, name: str) -> bool: ...

    def names_before(self, cutoff: datetime) -> Iterator[str]:
        """The blobs last written before ``cutoff`` (candidates for the orphan cleanup); the
        adapter may also drop its own leftovers of writes interrupted before ``cutoff``."""
        ...


class FileSystemBlobStore:
    """Blobs as files under ``root``, in 256 sub-folders, mode 0600."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    @classmethod
    def for_settings(cls, settings: Settings, area: str = "files") -> FileSystemBlobStore:
        """``SECRETUM_BLOB_STORE=local``: the record files in ``<data_dir>/blobs``, another
        area (``imaging``) in ``<data_dir>/blobs-<area>``: each area's orphan cleanup only
        sees its own blobs."""
        return cls(settings.blob_dir if area == "files" else settings.blob_area_dir(area))

    def new_name(self) -> str:
        return secrets.token_hex(16)

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ValueError("not a blob name")
        return self.root / name[:2] / name

    @contextlib.contextmanager
    def writer(self, name: str) -> Iterator[BinaryIO]:
        """A file to write the blob into; it appears under ``name`` only if the block ends
        without an exception."""
        path = self._path(name)
        try:
            fd, tmp = tempfile.mkstemp(prefix=_PART, dir=path.parent)
        except FileNotFoundError:  # the sub-folder's first blob (not checked each time: costly)
            path.parent.mkdir(exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=_PART, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            if path.exists():
                raise FileExistsError(f"blob {name} exists")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def open(self, name: str) -> BinaryIO:
        return self._path(name).open("rb")

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def names_before(self, cutoff: datetime) -> Iterator[str]:
        """Blobs whose file was last modified before ``cutoff``; partial files of a write that
        a crash interrupted (``.part-*``) older than ``cutoff`` are removed on the way."""
        limit = cutoff.timestamp()
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or len(folder.name) != 2:
                continue
            for entry in os.scandir(folder):
                try:
                    old = entry.stat(follow_symlinks=False).st_mtime < limit
                except FileNotFoundError:  # deleted meanwhile
                    continue
                if not old:
                    continue
                if entry.name.startswith(_PART):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                elif _NAME.match(entry.name):
                    yield entry.name
