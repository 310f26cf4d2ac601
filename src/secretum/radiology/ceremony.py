"""The steps of a signing ceremony (see :mod:`secretum.radiology.service`): the version to be
signed, the single-use ceremony that holds its hash, and the signature extension made from
the browser's assertion."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection, Engine
from webauthn.helpers import parse_authentication_credential_json
from webauthn.helpers.exceptions import WebAuthnException

from secretum.access.errors import Refused
from secretum.radiology.canonical import StoredSignature, set_signed_version
from secretum.radiology.tables import radiology_sign_challenges
from secretum.records.fhir import FhirRecord, instant, validate

REPORT = "DiagnosticReport"
CHALLENGE_TTL = timedelta(minutes=5)


class SigningRefused(Refused):
    """The assertion does not sign this report (unknown ceremony, wrong credential, bad
    signature, report changed meanwhile)."""

    status = 422
    code = "signature-refused"


@dataclass(frozen=True)
class SigningStart:
    challenge_id: str
    options: str  # PublicKeyCredentialRequestOptions JSON


def utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def to_sign(
    current: FhirRecord, signer_id: str, issued: datetime, previously_signed: bool
) -> dict[str, Any]:
    """The version to be signed, built from the current (draft) version: status ``final``
    (``amended`` after a first signature), ``issued``, the signer as ``resultsInterpreter``,
    the version number it will be stored as."""
    body = dict(current.resource)
    body.pop("meta", None)
    body["status"] = "amended" if previously_signed else "final"
    body["issued"] = instant(issued)
    body["resultsInterpreter"] = [{"reference": f"Practitioner/{signer_id}"}]
    body["extension"] = [e for e in body.get("extension", []) if isinstance(e, dict)]
    set_signed_version(body, current.version + 1)
    return validate(body, REPORT)


def open_ceremony(
    conn: Connection,
    *,
    report_id: str,
    signer_id: str,
    base_version: int,
    issued: datetime,
    content_sha256: bytes,
    expires_at: datetime,
) -> str:
    challenge_id = secrets.token_hex(16)
    conn.execute(
        insert(radiology_sign_challenges).values(
            challenge_id=challenge_id,
            report_id=report_id,
            signer_id=signer_id,
            base_version=base_version,
            issued_at=issued,
            content_sha256=content_sha256,
            expires_at=expires_at,
        )
    )
    return challenge_id


def take_ceremony(
    engine: Engine, challenge_id: str, report_id: str, signer: str, now: datetime
) -> dict[str, Any]:
    """Spend a ceremony (committed at once, even if what follows is refused: a replayed
    assertion never finds it again); SigningRefused if unknown, used, expired or another's."""
    t = radiology_sign_challenges.c
    with engine.begin() as conn:
        row = (
            conn.execute(select(radiology_sign_challenges).where(t.challenge_id == challenge_id))
            .mappings()
            .first()
        )
        conn.execute(delete(radiology_sign_challenges).where(t.challenge_id == challenge_id))
        conn.execute(delete(radiology_sign_challenges).where(t.expires_at < now))
    if (
        row is None
        or row["report_id"] != report_id
        or row["signer_id"] != signer
        or utc(row["expires_at"]) < now
    ):
        raise SigningRefused("the signing ceremony is unknown, used or expired")
    return dict(row)


def stored_signature(
    credential: str | dict[str, Any], signer: str, digest: bytes, now: datetime, rp_id: str
) -> StoredSignature:
    """The signature extension's values from a ``navigator.credentials.get`` response."""
    try:
        parsed = parse_authentication_credential_json(credential)
    except (WebAuthnException, ValueError, TypeError, KeyError):
        raise SigningRefused("the assertion is malformed") from None
    response = parsed.response
    try:
        origin = str(json.loads(response.client_data_json).get("origin", ""))
    except (ValueError, AttributeError):
        origin = ""
    return StoredSignature(
        signer_id=signer,
        when=instant(now),
        content_sha256=digest,
        credential_id=parsed.raw_id,
        authenticator_data=response.authenticator_data,
        client_data_json=response.client_data_json,
        signature=response.signature,
        user_handle=response.user_handle,
        rp_id=rp_id,
        origin=origin,
    )
