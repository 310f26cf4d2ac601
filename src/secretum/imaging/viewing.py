"""A viewing session: a study or series opened once (one audit entry), its frames read after.

A stack viewer reads hundreds of frames of one series, each a request of its own (scrolling,
changing the window). The archive's rule is one audit entry per study or series request, not
per frame; :meth:`ImagingArchive.open_study` keeps it within one request by returning a
:class:`~secretum.imaging.archive.StudyReader`. Across HTTP requests, the choice made here is
a **viewing ticket**:

* :meth:`ImagingViewer.open` is the audited retrieval (110103 Instances Accessed, naming the
  patient, one policy decision): it answers what the viewer shows (series, frames in slice
  order, the key attributes) and a ticket;
* the ticket is the claims ``(actor, session binding, study, series, purpose, expiry)``
  sealed with AES-256-GCM under a platform secret (:data:`TICKET_SECRET`, fresh nonce, the
  ticket's purpose bound as associated data): opaque (UIDs are not exposed in URLs or logs),
  unforgeable, short-lived (:data:`VIEWING_LIFETIME`), and bound to the session it was issued
  to (a hash of the session id: a ticket copied out of a page is useless without that
  session's cookie, and dies at sign-out or step-up rotation);
* each frame (:meth:`ImagingViewer.frame`, :meth:`ImagingViewer.series_thumbnail`) comes
  with the ticket and the caller's request context. The ticket is checked (same actor, same
  session, not expired, the instance inside what was opened), then **the policy is asked
  again, silently**: a consent withdrawn, a care relationship ended or a break-the-glass grant
  expired in the middle of a viewing stops the next frame. A "yes" adds no audit entry (the
  opening's entry covers the viewing); a "no" goes through the audited path
  (:meth:`ImagingArchive.open_study`), so a refusal is recorded like any other. A ticket that
  does not hold (forged, foreign, expired) is refused and audited (``deny.viewing-ticket``).

Why not keep the opened reader in server memory under a session key? Several server processes
serve one platform (a frame request may reach any of them), and a memory cache would keep
serving after the policy changed. Why not audit every frame? The patient's "who opened my
record" would list hundreds of lines for one look at one series.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

import pydicom
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Connection

from secretum.access.context import RequestContext
from secretum.access.door import Attempt
from secretum.access.model import Action, Decision, Purpose, Resource
from secretum.audit.model import EventAction, EventType
from secretum.imaging.archive import ImagingArchive, StudyReader
from secretum.imaging.archive_model import SEALED_STUDY, STUDY_KIND, StudyNotFound
from secretum.imaging.archive_store import InstanceRow, StudyRow
from secretum.imaging.render import PixelModule, Window

#: The platform secret (key ring) that seals viewing tickets.
TICKET_SECRET = "imaging/viewing-ticket-key"  # noqa: S105 - a name, not a secret
#: How long a viewing lasts before the page must open the series again (a new audit entry).
VIEWING_LIFETIME = timedelta(minutes=20)
#: The reason code of a refused ticket (audit ``outcome_desc``; page message ``reason.*``).
TICKET_REFUSED = "deny.viewing-ticket"
_AAD = b"secretum/imaging/viewing-ticket/v1"
_NONCE = 12


def binding_of(session_id: str) -> str:
    """What a ticket keeps of the session it is bound to (never the session id itself)."""
    return hashlib.sha256(b"secretum/viewing-binding\x00" + session_id.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Claims:
    actor_id: str
    binding: str
    study_uid: str
    series_uid: str | None
    purpose: Purpose
    expires: int  # POSIX seconds


class Tickets:
    """Seal and open viewing tickets (AES-256-GCM, fresh nonce, fixed context as AAD)."""

    def __init__(self, key: Callable[[], bytes]) -> None:
        self._key_source = key
        self._aead: AESGCM | None = None

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            self._aead = AESGCM(self._key_source())
        return self._aead

    def seal(self, claims: Claims) -> str:
        body = json.dumps(
            [
                claims.actor_id,
                claims.binding,
                claims.study_uid,
                claims.series_uid,
                str(claims.purpose),
                claims.expires,
            ],
            separators=(",", ":"),
        ).encode()
        nonce = os.urandom(_NONCE)
        sealed = nonce + self._cipher().encrypt(nonce, body, _AAD)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, ticket: str, now: datetime) -> Claims | None:
        """The claims of a genuine, unexpired ticket; None for anything else."""
        if not ticket or len(ticket) > 2048:
            return None
        try:
            raw = base64.urlsafe_b64decode(ticket + "=" * (-len(ticket) % 4))
            body = self._cipher().decrypt(raw[:_NONCE], raw[_NONCE:], _AAD)
            actor, binding, study, series, purpose, expires = json.loads(body)
            claims = Claims(actor, binding, study, series, Purpose(purpose), int(expires))
        except (InvalidTag, ValueError, TypeError):
            return None
        if now.timestamp() >= claims.expires:
            return None
        return claims


@dataclass(frozen=True)
class ViewFrame:
    """One image of the stack: an instance's frame, where it lies."""

    sop_uid: str
    number: int
    instance_number: int | None
    #: slice position in mm along the stack's normal (SliceLocation when there is no geometry)
    position: float | None


@dataclass(frozen=True)
class ViewSeries:
    series_uid: str
    number: int | None
    modality: str | None
    description: str
    frames: tuple[ViewFrame, ...]
    #: the data set's default window, if it has one
    window: Window | None


@dataclass(frozen=True)
class Viewing:
    """What an opened viewing shows, and its ticket."""

    ticket: str
    expires_at: datetime
    patient_id: str
    study_uid: str
    study_date: str
    study_description: str
    patient_name: str
    series: tuple[ViewSeries, ...]


@dataclass(frozen=True)
class FrameSource:
    """A frame and what it takes to render it."""

    pixels: bytes
    module: PixelModule


def _value(meta: dict[str, Any] | None, tag: str) -> Any:
    values = (meta or {}).get(tag, {}).get("Value")
    return values if values else None


def _text(meta: dict[str, Any] | None, tag: str) -> str:
    values = _value(meta, tag)
    if not values:
        return ""
    value = values[0]
    if isinstance(value, dict):  # a person name
        return str(value.get("Alphabetic", ""))
    return str(value)


def _position(meta: dict[str, Any] | None) -> float | None:
    """Where the slice lies along its normal (IPP . (row x column)), else SliceLocation."""
    ipp, iop = _value(meta, "00200032"), _value(meta, "00200037")
    try:
        if ipp and iop and len(ipp) == 3 and len(iop) == 6:
            r, c = [float(v) for v in iop[:3]], [float(v) for v in iop[3:]]
            normal = (
                r[1] * c[2] - r[2] * c[1],
                r[2] * c[0] - r[0] * c[2],
                r[0] * c[1] - r[1] * c[0],
            )
            return round(sum(float(p) * n for p, n in zip(ipp, normal, strict=True)), 3)
        location = _value(meta, "00201041")
        return float(location[0]) if location else None
    except (TypeError, ValueError):
        return None


def _frames(rows: list[tuple[InstanceRow, dict[str, Any] | None]]) -> tuple[ViewFrame, ...]:
    out = []
    for row, meta in rows:
        position = _position(meta)
        for number in range(1, row.number_of_frames + 1):
            out.append(ViewFrame(row.sop_uid, number, row.instance_number, position))

    def key(f: ViewFrame) -> tuple[int, float, int, int]:
        if f.position is not None:
            return (0, f.position, f.instance_number or 0, f.number)
        return (1, 0.0, f.instance_number or 0, f.number)

    return tuple(sorted(out, key=key))


class ImagingViewer:
    """Viewing sessions over the archive (see the module docstring)."""

    def __init__(
        self,
        archive: ImagingArchive,
        ticket_key: Callable[[], bytes],
        *,
        lifetime: timedelta = VIEWING_LIFETIME,
    ) -> None:
        self.archive = archive
        self.tickets = Tickets(ticket_key)
        self.lifetime = lifetime

    # -- open: the audited retrieval ------------------------------------------------------------

    def open(
        self,
        ctx: RequestContext,
        study_uid: str,
        series_uid: str | None = None,
        *,
        binding: str,
        patient_id: str | None = None,
    ) -> Viewing:
        """Open a study (its series list, thumbnails) or one series (the stack) for viewing:
        one policy question, one audit entry (110103). ``binding`` is the caller's session id;
        ``patient_id``, when given, must be the study's patient (else: not found)."""
        archive, store = self.archive, self.archive.store
        attempt = Attempt(ctx, EventType.DICOM_INSTANCES_ACCESSED, "read", EventAction.READ)

        def work(conn: Connection) -> Viewing:
            study = self._authorized_study(conn, attempt, study_uid, patient_id)
            series_key = None
            if series_uid is not None:
                series_key = store.key_of(store.series_index(series_uid))
            rows = store.instance_rows(conn, study, series_key=series_key, with_meta=True)
            if not rows:
                raise StudyNotFound("no such series in this study")
            attrs = store.open_value(
                study.owner, SEALED_STUDY, study.study_key, study.version, study.sealed
            )
            expires = ctx.now + self.lifetime
            claims = Claims(
                ctx.actor.user_id,
                binding_of(binding),
                study_uid,
                series_uid,
                ctx.purpose,
                int(expires.timestamp()),
            )
            return Viewing(
                ticket=self.tickets.seal(claims),
                expires_at=expires,
                patient_id=study.patient_id or "",
                study_uid=study_uid,
                study_date=_text(attrs, "00080020"),
                study_description=_text(attrs, "00081030"),
                patient_name=_text(attrs, "00100010"),
                series=self._series(rows),
            )

        return archive.door.read(attempt, work)

    def _authorized_study(
        self, conn: Connection, attempt: Attempt, study_uid: str, patient_id: str | None
    ) -> StudyRow:
        """The study, the actor allowed to read it. A study of another patient than the one
        named is not found, before the policy is asked: it answers as an unknown UID does (a
        refusal would tell that the UID exists, and whose care team it is outside of)."""
        study = self.archive.store.find_study(conn, study_uid)
        if study is None or (patient_id is not None and study.patient_id != patient_id):
            raise StudyNotFound("no such study")
        resource = Resource(STUDY_KIND, study.patient_id, study.study_key, study.sensitivity)
        self.archive.door.authorize(conn, attempt, Action.READ, resource)
        return study

    @staticmethod
    def _series(rows: list[tuple[InstanceRow, dict[str, Any] | None]]) -> tuple[ViewSeries, ...]:
        grouped: dict[str, list[tuple[InstanceRow, dict[str, Any] | None]]] = {}
        for row, meta in rows:
            grouped.setdefault(row.series_uid, []).append((row, meta))
        out = []
        for series_uid, members in grouped.items():
            meta = members[0][1]
            number = _value(meta, "00200011")
            try:
                module = PixelModule.from_json(meta or {}, members[0][0].transfer_syntax_uid)
                window = module.window
            except Exception:
                window = None
            out.append(
                ViewSeries(
                    series_uid=series_uid,
                    number=int(number[0]) if number else None,
                    modality=_text(meta, "00080060") or None,
                    description=_text(meta, "0008103E"),
                    frames=_frames(members),
                    window=window,
                )
            )
        return tuple(sorted(out, key=lambda s: (s.number is None, s.number or 0, s.series_uid)))

    # -- frames under a ticket: no audit entry unless refused -----------------------------------

    def frame(
        self, ctx: RequestContext, ticket: str, binding: str, sop_uid: str, number: int
    ) -> FrameSource:
        """Frame ``number`` of instance ``sop_uid`` of what the ticket opened."""
        claims, ctx = self._claims(ctx, ticket, binding)
        return self._resume(ctx, claims, claims.series_uid, sop_uid, number)

    def series_thumbnail(
        self, ctx: RequestContext, ticket: str, binding: str, series_uid: str
    ) -> FrameSource:
        """The middle frame of a series of what the ticket opened (its thumbnail)."""
        claims, ctx = self._claims(ctx, ticket, binding)
        if claims.series_uid is not None and claims.series_uid != series_uid:
            raise StudyNotFound("no such series in what was opened")
        return self._resume(ctx, claims, series_uid, None, None)

    def _claims(
        self, ctx: RequestContext, ticket: str, binding: str
    ) -> tuple[Claims, RequestContext]:
        claims = self.tickets.open(ticket, ctx.now)
        if (
            claims is None
            or claims.actor_id != ctx.actor.user_id
            or claims.binding != binding_of(binding)
        ):
            self._refuse(ctx)
        return claims, ctx.for_purpose(claims.purpose)

    def _refuse(self, ctx: RequestContext) -> NoReturn:
        """An audited refusal of a ticket that does not hold."""
        attempt = Attempt(ctx, EventType.DICOM_INSTANCES_ACCESSED, "read", EventAction.READ)
        door = self.archive.door

        def work(conn: Connection) -> None:
            door.rule(attempt, Decision(False, TICKET_REFUSED))

        door.read(attempt, work)
        raise AssertionError("door.rule refuses")  # pragma: no cover

    def _resume(
        self,
        ctx: RequestContext,
        claims: Claims,
        series_uid: str | None,
        sop_uid: str | None,
        number: int | None,
    ) -> FrameSource:
        source = self._load(ctx, claims, series_uid, sop_uid, number, check=True)
        if source is None:
            # no longer allowed: the audited path decides again, records the refusal, raises
            self.archive.open_study(ctx, claims.study_uid, claims.series_uid)
            source = self._load(ctx, claims, series_uid, sop_uid, number, check=False)
        if source is None:  # pragma: no cover - the study vanished between two reads
            raise StudyNotFound("no such study")
        return source

    def _load(
        self,
        ctx: RequestContext,
        claims: Claims,
        series_uid: str | None,
        sop_uid: str | None,
        number: int | None,
        *,
        check: bool,
    ) -> FrameSource | None:
        """The frame, after a silent policy check (``check``); None when that check fails."""
        archive, store = self.archive, self.archive.store
        with archive.door.reads.connect() as conn, conn.begin():
            study = store.find_study(conn, claims.study_uid)
            if study is None:
                return None
            if check:
                resource = Resource(
                    STUDY_KIND, study.patient_id, study.study_key, study.sensitivity
                )
                guard = archive.door.guard
                decision = guard.check(conn, ctx.actor, Action.READ, resource, ctx.purpose, ctx.now)
                if not decision.allowed or decision.requires:
                    return None
            series_key = store.key_of(store.series_index(series_uid)) if series_uid else None
            if sop_uid is None:
                rows = store.instance_rows(conn, study, series_key=series_key)
                if not rows:
                    raise StudyNotFound("no such series in what was opened")
                ordered = sorted(
                    (r for r, _ in rows), key=lambda r: (r.instance_number or 0, r.sop_uid)
                )
                sop_uid, number = ordered[len(ordered) // 2].sop_uid, 1
            found = store.instance_rows(
                conn,
                study,
                series_key=series_key,
                sop_index=store.sop_index(sop_uid),
                with_meta=True,
            )
            if not found:
                raise StudyNotFound("no such instance in what was opened")
            row, meta = found[0]
            owner = study.owner
        pixels = StudyReader(store, owner, [row]).read_frame(sop_uid, number or 1)
        return FrameSource(pixels, PixelModule.from_json(meta or {}, row.transfer_syntax_uid))


# -- frames of a reader already opened (WADO-RS rendered: one opening per request) --------------


def pixel_module(reader: StudyReader, sop_uid: str) -> PixelModule:
    """The pixel module of an instance of ``reader``: its header decrypted (the elements before
    Pixel Data; pydicom stops there), not its pixels."""
    match = next((m for m in reader.instances if m.sop_instance_uid == sop_uid), None)
    if match is None:
        raise StudyNotFound("no such instance in what was opened")
    with reader.open_instance(sop_uid) as stream:
        ds = pydicom.dcmread(stream, stop_before_pixels=True)
    return PixelModule.from_dataset(ds, match.transfer_syntax_uid)


def frame_source(reader: StudyReader, sop_uid: str, number: int) -> FrameSource:
    """Frame ``number`` (1-based) of an instance of ``reader``, ready to render."""
    module = pixel_module(reader, sop_uid)
    return FrameSource(reader.read_frame(sop_uid, number), module)


def representative(reader: StudyReader, series_uid: str | None = None) -> str:
    """The SOP Instance UID a study or series thumbnail shows: the middle instance (by
    instance number) of the series (the first series of the study when none is named)."""
    instances = [m for m in reader.instances if series_uid in (None, m.series_uid)]
    if not instances:
        raise StudyNotFound("no such series in what was opened")
    first = instances[0].series_uid
    members = sorted(
        (m for m in instances if m.series_uid == first),
        key=lambda m: (m.instance_number or 0, m.sop_instance_uid),
    )
    return members[len(members) // 2].sop_instance_uid
