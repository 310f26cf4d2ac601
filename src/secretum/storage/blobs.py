"""Blob store: where encrypted files live (the filesystem by default).

Blobs are opaque ciphertext: the store never sees a plaintext byte nor a key. Writes are all or
nothing: a blob appears under its name, by an atomic rename after fsync, only once it was
written in full. An S3-compatible adapter takes the same narrow port for several instances.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

_NAME = re.compile(r"^[0-9a-f]{32}$")


class BlobStore(Protocol):
    def new_name(self) -> str: ...

    def writer(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]: ...

    def open(self, name: str) -> BinaryIO: ...

    def delete(self, name: str) -> None: ...


class FileSystemBlobStore:
    """Blobs as files under ``root``, in 256 sub-folders, mode 0600."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

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
        path.parent.mkdir(exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=path.parent)
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
