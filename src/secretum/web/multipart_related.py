"""``multipart/related`` (RFC 2387) for DICOMweb: a bounded streaming reader and a writer.

Reading (STOW-RS request bodies) is python-multipart's streaming parser (the one Starlette
uses for forms), fed chunk by chunk as the body arrives: :meth:`RelatedReader.feed` returns the
parts completed by a chunk, so at most one part (plus one chunk) is held in memory whatever the
size of the request. Bounds: a part's data past ``max_part_bytes`` is dropped as it arrives
(the part is returned with ``too_large``), a part's headers are at most
:data:`MAX_HEADER_BYTES`, a body at most ``max_parts`` parts. A body that breaks the syntax (a
boundary that is not the declared one, a header line without a colon...) raises
:class:`MalformedBody` from :meth:`~RelatedReader.feed`; a body that ends before its closing
delimiter raises it from :meth:`~RelatedReader.close` (the part being read then is never
returned: it may be cut short).

Writing (WADO-RS responses): :func:`part_head` and :func:`closing` frame parts with a fresh
random boundary (:func:`new_boundary`), so a response is streamed part by part.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState

#: Largest header block of one part (its Content-Type and a few others).
MAX_HEADER_BYTES = 8 * 1024
#: Largest number of parts in one body (a study of a hundred thousand instances is sent in
#: several requests).
DEFAULT_MAX_PARTS = 100_000
_BOUNDARY_CHARS = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? "
)


class MalformedBody(ValueError):
    """The body is not the multipart/related its Content-Type announced (message is fixed
    text, never a quote of the body)."""


class MediaTypeError(ValueError):
    """The Content-Type is not one this endpoint takes (415)."""


@dataclass(frozen=True)
class Part:
    """One part: its Content-Type (lower-cased media type, parameters kept) and data (empty
    when ``too_large``: the data was dropped as it arrived)."""

    content_type: str
    data: bytes
    too_large: bool = False

    @property
    def media_type(self) -> str:
        return self.content_type.split(";", 1)[0].strip().lower()


def parse_parameters(header: str) -> tuple[str, dict[str, str]]:
    """``(media type, {name: value})`` of a Content-Type or Accept item; quoted values
    unquoted, names lower-cased. Quoted values may hold ``;``."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    media = items[0].strip().lower()
    params: dict[str, str] = {}
    for item in items[1:]:
        name, sep, value = item.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params[name.strip().lower()] = value
    return media, params


def related_boundary(content_type: str, part_type: str) -> str:
    """The boundary of a ``multipart/related; type="<part_type>"`` Content-Type.

    MediaTypeError (415) for another media type or part type; MalformedBody (400) for a
    missing or invalid boundary (RFC 2046: 1-70 characters of a fixed set, not ending in a
    space)."""
    media, params = parse_parameters(content_type)
    if media != "multipart/related":
        raise MediaTypeError("multipart/related expected")
    kind = params.get("type", "").strip().lower()
    if kind and kind != part_type:
        raise MediaTypeError(f'type="{part_type}" expected')
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70 or boundary.endswith(" "):
        raise MalformedBody("missing or invalid boundary")
    if any(ch not in _BOUNDARY_CHARS for ch in boundary):
        raise MalformedBody("missing or invalid boundary")
    return boundary


class RelatedReader:
    """Incremental reader of one multipart/related body (see the module docstring)."""

    def __init__(
        self,
        boundary: str,
        *,
        max_part_bytes: int,
        max_parts: int = DEFAULT_MAX_PARTS,
        default_type: str = "",
    ) -> None:
        self.max_part_bytes = max_part_bytes
        self.max_parts = max_parts
        self.default_type = default_type
        self.parts_seen = 0
        self._done: list[Part] = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._header_bytes = 0
        self._started = False
        self._closed = False
        self._parser = MultipartParser(
            boundary.encode("latin-1"),
            {
                "on_part_begin": self._part_begin,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
            },
        )

    # -- python-multipart callbacks ------------------------------------------------------------

    def _part_begin(self) -> None:
        self.parts_seen += 1
        if self.parts_seen > self.max_parts:
            raise MalformedBody("too many parts")
        self._started = True
        self._chunks, self._size, self._too_large = [], 0, False
        self._headers, self._header_bytes = {}, 0

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise MalformedBody("part headers too large")

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def _header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._too_large:
            return
        if self._size + n > self.max_part_bytes:
            self._too_large = True
            self._chunks, self._size = [], 0
            return
        self._chunks.append(data[start:end])
        self._size += n

    def _part_end(self) -> None:
        content_type = self._headers.get("content-type", self.default_type)
        data = b"" if self._too_large else b"".join(self._chunks)
        self._done.append(Part(content_type, data, self._too_large))
        self._chunks, self._size = [], 0

    # -- feeding -------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[Part]:
        """Parse ``chunk``; the parts it completed (MalformedBody on a syntax error)."""
        if self._closed:
            return []  # an epilogue after the closing delimiter is ignored (RFC 2046)
        try:
            self._parser.write(chunk)
        except MultipartParseError:
            raise MalformedBody("not a multipart body with the declared boundary") from None
        done, self._done = self._done, []
        if self._parser.state == MultipartState.END:
            self._closed = True
        return done

    @property
    def complete(self) -> bool:
        """The closing delimiter was read."""
        return self._parser.state == MultipartState.END

    def close(self) -> None:
        """The body ended: MalformedBody unless its closing delimiter was read."""
        if not self.complete:
            raise MalformedBody("body cut short (no closing delimiter)")


def new_boundary() -> str:
    return f"secretum-{secrets.token_hex(16)}"


def part_head(boundary: str, content_type: str, *, first: bool, location: str = "") -> bytes:
    """The delimiter and headers that open a part (a CRLF ends the previous part's data)."""
    head = f"{'' if first else chr(13) + chr(10)}--{boundary}\r\nContent-Type: {content_type}\r\n"
    if location:
        head += f"Content-Location: {location}\r\n"
    return (head + "\r\n").encode("latin-1")


def closing(boundary: str, *, empty: bool) -> bytes:
    """The closing delimiter (after a CRLF unless no part was written)."""
    return f"{'' if empty else chr(13) + chr(10)}--{boundary}--\r\n".encode("latin-1")
