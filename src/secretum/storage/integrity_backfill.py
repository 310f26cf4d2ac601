"""Tag, once, the rows written before row tags existed (migration ``0006_row_integrity``).

A database upgraded from a version without row tags has rows with no ``row_mac``: every read
that rests on them is refused as tampered (nothing is trusted unchecked). Run this once, right
after the upgrade, on a database you trust (e.g. straight after a verified backup), with the
platform's key bound (:func:`secretum.storage.integrity.bind`, done by the bootstrap)::

    from secretum.bootstrap import open_platform
    from secretum.storage.integrity_backfill import tag_untagged
    platform = open_platform()
    with platform.engine.begin() as conn:
        print(tag_untagged(conn))

It tags only rows that have no tag yet: a row whose tag is wrong stays refused. Whatever an
attacker inserted *before* the backfill gets tagged with the rest, which is why it is a
one-off step on a trusted database and not something the server does by itself.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection


def tag_untagged(conn: Connection) -> dict[str, int]:
    """Tag every untagged row of every authenticated table; how many per table."""
    from secretum.consent.store import CONSENT_SPEC
    from secretum.consent.tables import consent_withdrawals, consents
    from secretum.identity.accounts import ACCOUNT_SPEC
    from secretum.identity.tables import accounts
    from secretum.policy.care import CARE_SPEC, NAMED_SPEC
    from secretum.policy.grants import GRANT_SPEC
    from secretum.policy.restriction import RESTRICTION_SPEC
    from secretum.policy.tables import (
        break_glass_grants,
        care_relationships,
        processing_restrictions,
        restricted_data_named,
    )
    from secretum.records.search import INDEX_SPEC
    from secretum.records.tables import fhir_resources

    done: dict[str, int] = {}
    for spec, table in (
        (INDEX_SPEC, fhir_resources),
        (CARE_SPEC, care_relationships),
        (NAMED_SPEC, restricted_data_named),
        (GRANT_SPEC, break_glass_grants),
        (RESTRICTION_SPEC, processing_restrictions),
        (ACCOUNT_SPEC, accounts),
    ):
        query: Any = select(table).where(table.c.row_mac.is_(None))
        rows = conn.execute(query).mappings().all()
        for row in rows:
            key = [table.c[name] == row[name] for name in spec.identity]
            conn.execute(update(table).where(*key).values(row_mac=spec.tag(conn, row)))
        done[spec.table] = len(rows)
    joined = consents.outerjoin(
        consent_withdrawals, consent_withdrawals.c.consent_id == consents.c.consent_id
    )
    rows = (
        conn.execute(
            select(consents, consent_withdrawals.c.withdrawn_at)
            .select_from(joined)
            .where(consents.c.row_mac.is_(None))
        )
        .mappings()
        .all()
    )
    for row in rows:
        conn.execute(
            update(consents)
            .where(consents.c.consent_id == row["consent_id"])
            .values(row_mac=CONSENT_SPEC.tag(conn, row))
        )
    done[CONSENT_SPEC.table] = len(rows)
    return done
