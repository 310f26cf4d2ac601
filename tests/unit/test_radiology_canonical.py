"""The canonical form of a report (RFC 8785 JCS without meta and signature): stable under
member order and the server's stamp, changed by any change of content."""

from __future__ import annotations

import json
from typing import Any

import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from secretum.radiology.canonical import (
    SIGNED_VERSION_EXTENSION,
    StoredSignature,
    canonical_form,
    content_hash,
    set_signed_version,
    signed_version_of,
)
from secretum.records.fhir import SIGNATURE_EXTENSION


def report(text: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": "final",
        "code": {"text": "imaging"},
        "subject": {"reference": "Patient/p1"},
        "conclusion": text,
        "meta": {"versionId": "2", "lastUpdated": "2026-12-01T10:00:00Z"},
    }
    set_signed_version(body, 2)
    return body


SIG = StoredSignature(
    "rad", "2026-12-01T10:00:00Z", b"h" * 32, b"c", b"a", b"{}", b"s", None, "x", "o"
)


@given(st.text(min_size=1, max_size=200))
def test_member_order_meta_and_signature_do_not_change_the_form(text: str) -> None:
    body = report(text)
    reordered = dict(reversed(list(body.items())))
    reordered["meta"] = {"versionId": "3"}
    reordered["extension"] = [*body["extension"], SIG.extension()]
    assert canonical_form(reordered) == canonical_form(body)
    assert b"meta" not in canonical_form(body)
    assert SIGNATURE_EXTENSION.encode() not in canonical_form(reordered)
    assert json.loads(canonical_form(body))["conclusion"] == text
    assert canonical_form(body) == rfc8785.dumps({k: v for k, v in body.items() if k != "meta"})


@given(st.text(min_size=1, max_size=200), st.text(min_size=1, max_size=200))
def test_any_change_of_text_changes_the_hash(a: str, b: str) -> None:
    if a != b:
        assert content_hash(report(a)) != content_hash(report(b))


def test_the_signed_version_is_part_of_the_form() -> None:
    body = report("Normal.")
    later = report("Normal.")
    set_signed_version(later, 3)
    assert signed_version_of(later) == 3
    assert [e["url"] for e in later["extension"]] == [SIGNED_VERSION_EXTENSION]
    assert content_hash(body) != content_hash(later)


def test_the_signature_extension_round_trips() -> None:
    body = report("Normal.")
    body["extension"].append(SIG.extension())
    assert StoredSignature.of(body) == SIG
    broken = report("Normal.")
    broken["extension"].append({"url": SIGNATURE_EXTENSION, "extension": [{"url": "signer"}]})
    assert StoredSignature.of(broken) is None
