"""Row integrity: which row-MAC key belongs to which database, and the row specs that use it.

The stores that write the rows a decision rests on (the FHIR index, care relationships,
namings, break-the-glass grants, consents, processing restrictions, accounts) run as plain
functions on the caller's connection. Rather than thread a key through every call, the
composition root binds the platform's :class:`~secretum.crypto.row_mac.RowMac` to its main
engine once (:func:`bind`); a store finds it from any connection of that engine
(:func:`row_mac`), readers included (they share the engine's dialect). A connection of an engine
with no key bound gets :class:`MissingRowKey`: nothing is written untagged, nothing is trusted
unchecked.

A :class:`RowSpec` names what one table's tag covers: the table, its identity (primary key)
and the columns a decision reads. A row whose tag is missing or wrong raises
:class:`RowTampered` (an :class:`~secretum.crypto.errors.IntegrityError`): the request that read
it is refused and audited as tampering (:class:`secretum.access.door.Door`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.interfaces import Dialect

from secretum.crypto.errors import IntegrityError
from secretum.crypto.row_mac import RowMac, Value

#: The column every authenticated table carries.
ROW_MAC_COLUMN = "row_mac"

#: Keyed by the engine's dialect object: one per ``create_engine``, shared by the engines derived
#: from it (``execution_options``: the readers), and kept across ``dispose()`` (which replaces
#: the pool).
_KEYS: WeakKeyDictionary[Dialect, RowMac] = WeakKeyDictionary()


class MissingRowKey(RuntimeError):
    """No row-MAC key is bound to this database's engine (see :func:`bind`)."""


class RowTampered(IntegrityError):
    """A row's tag is missing or wrong: it was written, changed or copied outside Secretum.

    The message names the table and the row's id only (never a value)."""

    def __init__(self, table: str, row_id: str) -> None:
        super().__init__(f"row {table}/{row_id} failed authentication (tampered)")
        self.table = table
        self.row_id = row_id


def bind(engine: Engine, mac: RowMac) -> None:
    """Bind ``mac`` to ``engine`` (and every engine derived from it: readers, options)."""
    _KEYS[engine.dialect] = mac


def row_mac(conn: Connection) -> RowMac:
    """The row-MAC key of ``conn``'s database; MissingRowKey if none was bound."""
    mac = _KEYS.get(conn.dialect)
    if mac is None:
        raise MissingRowKey("no row-MAC key is bound to this database")
    return mac


_PLAIN = frozenset({str, bytes, int, bool, datetime, type(None)})


def _value(value: Any) -> Value:
    if type(value) in _PLAIN:  # the common case: what the database gives back
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        return str(value)  # an enum member: its value
    if isinstance(value, (bytes, int, datetime)):
        return value
    raise TypeError(f"cannot authenticate a column of type {type(value).__name__}")


@dataclass(frozen=True)
class RowSpec:
    """What the tag of a row of ``table`` covers: ``identity`` columns, then ``fields``."""

    table: str
    identity: tuple[str, ...]
    fields: tuple[str, ...]

    def _parts(self, row: Mapping[Any, Any]) -> tuple[list[Value], list[tuple[str, Value]]]:
        ids = [_value(row[name]) for name in self.identity]
        return ids, [(name, _value(row[name])) for name in self.fields]

    def tag(self, conn: Connection, row: Mapping[Any, Any]) -> bytes:
        """The tag of ``row`` (its columns by name) under ``conn``'s database key."""
        ids, fields = self._parts(row)
        return row_mac(conn).tag(self.table, ids, fields)

    def tagged(self, conn: Connection, row: Mapping[Any, Any]) -> dict[str, Any]:
        """``row`` with its ``row_mac`` column added (values of an INSERT or UPDATE)."""
        return {**row, ROW_MAC_COLUMN: self.tag(conn, row)}

    def holds(self, conn: Connection, row: Mapping[Any, Any], tag: bytes | None = None) -> bool:
        """Whether ``row``'s tag (``tag``, default its ``row_mac`` column) is right."""
        ids, fields = self._parts(row)
        stored = tag if tag is not None else row.get(ROW_MAC_COLUMN)
        return row_mac(conn).verify(self.table, ids, fields, stored)

    def check(self, conn: Connection, row: Mapping[Any, Any], tag: bytes | None = None) -> None:
        """RowTampered unless ``row``'s tag is right."""
        if not self.holds(conn, row, tag):
            raise RowTampered(self.table, "/".join(str(row[n]) for n in self.identity))
