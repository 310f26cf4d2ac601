"""File encryption: segmented streaming AEAD, byte-compatible with Tink's AES-GCM-HKDF.

Files are encrypted with Tink's ``AES256_GCM_HKDF_1MB`` streaming format (the layout is
documented in :mod:`secretum.crypto.streaming_format`): a 40-byte header (length byte, random
salt, random nonce prefix) followed by AES-256-GCM segments of 1 MiB under a key derived
per file with HKDF-SHA256 from the caller's 32-byte key, the salt and the associated data.
Tink can decrypt what this module encrypts and the other way round.

Entry points:

* :func:`encrypt_stream` / :func:`decrypt_stream`: whole streams, memory flat whatever the
  size (a few segment buffers, allocated once per call).
* :func:`decrypt_to_path`: the safe way to decrypt to a file: the target only appears, by an
  atomic rename, once every segment authenticated.
* :func:`decrypt_range` and :class:`DecryptingReader`: random access (HTTP range requests),
  decrypting only the segments that cover the bytes asked for.
* :func:`ciphertext_size` / :func:`plaintext_size`: size arithmetic.

**The size is authenticated before anything is returned.** The plaintext size follows from the
ciphertext's length, and the length alone proves nothing: a file cut at the right place, or
extended, has a length that some plaintext would have. What proves it is the last segment,
sealed with the last-segment flag at its index: it only authenticates where the genuine
ciphertext ended. So every read, a byte range (even an empty one, or one past the end)
included, first authenticates that segment, and every entry point takes the
``expected_size`` that the caller stored, sealed, beside the ciphertext (Secretum keeps it
in the file's metadata) and raises ``IntegrityError`` if the two differ.

Associated data binds a ciphertext to where it belongs; for Secretum files it is
``secretum.crypto.context.FileContext(...).encode()``. Every authentication failure (tampered
byte, wrong key or associated data, truncation, reordering, appended data) raises
:class:`~secretum.crypto.errors.IntegrityError` (or its subclass ``FormatError`` for a
malformed header or an impossible size); messages never contain key or plaintext bytes.
"""

from __future__ import annotations

import contextlib
import errno
import io
import mmap
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO

from secretum.crypto.errors import FormatError, IntegrityError
from secretum.crypto.streaming_format import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    NONCE_PREFIX_SIZE,
    SALT_SIZE,
    TAG_SIZE,
    Layout,
    SegmentCipher,
    check_associated_data,
    check_key,
    make_header,
    parse_header,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "DecryptingReader",
    "ciphertext_size",
    "decrypt_range",
    "decrypt_stream",
    "decrypt_to_path",
    "encrypt_stream",
    "plaintext_size",
]

_ReadInto = Callable[[memoryview], int]


def ciphertext_size(plaintext_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Size in bytes of the ciphertext of a ``plaintext_size``-byte plaintext, header included."""
    return Layout(segment_size).ciphertext_size(plaintext_size)


def plaintext_size(ciphertext_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Size of the plaintext inside a ``ciphertext_size``-byte ciphertext.

    Raises ``FormatError`` if no plaintext encrypts to that size (truncated or extended file).
    """
    return Layout(segment_size).plaintext_size(ciphertext_size)


def _buffer(size: int) -> memoryview:
    """A zero-filled, reusable segment buffer, backed by an anonymous memory mapping.

    Unlike ``bytearray(size)``, a mapping is not written at allocation: its pages are only
    materialised when touched, so a 100-byte file does not pay for 1 MiB buffers. The
    pages are left out of core dumps where the OS allows it, and go back to the kernel (which
    zeroes them before any reuse) when the last view is dropped.
    """
    if hasattr(mmap, "MAP_PRIVATE"):  # POSIX; the default, MAP_SHARED, is slower shmem
        area = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    else:  # Windows: anonymous mappings are private already
        area = mmap.mmap(-1, size)
    if hasattr(mmap, "MADV_DONTDUMP"):
        area.madvise(mmap.MADV_DONTDUMP)
    return memoryview(area)


#: Segment buffers kept for reuse, per size. Mapping fresh pages costs a page fault (and the
#: kernel's zeroing) per page touched: ten times the AES-GCM of the segment. A plaintext
#: buffer given back is wiped first, so no plaintext waits in the pool (a ciphertext buffer
#: holds nothing secret).
POOLED_BUFFERS = 8
_pool: dict[int, list[memoryview]] = {}
_pool_lock = threading.Lock()
_ZEROS = memoryview(bytes(DEFAULT_SEGMENT_SIZE))


def _take(size: int) -> memoryview:
    """A wiped segment buffer of ``size`` bytes: a pooled one, else a fresh mapping."""
    with _pool_lock:
        free = _pool.get(size)
        if free:
            return free.pop()
    return _buffer(size)


def _give(view: memoryview, *, wipe: bool = True) -> None:
    """Keep ``view`` for another call (unless the pool is full), wiped unless it only ever
    held ciphertext."""
    size = len(view)
    for start in range(0, size if wipe else 0, len(_ZEROS)):
        end = min(size, start + len(_ZEROS))
        view[start:end] = _ZEROS[: end - start]
    with _pool_lock:
        free = _pool.setdefault(size, [])
        if len(free) < POOLED_BUFFERS:
            free.append(view)


@contextlib.contextmanager
def _buffers(sealed_size: int, plain_size: int) -> Iterator[tuple[memoryview, memoryview]]:
    """A ciphertext and a plaintext segment buffer for one call, given back when it ends,
    however it ends (the plaintext one wiped)."""
    sealed = _take(sealed_size)
    try:
        plain = _take(plain_size)
        try:
            yield sealed, plain
        finally:
            _give(plain)
    finally:
        _give(sealed, wipe=False)


def _reader(src: BinaryIO) -> _ReadInto:
    """A function filling a buffer from ``src`` until it is full or ``src`` is at its end."""
    readinto: Callable[[memoryview], int | None] | None = getattr(src, "readinto", None)

    def read_some(view: memoryview) -> int | None:
        if readinto is not None:
            return readinto(view)
        chunk = src.read(len(view))
        if chunk is None:
            return None
        view[: len(chunk)] = chunk
        return len(chunk)

    def fill(view: memoryview) -> int:
        total, size = 0, len(view)
        while total < size:
            got = read_some(view[total:])
            if got is None:
                raise BlockingIOError(errno.EAGAIN, "source would block: a blocking one is needed")
            if got == 0:
                break
            total += got
        return total

    return fill


def _write_all(dst: BinaryIO, view: memoryview) -> None:
    """Write all of ``view``, looping over partial writes (raw streams may write less)."""
    while view:
        written: int | None = dst.write(view)
        if written is None:
            raise BlockingIOError(errno.EAGAIN, "destination would block: a blocking one is needed")
        view = view[written:]


def encrypt_stream(
    key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    associated_data: bytes,
    *,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    progress: Callable[[int], None] | None = None,
    _rng: Callable[[int], bytes] = os.urandom,
) -> int:
    """Encrypt everything ``src`` yields into ``dst``; return the ciphertext bytes written.

    ``key`` is a 32-byte key; the file key is derived from it, a fresh random salt and
    ``associated_data`` (which must be given again, identical, to decrypt). Memory stays flat:
    one plaintext and one ciphertext segment buffer, allocated once. ``progress``, if given,
    is called after each segment with the number of plaintext bytes encrypted so far.

    ``_rng`` supplies the randomness: it is called twice, for the 32-byte salt and then for
    the 7-byte nonce prefix. Only known-answer tests should replace it: reusing a salt and
    prefix with the same key and associated data reuses GCM nonces.

    ``dst.write`` receives views of a reused buffer: a destination must copy what it is given
    (every ``io`` object does), not keep the view. Neither stream is closed.
    """
    check_key(key)
    check_associated_data(associated_data)
    layout = Layout(segment_size)
    salt, prefix = _rng(SALT_SIZE), _rng(NONCE_PREFIX_SIZE)
    header = make_header(salt, prefix)
    cipher = SegmentCipher(key, salt, prefix, associated_data)
    fill = _reader(src)
    with _buffers(segment_size, layout.pt_segment) as (sealed, plain):
        return _encrypt_segments(cipher, layout, fill, dst, header, plain, sealed, progress)


def _encrypt_segments(
    cipher: SegmentCipher,
    layout: Layout,
    fill: _ReadInto,
    dst: BinaryIO,
    header: bytes,
    plain: memoryview,
    sealed: memoryview,
    progress: Callable[[int], None] | None,
) -> int:
    peek = memoryview(bytearray(1))

    _write_all(dst, memoryview(header))
    written, done, index = HEADER_SIZE, 0, 0
    want = layout.first_pt_segment
    filled = fill(plain[:want])
    while True:
        # A segment is the last one if the source ends inside it or right after it: peek one
        # byte ahead to choose the nonce flag (so, like Tink, never end on an empty segment
        # unless the whole plaintext is empty).
        last = filled < want or fill(peek) == 0
        size = cipher.seal_into(index, last, plain[:filled], sealed)
        _write_all(dst, sealed[:size])
        written += size
        done += filled
        if progress is not None:
            progress(done)
        if last:
            return written
        plain[0] = peek[0]  # the peeked byte starts the next segment
        want, index = layout.pt_segment, index + 1
        filled = 1 + fill(plain[1:want])


def _check_size(expected_size: int | None, size: int) -> None:
    """Raise ``IntegrityError`` unless the proven plaintext ``size`` is the expected one."""
    if expected_size is not None and size != expected_size:
        raise IntegrityError(
            f"the ciphertext holds {size} plaintext bytes, its metadata says {expected_size}: "
            "truncated, extended or swapped"
        )


def decrypt_stream(
    key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    associated_data: bytes,
    *,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    progress: Callable[[int], None] | None = None,
    expected_size: int | None = None,
) -> int:
    """Decrypt the ciphertext ``src`` yields into ``dst``; return the plaintext bytes written.

    Each segment is written only after its tag verified, and the last one only if the stream
    ends right after it, so a truncated, extended, reordered or tampered stream, a wrong key
    or wrong associated data raise ``IntegrityError`` (``FormatError`` for a bad header).

    **Partial output**: segments are streamed, so when segment *k* fails, the authenticated
    plaintext of segments ``0 .. k-1`` has already been written to ``dst``. That prefix is
    genuine but incomplete: when this function raises, discard everything written to ``dst``.
    To decrypt into a file, use :func:`decrypt_to_path`, which never leaves a partial file.

    ``expected_size``, if given, is the plaintext size stored with the ciphertext: a stream
    that holds more raises before the extra bytes are written, one that holds fewer raises
    at its end (the size itself is authenticated by the last segment's flag).

    ``progress``, if given, is called after each segment with the plaintext bytes written so
    far. ``dst.write`` receives views of a reused buffer (see :func:`encrypt_stream`).
    """
    check_key(key)
    check_associated_data(associated_data)
    layout = Layout(segment_size)
    fill = _reader(src)
    header = memoryview(bytearray(HEADER_SIZE))
    salt, prefix = parse_header(header[: fill(header)])
    cipher = SegmentCipher(key, salt, prefix, associated_data)
    with _buffers(segment_size, layout.pt_segment) as (sealed, opened):
        return _decrypt_segments(
            cipher, segment_size, fill, dst, sealed, opened, progress, expected_size
        )


def _decrypt_segments(
    cipher: SegmentCipher,
    segment_size: int,
    fill: _ReadInto,
    dst: BinaryIO,
    sealed: memoryview,
    opened: memoryview,
    progress: Callable[[int], None] | None,
    expected_size: int | None,
) -> int:
    peek = memoryview(bytearray(1))

    written, index = 0, 0
    want = segment_size - HEADER_SIZE
    filled = fill(sealed[:want])
    while True:
        # The last segment is the one the stream ends in or right after (see encrypt_stream).
        last = filled < want or fill(peek) == 0
        if last and index > 0 and filled == TAG_SIZE:
            raise FormatError("empty last segment after full ones: not a canonical ciphertext")
        # open_into raises (and wipes ``opened``) unless the tag verifies with this position
        # and last flag: nothing of a segment is written before that.
        size = cipher.open_into(index, last, sealed[:filled], opened)
        if expected_size is not None and written + size > expected_size:
            opened[:size] = bytes(size)
            _check_size(expected_size, written + size)
        _write_all(dst, opened[:size])
        written += size
        if progress is not None:
            progress(written)
        if last:
            _check_size(expected_size, written)
            return written
        sealed[0] = peek[0]
        want, index = segment_size, index + 1
        filled = 1 + fill(sealed[1:want])


def decrypt_to_path(
    key: bytes,
    src: BinaryIO,
    path: str | os.PathLike[str],
    associated_data: bytes,
    *,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    progress: Callable[[int], None] | None = None,
    expected_size: int | None = None,
) -> int:
    """Decrypt ``src`` into the file at ``path``, all or nothing; return the plaintext size.

    The plaintext goes to a private temporary file (mode 0600) in the target's directory,
    which is flushed, fsynced and atomically renamed onto ``path`` only once every segment
    authenticated. On any failure the temporary file is removed and ``path`` is left as it was
    (absent, or its previous content): nobody ever sees a half-decrypted file.
    """
    target = os.fspath(path)
    fd, tmp = tempfile.mkstemp(
        prefix=".secretum-", suffix=".part", dir=os.path.dirname(os.path.abspath(target))
    )
    try:
        with os.fdopen(fd, "wb") as out:
            size = decrypt_stream(
                key,
                src,
                out,
                associated_data,
                segment_size=segment_size,
                progress=progress,
                expected_size=expected_size,
            )
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return size


class DecryptingReader(io.RawIOBase):
    """A read-only, seekable view of the plaintext of a seekable ciphertext stream.

    Made for HTTP range requests: ``seek`` is free, ``read`` decrypts only the segments it
    needs and keeps the last one decrypted. The ciphertext must start at offset 0 of ``src``
    and run to its end (its size tells which segment is the last one). ``src`` is not closed
    by :meth:`close`. Not thread-safe.

    The constructor authenticates the last segment, so :attr:`size` is proven before any
    read (a truncated or extended file raises ``IntegrityError`` here, even if only zero
    bytes are then read), and compares it with ``expected_size`` when given. This costs one
    segment's decryption per reader (at most 1 MiB of AES-GCM, nothing more for a file of
    one segment); the segment stays in the cache, ready for a read of the file's end.

    Each segment read is authenticated before any of its bytes is returned, but reading a
    part of the file proves nothing about the middle segments not read: only reading all of
    it (or :func:`decrypt_stream`) shows that the whole file is intact.
    """

    def __init__(
        self,
        key: bytes,
        src: BinaryIO,
        associated_data: bytes,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        expected_size: int | None = None,
    ) -> None:
        super().__init__()
        check_key(key)
        check_associated_data(associated_data)
        self._layout = Layout(segment_size)
        self._src = src
        self._fill = _reader(src)
        self._ct_size = src.seek(0, io.SEEK_END)
        self._size = self._layout.plaintext_size(self._ct_size)
        self._last_index = self._layout.segment_count(self._size) - 1
        src.seek(0)
        header = memoryview(bytearray(HEADER_SIZE))
        salt, prefix = parse_header(header[: self._fill(header)])
        self._cipher = SegmentCipher(key, salt, prefix, associated_data)
        self._sealed = _take(segment_size)
        self._opened = _take(self._layout.pt_segment)
        self._cached_index = -1  # index of the segment in self._opened, -1 for none
        self._cached_size = 0
        self._pos = 0
        # The size above comes from the file's length: prove it before anything is read.
        try:
            self._load(self._last_index)
            _check_size(expected_size, self._size)
        except BaseException:
            self.close()
            raise

    @property
    def size(self) -> int:
        """Plaintext size in bytes (e.g. for ``Content-Length``)."""
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Read up to ``len(buffer)`` bytes (at most to the end of the current segment)."""
        self._check_open()
        if self._pos >= self._size:
            return 0
        index = self._layout.segment_of(self._pos)
        self._load(index)
        start = self._pos - self._layout.pt_start(index)
        out = memoryview(buffer).cast("B")
        count = min(len(out), self._cached_size - start)
        out[:count] = self._opened[start : start + count]
        self._pos += count
        return count

    def read(self, size: int | None = -1) -> bytes:
        """Read ``size`` bytes (the rest if ``None`` or negative): fewer only at the end."""
        self._check_open()
        remaining = max(0, self._size - self._pos)
        if size is None or size < 0 or size > remaining:
            size = remaining
        out = bytearray(size)
        view, got = memoryview(out), 0
        while got < size:
            count = self.readinto(view[got:])
            if count == 0:  # unreachable (size <= bytes left): never spin if a bug breaks that
                raise RuntimeError("DecryptingReader made no progress")
            got += count
        return bytes(out)

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        """Forget the decrypted segment (the buffers go back to the pool, wiped); ``src``
        stays open (it belongs to the caller)."""
        opened: memoryview | None = getattr(self, "_opened", None)  # None if __init__ failed
        if not self.closed and opened is not None:
            self._cached_index = -1
            _give(opened)
            _give(self._sealed, wipe=False)
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed DecryptingReader")

    def _load(self, index: int) -> None:
        """Decrypt segment ``index`` into the cache, unless it is already there."""
        if index == self._cached_index:
            return
        self._cached_index = -1
        start = self._layout.ct_start(index)
        end = min((index + 1) * self._layout.segment_size, self._ct_size)
        self._src.seek(start)
        view = self._sealed[: end - start]
        if self._fill(view) != len(view):
            raise IntegrityError(f"segment {index} is truncated: the file shrank while read")
        last = index == self._last_index
        self._cached_size = self._cipher.open_into(index, last, view, self._opened)
        self._cached_index = index


def decrypt_range(
    key: bytes,
    src: BinaryIO,
    associated_data: bytes,
    offset: int,
    length: int,
    *,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    expected_size: int | None = None,
) -> bytes:
    """Return ``plaintext[offset : offset + length]``, decrypting only the covering segments.

    ``src`` must be seekable and hold exactly one ciphertext, from offset 0 to its end.
    Like slicing, a range past the end is clipped (possibly to ``b""``). The last segment is
    authenticated first, whatever the range (see :class:`DecryptingReader`). Raises
    ``IntegrityError`` if it or a covering segment fails authentication, or if the size
    differs from ``expected_size``; ``FormatError`` if the header or the ciphertext size is
    invalid. Middle segments outside the range are not checked.
    """
    if offset < 0 or length < 0:
        raise ValueError("offset and length must be >= 0")
    with DecryptingReader(
        key, src, associated_data, segment_size=segment_size, expected_size=expected_size
    ) as reader:
        reader.seek(offset)
        return reader.read(length)
