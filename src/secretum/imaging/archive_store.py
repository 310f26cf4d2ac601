"""Repository of the imaging archive: index rows, sealed attributes, encrypted blobs.

Works in the caller's transaction (the service's door) and knows nothing of the policy. Keys:
every sealed value and every blob of a study is under its *owner*'s data key (the patient, or
the study's holding owner while it matches no patient, see
:mod:`secretum.imaging.archive_model`):

* attributes: :func:`secretum.crypto.records.seal` with the record key, context
  ``RecordContext(kind, item key, owner, version)``;
* an instance: the Part-10 bytes as received, streaming AEAD (1 MiB segments) with the file key,
  associated data :func:`blob_context` (study, series and SOP Instance UIDs, owner, version):
  a blob moved to another instance, study or patient, or an older version put back in place of
  a re-encrypted one, does not decrypt.

The study row's tag (:data:`STUDY_SPEC`) covers the study <-> patient link, the holding owner,
the sensitivity label and the version: a study moved to another patient, or relabelled, in the
database alone is refused as tampered.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from secretum.access.model import Sensitivity
from secretum.crypto.blind_index import BlindIndex
from secretum.crypto.context import RecordContext, encode_fields
from secretum.crypto.records import key_id_of, open_sealed, seal
from secretum.crypto.streaming import DecryptingReader, decrypt_stream, encrypt_stream
from secretum.imaging.archive_model import (
    DIGEST_KIND,
    HOLDING_PREFIX,
    PATIENT_ID_KIND,
    SEALED_LAYOUT,
    SEALED_META,
    SEALED_SERIES,
    SEALED_STUDY,
    SERIES_UID_KIND,
    SOP_UID_KIND,
    STUDY_UID_KIND,
)
from secretum.imaging.layout import PixelLayout
from secretum.imaging.tables import (
    imaging_instances,
    imaging_patient_ids,
    imaging_series,
    imaging_studies,
)
from secretum.keys.keyring import KeyRing
from secretum.records.search import IDENTIFIER_KINDS
from secretum.records.tables import fhir_identifiers
from secretum.storage.blobs import BlobStore
from secretum.storage.integrity import RowSpec

#: What the tag of a study row covers: the link to the patient (or the holding owner), the
#: label and the version of every ciphertext of the study.
STUDY_SPEC = RowSpec(
    "imaging_studies",
    ("study_key",),
    ("study_uid_index", "patient_id", "holding_owner", "sensitivity", "version"),
)
#: What the tag of a registered DICOM patient identifier covers: which patient it routes to.
PATIENT_ID_SPEC = RowSpec("imaging_patient_ids", ("blind_value", "patient_id"), ())

#: Issuers whose PatientID is an INS (the FHIR repository's INS systems, as OIDs).
INS_ISSUERS = frozenset(
    system.removeprefix("urn:oid:") for system, kind in IDENTIFIER_KINDS.items() if kind == "ins"
)


def blob_context(study_uid: str, series_uid: str, sop_uid: str, owner: str, version: int) -> bytes:
    """Associated data of an instance's blob."""
    return encode_fields("imaging-instance", study_uid, series_uid, sop_uid, owner, version)


def holding_owner(study_key: str) -> str:
    return HOLDING_PREFIX + study_key


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class StudyRow:
    study_key: str
    patient_id: str | None
    holding_owner: str | None
    sensitivity: Sensitivity
    version: int
    sealed: bytes
    unmatched_reason: str | None
    created_at: datetime

    @property
    def owner(self) -> str:
        """Whose key seals the study: the patient's, or the holding key's."""
        owner = self.patient_id or self.holding_owner
        if owner is None:  # the tag covers both columns: only a bug gets here
            raise ValueError("a study has a patient or a holding owner")
        return owner


@dataclass(frozen=True)
class InstanceRow:
    """An instance's index row with its layout unsealed."""

    instance_key: str
    series_key: str
    sop_class_uid: str
    transfer_syntax_uid: str
    instance_number: int | None
    number_of_frames: int
    size: int
    blob_name: str
    key_id: bytes
    version: int
    study_uid: str
    series_uid: str
    sop_uid: str
    layout: PixelLayout | None


_STUDY_BY_INDEX = select(imaging_studies).where(
    imaging_studies.c.study_uid_index == bindparam("uid_index")
)
_STUDY_BY_KEY = select(imaging_studies).where(imaging_studies.c.study_key == bindparam("key"))
_INSTANCE_BY_INDEX = select(
    imaging_instances.c.instance_key,
    imaging_instances.c.study_key,
    imaging_instances.c.digest_index,
).where(imaging_instances.c.sop_uid_index == bindparam("uid_index"))


class ArchiveStore:
    """Index, sealed attributes and blobs of the archive (see the module docstring)."""

    def __init__(self, keyring: KeyRing, blobs: BlobStore, blind_index: BlindIndex) -> None:
        self.keyring = keyring
        self.blobs = blobs
        self.blind_index = blind_index

    # -- blind indexes ------------------------------------------------------------------------

    def study_index(self, uid: str) -> bytes:
        return self.blind_index(STUDY_UID_KIND, uid)

    def series_index(self, uid: str) -> bytes:
        return self.blind_index(SERIES_UID_KIND, uid)

    def sop_index(self, uid: str) -> bytes:
        return self.blind_index(SOP_UID_KIND, uid)

    def digest_index(self, digest: bytes) -> bytes:
        return self.blind_index(DIGEST_KIND, digest.hex())

    def patient_id_index(self, issuer: str, patient_id: str) -> bytes:
        # NUL cannot occur in a DICOM LO value: the pair encodes unambiguously.
        return self.blind_index(PATIENT_ID_KIND, f"{issuer.strip()}\x00{patient_id.strip()}")

    @staticmethod
    def key_of(index: bytes) -> str:
        """The internal key of a study or series: derived from its blind index (so concurrent
        ingests of one study agree on it), 128 bits, hex."""
        return index[:16].hex()

    # -- patient matching ---------------------------------------------------------------------

    def register_identifier(
        self, conn: Connection, patient_id: str, issuer: str, dicom_patient_id: str, now: datetime
    ) -> None:
        """Register the DICOM (issuer, PatientID) pair of ``patient_id`` (idempotent)."""
        blind = self.patient_id_index(issuer, dicom_patient_id)
        t = imaging_patient_ids.c
        found = conn.execute(
            select(t.patient_id).where(t.blind_value == blind, t.patient_id == patient_id)
        ).first()
        if found is None:
            row = {"blind_value": blind, "patient_id": patient_id, "created_at": now}
            conn.execute(insert(imaging_patient_ids).values(**PATIENT_ID_SPEC.tagged(conn, row)))

    def match_patient(
        self, conn: Connection, issuer: str | None, dicom_patient_id: str | None
    ) -> tuple[str | None, str]:
        """``(patient id, "matched")`` when exactly one patient holds the pair (or the INS),
        else ``(None, "no-match" | "ambiguous")``. Each registered pair's tag is checked."""
        if not dicom_patient_id:
            return None, "no-match"
        holders: set[str] = set()
        if issuer:
            t = imaging_patient_ids.c
            blind = self.patient_id_index(issuer, dicom_patient_id)
            for row in conn.execute(select(imaging_patient_ids).where(t.blind_value == blind)):
                PATIENT_ID_SPEC.check(conn, row._mapping)
                holders.add(row.patient_id)
            if issuer.strip() in INS_ISSUERS:
                f = fhir_identifiers.c
                ins = self.blind_index("ins", dicom_patient_id)
                query = select(f.patient_id).where(f.kind == "ins", f.blind_value == ins)
                holders.update(conn.execute(query).scalars())
        if len(holders) == 1:
            return holders.pop(), "matched"
        return None, "ambiguous" if holders else "no-match"

    # -- studies ------------------------------------------------------------------------------

    def _study(self, conn: Connection, row: RowMapping | None) -> StudyRow | None:
        if row is None:
            return None
        STUDY_SPEC.check(conn, row)
        return StudyRow(
            row["study_key"],
            row["patient_id"],
            row["holding_owner"],
            Sensitivity(row["sensitivity"]),
            row["version"],
            row["sealed"],
            row["unmatched_reason"],
            row["created_at"],
        )

    def find_study(self, conn: Connection, uid: str) -> StudyRow | None:
        found = conn.execute(_STUDY_BY_INDEX, {"uid_index": self.study_index(uid)})
        return self._study(conn, found.mappings().first())

    def find_study_by_key(self, conn: Connection, study_key: str) -> StudyRow | None:
        return self._study(conn, conn.execute(_STUDY_BY_KEY, {"key": study_key}).mappings().first())

    def studies_of(
        self, conn: Connection, patient_id: str, sensitivities: Collection[Sensitivity]
    ) -> list[StudyRow]:
        t = imaging_studies.c
        query = (
            select(imaging_studies)
            .where(t.patient_id == patient_id, t.sensitivity.in_([str(s) for s in sensitivities]))
            .order_by(t.created_at, t.study_key)
        )
        rows = [self._study(conn, r) for r in conn.execute(query).mappings()]
        return [r for r in rows if r is not None]

    def unmatched(self, conn: Connection) -> list[StudyRow]:
        t = imaging_studies.c
        query = select(imaging_studies).where(t.patient_id.is_(None)).order_by(t.created_at)
        rows = [self._study(conn, r) for r in conn.execute(query).mappings()]
        return [r for r in rows if r is not None]

    def sensitivities(self, conn: Connection, patient_id: str) -> set[Sensitivity]:
        t = imaging_studies.c
        query = select(t.sensitivity).where(t.patient_id == patient_id).distinct()
        return {Sensitivity(s) for s in conn.execute(query).scalars()}

    def insert_study(
        self,
        conn: Connection,
        *,
        study_key: str,
        uid_index: bytes,
        patient_id: str | None,
        holding: str | None,
        sensitivity: Sensitivity,
        sealed: bytes,
        unmatched_reason: str | None,
        now: datetime,
    ) -> None:
        row = {
            "study_key": study_key,
            "study_uid_index": uid_index,
            "patient_id": patient_id,
            "holding_owner": holding,
            "sensitivity": str(sensitivity),
            "version": 1,
        }
        conn.execute(
            insert(imaging_studies).values(
                **STUDY_SPEC.tagged(conn, row),
                sealed=sealed,
                unmatched_reason=unmatched_reason,
                created_at=now,
                updated_at=now,
            )
        )

    def raise_sensitivity(self, conn: Connection, study: StudyRow, now: datetime) -> None:
        """Label a study restricted (labels are sticky: never lowered here)."""
        row = {
            "study_key": study.study_key,
            "study_uid_index": self._uid_index_of(conn, study.study_key),
            "patient_id": study.patient_id,
            "holding_owner": study.holding_owner,
            "sensitivity": str(Sensitivity.RESTRICTED),
            "version": study.version,
        }
        conn.execute(
            update(imaging_studies)
            .where(imaging_studies.c.study_key == study.study_key)
            .values(
                sensitivity=row["sensitivity"], updated_at=now, row_mac=STUDY_SPEC.tag(conn, row)
            )
        )

    @staticmethod
    def _uid_index_of(conn: Connection, study_key: str) -> bytes:
        t = imaging_studies.c
        value: bytes = conn.execute(
            select(t.study_uid_index).where(t.study_key == study_key)
        ).scalar_one()
        return value

    # -- series -------------------------------------------------------------------------------

    def existing_series(self, conn: Connection, keys: Iterable[str]) -> set[str]:
        t = imaging_series.c
        wanted = list(keys)
        if not wanted:
            return set()
        return set(conn.execute(select(t.series_key).where(t.series_key.in_(wanted))).scalars())

    def insert_series(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if rows:
            conn.execute(insert(imaging_series), rows)

    def series_of(self, conn: Connection, study: StudyRow) -> list[dict[str, Any]]:
        """Series rows of ``study`` (attributes unsealed) with their instance counts."""
        s, i = imaging_series.c, imaging_instances.c
        counts = (
            select(i.series_key, func.count().label("n"))
            .where(i.study_key == study.study_key)
            .group_by(i.series_key)
            .subquery()
        )
        query = (
            select(s.series_key, s.modality, s.version, s.sealed, counts.c.n)
            .select_from(imaging_series.outerjoin(counts, counts.c.series_key == s.series_key))
            .where(s.study_key == study.study_key)
            .order_by(s.created_at, s.series_key)
        )
        out = []
        for r in conn.execute(query).mappings():
            attrs = self.open_value(
                study.owner, SEALED_SERIES, r["series_key"], r["version"], r["sealed"]
            )
            out.append({**dict(r), "attributes": attrs, "n": r["n"] or 0})
        return out

    # -- instances ----------------------------------------------------------------------------

    def find_instance(self, conn: Connection, sop_uid_index: bytes) -> RowMapping | None:
        return conn.execute(_INSTANCE_BY_INDEX, {"uid_index": sop_uid_index}).mappings().first()

    @staticmethod
    def same_digest(stored: bytes, new: bytes) -> bool:
        return hmac.compare_digest(stored, new)

    def insert_instances(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if rows:
            conn.execute(insert(imaging_instances), rows)

    def instance_rows(
        self,
        conn: Connection,
        study: StudyRow,
        *,
        series_key: str | None = None,
        sop_index: bytes | None = None,
        with_meta: bool = False,
    ) -> list[tuple[InstanceRow, dict[str, Any] | None]]:
        """Instances of ``study`` (of one series, or one instance), layouts unsealed, in
        series and instance-number order; with ``with_meta``, their DICOM JSON too."""
        t = imaging_instances.c
        columns = [c for c in imaging_instances.c if with_meta or c.name != "meta"]
        query = select(*columns).where(t.study_key == study.study_key)
        if series_key is not None:
            query = query.where(t.series_key == series_key)
        if sop_index is not None:
            query = query.where(t.sop_uid_index == sop_index)
        query = query.order_by(t.series_key, t.instance_number, t.created_at, t.instance_key)
        out = []
        for r in conn.execute(query).mappings():
            out.append(
                (self._instance(study.owner, r), self._meta(study.owner, r) if with_meta else None)
            )
        return out

    def _instance(self, owner: str, r: RowMapping) -> InstanceRow:
        layout = self.open_value(owner, SEALED_LAYOUT, r["instance_key"], r["version"], r["layout"])
        pixels = layout.get("pixels")
        return InstanceRow(
            r["instance_key"],
            r["series_key"],
            r["sop_class_uid"],
            r["transfer_syntax_uid"],
            r["instance_number"],
            r["number_of_frames"],
            int(layout["size"]),
            r["blob_name"],
            r["key_id"],
            r["version"],
            layout["study"],
            layout["series"],
            layout["sop"],
            None if pixels is None else PixelLayout.from_json(pixels),
        )

    def _meta(self, owner: str, r: RowMapping) -> dict[str, Any]:
        meta: dict[str, Any] = self.open_value(
            owner, SEALED_META, r["instance_key"], r["version"], r["meta"]
        )
        return meta

    # -- sealing --------------------------------------------------------------------------------

    def seal_value(self, owner: str, kind: str, item_key: str, version: int, value: Any) -> bytes:
        key = self.keyring.data_key(owner, create=True)
        return seal(key, _dumps(value), RecordContext(kind, item_key, owner, version))

    def open_value(self, owner: str, kind: str, item_key: str, version: int, sealed: bytes) -> Any:
        key = self.keyring.data_key_for(owner, key_id_of(sealed))
        return json.loads(open_sealed(key, sealed, RecordContext(kind, item_key, owner, version)))

    # -- blobs ----------------------------------------------------------------------------------

    def write_blob(self, owner: str, associated_data: bytes, src: BinaryIO) -> tuple[str, bytes]:
        """Encrypt ``src`` into a new blob under ``owner``'s file key: ``(name, key id)``."""
        key = self.keyring.data_key(owner, create=True)
        name = self.blobs.new_name()
        with self.blobs.writer(name) as out:
            encrypt_stream(key.file_key, src, out, associated_data)
        return name, key.key_id

    def _file_key(self, owner: str, row: InstanceRow) -> bytes:
        return self.keyring.data_key_for(owner, row.key_id).file_key

    def _context(self, owner: str, row: InstanceRow) -> bytes:
        return blob_context(row.study_uid, row.series_uid, row.sop_uid, owner, row.version)

    def open_instance(self, owner: str, row: InstanceRow) -> DecryptingReader:
        """A seekable reader of the instance's plaintext (its size proven); caller closes."""
        key = self._file_key(owner, row)
        blob = self.blobs.open(row.blob_name)
        try:
            return _OwningReader(key, blob, self._context(owner, row), row.size)
        except BaseException:
            blob.close()
            raise

    def copy_instance(self, owner: str, row: InstanceRow, dst: BinaryIO) -> int:
        """Decrypt the whole instance into ``dst`` (every segment authenticated)."""
        key = self._file_key(owner, row)
        with self.blobs.open(row.blob_name) as blob:
            return decrypt_stream(key, blob, dst, self._context(owner, row), expected_size=row.size)

    def delete_blobs(self, names: Iterable[str]) -> None:
        for name in names:
            self.blobs.delete(name)

    def orphans(self, conn: Connection, cutoff: datetime) -> list[str]:
        """The blobs written before ``cutoff`` that no instance row references (an ingest
        interrupted between its blob writes and its commit)."""
        names = list(self.blobs.names_before(cutoff))
        out: list[str] = []
        column = imaging_instances.c.blob_name
        for start in range(0, len(names), 500):
            batch = names[start : start + 500]
            referenced = set(conn.execute(select(column).where(column.in_(batch))).scalars())
            out.extend(name for name in batch if name not in referenced)
        return out

    # -- linking (reconciliation) ----------------------------------------------------------------

    def relink(
        self, conn: Connection, study: StudyRow, patient_id: str, now: datetime
    ) -> tuple[list[str], list[str]]:
        """Move an unmatched study under ``patient_id``'s key: every blob re-encrypted (a new
        blob each, streamed), every attribute re-sealed, versions bumped, the link tagged.
        Returns ``(old blob names, new blob names)``: the caller deletes the new ones if the
        transaction fails, the old ones once it committed (then shreds the holding key)."""
        old_owner, version = study.owner, study.version + 1
        old_blobs: list[str] = []
        new_blobs: list[str] = []
        try:
            for row, meta in self.instance_rows(conn, study, with_meta=True):
                with self.open_instance(old_owner, row) as plain:
                    context = blob_context(
                        row.study_uid, row.series_uid, row.sop_uid, patient_id, version
                    )
                    name, key_id = self.write_blob(patient_id, context, plain)  # type: ignore[arg-type]
                new_blobs.append(name)
                old_blobs.append(row.blob_name)
                layout = self._layout_value(row)
                conn.execute(
                    update(imaging_instances)
                    .where(imaging_instances.c.instance_key == row.instance_key)
                    .values(
                        blob_name=name,
                        key_id=key_id,
                        version=version,
                        layout=self.seal_value(
                            patient_id, SEALED_LAYOUT, row.instance_key, version, layout
                        ),
                        meta=self.seal_value(
                            patient_id, SEALED_META, row.instance_key, version, meta
                        ),
                    )
                )
            for series in self.series_of(conn, study):
                conn.execute(
                    update(imaging_series)
                    .where(imaging_series.c.series_key == series["series_key"])
                    .values(
                        version=version,
                        sealed=self.seal_value(
                            patient_id,
                            SEALED_SERIES,
                            series["series_key"],
                            version,
                            series["attributes"],
                        ),
                    )
                )
            attributes = self.open_value(
                old_owner, SEALED_STUDY, study.study_key, study.version, study.sealed
            )
            tagged = {
                "study_key": study.study_key,
                "study_uid_index": self._uid_index_of(conn, study.study_key),
                "patient_id": patient_id,
                "holding_owner": None,
                "sensitivity": str(study.sensitivity),
                "version": version,
            }
            conn.execute(
                update(imaging_studies)
                .where(imaging_studies.c.study_key == study.study_key)
                .where(imaging_studies.c.version == study.version)
                .values(
                    patient_id=patient_id,
                    holding_owner=None,
                    version=version,
                    unmatched_reason=None,
                    updated_at=now,
                    sealed=self.seal_value(
                        patient_id, SEALED_STUDY, study.study_key, version, attributes
                    ),
                    row_mac=STUDY_SPEC.tag(conn, tagged),
                )
            )
        except BaseException:
            self.delete_blobs(new_blobs)
            raise
        return old_blobs, new_blobs

    @staticmethod
    def _layout_value(row: InstanceRow) -> dict[str, Any]:
        return layout_value(row.study_uid, row.series_uid, row.sop_uid, row.size, row.layout)

    # -- erasure --------------------------------------------------------------------------------

    def erase_patient(self, conn: Connection, patient_id: str) -> list[str]:
        """Delete the index rows of every study of ``patient_id``; return their blob names
        (the caller deletes the blobs once the transaction committed)."""
        s, i = imaging_studies.c, imaging_instances.c
        keys = list(conn.execute(select(s.study_key).where(s.patient_id == patient_id)).scalars())
        names: list[str] = []
        if keys:
            names = list(conn.execute(select(i.blob_name).where(i.study_key.in_(keys))).scalars())
            conn.execute(delete(imaging_instances).where(i.study_key.in_(keys)))
            conn.execute(delete(imaging_series).where(imaging_series.c.study_key.in_(keys)))
            conn.execute(delete(imaging_studies).where(s.study_key.in_(keys)))
        conn.execute(
            delete(imaging_patient_ids).where(imaging_patient_ids.c.patient_id == patient_id)
        )
        return names


def layout_value(
    study_uid: str, series_uid: str, sop_uid: str, size: int, pixels: PixelLayout | None
) -> dict[str, Any]:
    """The sealed layout of an instance: its UIDs (bound to its blob), size and pixel layout."""
    return {
        "study": study_uid,
        "series": series_uid,
        "sop": sop_uid,
        "size": size,
        "pixels": None if pixels is None else pixels.to_json(),
    }


class _OwningReader(DecryptingReader):
    """A DecryptingReader that closes its blob when closed."""

    def __init__(self, key: bytes, blob: BinaryIO, associated_data: bytes, size: int) -> None:
        self._blob = blob
        super().__init__(key, blob, associated_data, expected_size=size)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._blob.close()
