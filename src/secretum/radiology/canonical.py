"""What a radiologist signs: the canonical form of a DiagnosticReport, and the signature
extension that carries the WebAuthn assertion.

Canonical form
--------------
The DiagnosticReport as stored (validated and normalised by the records), **without** its
``meta`` (the server's version stamp) and **without** the signature extension
(:data:`~secretum.records.fhir.SIGNATURE_EXTENSION`), serialised with the JSON Canonicalization
Scheme (RFC 8785, the ``rfc8785`` package): UTF-8, object members sorted by their UTF-16 code
units, no whitespace, numbers in their ECMAScript shortest form. The WebAuthn challenge is the
SHA-256 of those bytes (32 bytes).

The signed body names its own id and, in the extension :data:`SIGNED_VERSION_EXTENSION`, the
version number it is stored as: an assertion over one report's version verifies for no other
report and no other version (a signature copied into a later version, or onto another report,
fails), and its ``status`` (``final`` for the first signature, ``amended`` after) and ``issued``
time are part of what is signed.

Signature extension (FHIR, on the DiagnosticReport; sub-extensions)
-------------------------------------------------------------------
``signer`` (valueReference Practitioner/<id>), ``when`` (valueInstant), ``contentSha256``,
``credentialId``, ``authenticatorData``, ``clientDataJSON``, ``signature``, ``userHandle``
(valueBase64Binary, standard base64), ``rpId``, ``origin`` (valueString). The public key is
the one registered for ``credentialId`` (the signer's passkey or security key): verification
looks it up by that reference.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785

from secretum.records.fhir import SIGNATURE_EXTENSION

SIGNED_VERSION_EXTENSION = "urn:secretum:fhir:extension:signed-version"
#: LOINC 18748-4 "Diagnostic imaging study" (the report's code).
REPORT_CODE = {
    "coding": [
        {"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"}
    ]
}
#: System of a DICOM UID used as an identifier (RFC 3001 urn:oid).
DICOM_UID_SYSTEM = "urn:dicom:uid"


def without_signature(report: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``report`` without ``meta`` and without the signature extension."""
    body = copy.deepcopy(dict(report))
    body.pop("meta", None)
    extensions = [e for e in body.get("extension", []) if e.get("url") != SIGNATURE_EXTENSION]
    if extensions:
        body["extension"] = extensions
    else:
        body.pop("extension", None)
    return body


def canonical_form(report: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes of ``report`` without its meta and signature (see the module docstring)."""
    return rfc8785.dumps(without_signature(report))


def content_hash(report: Mapping[str, Any]) -> bytes:
    """SHA-256 of :func:`canonical_form`: the WebAuthn challenge of the signature."""
    return hashlib.sha256(canonical_form(report)).digest()


def signed_version_of(report: Mapping[str, Any]) -> int | None:
    for extension in report.get("extension", []):
        if extension.get("url") == SIGNED_VERSION_EXTENSION:
            value = extension.get("valueInteger")
            return value if isinstance(value, int) else None
    return None


def set_signed_version(report: dict[str, Any], version: int) -> None:
    extensions = [
        e for e in report.get("extension", []) if e.get("url") != SIGNED_VERSION_EXTENSION
    ]
    extensions.append({"url": SIGNED_VERSION_EXTENSION, "valueInteger": version})
    report["extension"] = extensions


def study_uid_of(report: Mapping[str, Any]) -> str | None:
    """The Study Instance UID a report is about (its ``imagingStudy`` identifier)."""
    for ref in report.get("imagingStudy", []):
        identifier = ref.get("identifier", {})
        value = identifier.get("value", "")
        if identifier.get("system") == DICOM_UID_SYSTEM and value.startswith("urn:oid:"):
            return str(value[len("urn:oid:") :])
    return None


@dataclass(frozen=True)
class StoredSignature:
    """The signature extension's values (bytes decoded)."""

    signer_id: str
    when: str
    content_sha256: bytes
    credential_id: bytes
    authenticator_data: bytes
    client_data_json: bytes
    signature: bytes
    user_handle: bytes | None
    rp_id: str
    origin: str

    def extension(self) -> dict[str, Any]:
        def b64(value: bytes) -> str:
            return base64.b64encode(value).decode("ascii")

        parts: list[dict[str, Any]] = [
            {"url": "signer", "valueReference": {"reference": f"Practitioner/{self.signer_id}"}},
            {"url": "when", "valueInstant": self.when},
            {"url": "contentSha256", "valueBase64Binary": b64(self.content_sha256)},
            {"url": "credentialId", "valueBase64Binary": b64(self.credential_id)},
            {"url": "authenticatorData", "valueBase64Binary": b64(self.authenticator_data)},
            {"url": "clientDataJSON", "valueBase64Binary": b64(self.client_data_json)},
            {"url": "signature", "valueBase64Binary": b64(self.signature)},
            {"url": "rpId", "valueString": self.rp_id},
            {"url": "origin", "valueString": self.origin},
        ]
        if self.user_handle:
            parts.append({"url": "userHandle", "valueBase64Binary": b64(self.user_handle)})
        return {"url": SIGNATURE_EXTENSION, "extension": parts}

    @classmethod
    def of(cls, report: Mapping[str, Any]) -> StoredSignature | None:
        """The signature of ``report``, or None (unsigned or malformed)."""
        for extension in report.get("extension", []):
            if extension.get("url") != SIGNATURE_EXTENSION:
                continue
            values: dict[str, Any] = {}
            for part in extension.get("extension", []):
                value = next((v for k, v in part.items() if k.startswith("value")), None)
                values[str(part.get("url"))] = value
            try:
                reference = str(values["signer"]["reference"])
                raw = _decoder(values)
                return cls(
                    signer_id=reference.removeprefix("Practitioner/"),
                    when=str(values["when"]),
                    content_sha256=raw("contentSha256"),
                    credential_id=raw("credentialId"),
                    authenticator_data=raw("authenticatorData"),
                    client_data_json=raw("clientDataJSON"),
                    signature=raw("signature"),
                    user_handle=raw("userHandle") if "userHandle" in values else None,
                    rp_id=str(values["rpId"]),
                    origin=str(values["origin"]),
                )
            except (KeyError, TypeError, ValueError):
                return None
        return None


def _decoder(values: Mapping[str, Any]) -> Callable[[str], bytes]:
    def raw(name: str) -> bytes:
        return base64.b64decode(str(values[name]), validate=True)

    return raw
