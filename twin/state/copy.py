"""Copying a state store into an empty one (`twin state copy`): a site moving its SQLite
`state.db` to PostgreSQL keeps its record, ids and audit chain.

Every table of the schema is copied row for row with its ids, in one write transaction on the
target (it commits whole or not at all) while the source's writer lock is held (a consistent
snapshot; no runtime can write to the source meanwhile). The target must be empty: a store with
any row of its own is refused before anything is written. Identity sequences on PostgreSQL are
set past the largest copied id. Before COMMIT the copied audit log is verified (chain, keys,
MACs, anchor) with the source's key ring and anchor file, so a copy that would not verify is
rolled back. Nothing is appended to the audit log: the target holds exactly the source's
entries, and its next entry chains onto the source's last.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twin.errors import BadInput
from twin.state import audit_log
from twin.state.base import StoreError
from twin.state.db import Db, SqliteDb, StoreIntegrityError
from twin.state.schema import ENSURED, SCHEMA_V1

if TYPE_CHECKING:
    from twin.audit import VerifyResult
    from twin.audit_keys import AuditFiles
    from twin.state.store import Store

BATCH_ROWS = 2000
"""Rows read from the source per query: a large table is never held in memory whole."""

_CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \(\s*(\w+) ([^,\n]*)")


class TargetNotEmpty(BadInput):
    """The target store already holds records: a copy goes only into a new, empty store."""


@dataclass(frozen=True)
class Table:
    name: str
    key: str
    """The primary key (the first column of every table of the schema): the copy's order."""
    identity: bool
    """Its key is an auto-increment id (an identity column on PostgreSQL)."""


@dataclass(frozen=True)
class CopyReport:
    source: str
    target: str
    rows: dict[str, int]
    """Rows copied per table (the same count is checked in the target before COMMIT)."""
    audit: VerifyResult
    """The copied audit log, verified in the target with the source's key ring and anchor."""


def tables() -> list[Table]:
    """Every table of the schema, each after the tables it references (creation order)."""

    def parse(text: str) -> list[Table]:
        return [Table(n, k, "AUTOINCREMENT" in rest) for n, k, rest in _CREATE.findall(text)]

    core = [t for t in parse(SCHEMA_V1) if t.name != "meta"]  # meta: copied key by key
    audit = Table("audit", audit_log.COLUMNS[0], identity=False)  # seq, its own numbering
    return [*core, audit, *parse("\n".join(s for group in ENSURED for s in group))]


def copy_store(source: Store, target: Store, *, files: AuditFiles | None = None) -> CopyReport:
    """Copy every record of `source` into the empty store `target`; see the module docstring.

    `files` are the audit key ring and anchor the log is verified with (default: the source's).
    Raises TargetNotEmpty (nothing written), or StoreError when the copy fails or its audit log
    does not verify (rolled back).
    """
    from twin import audit

    files = files or source.audit_files
    if source.schema_version != target.schema_version:
        raise StoreError(
            f"schema versions differ: {source.db.where} has {source.schema_version}, "
            f"{target.db.where} {target.schema_version}"
        )
    schema = tables()
    _unknown_tables(source.db, schema)
    rows: dict[str, int] = {}
    with source.write() as src, target.write() as dst:
        _refuse_non_empty(dst, schema)
        before = audit.verify(source, files=files)  # under the source's lock: what is copied
        if not before.ok:
            raise StoreError(f"{src.where}: the audit log does not verify ({before}): not copied")
        for table in schema:
            rows[table.name] = _copy_table(src, dst, table)
        for key, value in src.execute("SELECT key, value FROM meta ORDER BY key").fetchall():
            dst.set_meta(str(key), str(value))
        if dst.kind == "postgresql":
            for table in schema:
                if table.identity:
                    _advance_identity(dst, table)
        for table in schema:
            copied = _count(dst, table.name)
            if copied != rows[table.name]:
                raise StoreError(
                    f"{table.name}: {rows[table.name]} rows read, {copied} in the target"
                )
        result = audit.verify(target, files=files)
        if not result.ok:
            raise StoreError(f"{target.db.where}: the copied audit log does not verify ({result})")
    return CopyReport(source.db.where, target.db.where, rows, result)


def _unknown_tables(db: Db, schema: list[Table]) -> None:
    known = {t.name for t in schema} | {"meta"}
    if isinstance(db, SqliteDb):
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    else:
        sql = (
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    extra = sorted({str(r[0]) for r in db.query(sql)} - known)
    if extra:
        raise StoreError(
            f"{db.where} holds tables this program does not know ({', '.join(extra)}): not copied"
        )


def _refuse_non_empty(db: Db, schema: list[Table]) -> None:
    filled = [t.name for t in schema if db.execute(f"SELECT 1 FROM {t.name} LIMIT 1").fetchone()]
    if filled:
        raise TargetNotEmpty(
            f"{db.where} is not empty (rows in {', '.join(filled)}): a state store is copied "
            "only into a new, empty one (a new database or schema); nothing was copied"
        )


def _count(db: Db, table: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _copy_table(src: Db, dst: Db, table: Table) -> int:
    columns = sorted(src.columns(table.name))
    missing = set(columns) - dst.columns(table.name)
    if missing:
        raise StoreError(f"{dst.where}: table {table.name} lacks columns {sorted(missing)}")
    n = 0
    for batch in _batches(src, table, columns):
        _insert(dst, table.name, columns, batch)
        n += len(batch)
    return n


def _quoted(columns: list[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _batches(db: Db, table: Table, columns: list[str]) -> Iterator[list[tuple[Any, ...]]]:
    """The table's rows in key order, BATCH_ROWS at a time (keyset paging)."""
    key = columns.index(table.key)
    head = f"SELECT {_quoted(columns)} FROM {table.name}"
    order = f' ORDER BY "{table.key}" LIMIT ?'
    batch = [tuple(r) for r in db.execute(head + order, (BATCH_ROWS,)).fetchall()]
    while batch:
        yield batch
        if len(batch) < BATCH_ROWS:
            return
        after = batch[-1][key]
        sql = head + f' WHERE "{table.key}" > ?' + order
        batch = [tuple(r) for r in db.execute(sql, (after, BATCH_ROWS)).fetchall()]


def _insert(db: Db, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    if isinstance(db, SqliteDb):
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({_quoted(columns)}) VALUES ({marks})"
        try:
            db.conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise StoreIntegrityError(f"{db.where}: {table}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"{db.where}: {table}: {exc}") from exc
        return
    import psycopg

    from twin.state.postgres import PostgresDb

    assert isinstance(db, PostgresDb)
    try:  # COPY: one stream per batch instead of a round trip per row
        with (
            db.conn.cursor() as cur,
            cur.copy(f"COPY {table} ({_quoted(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        raise StoreError(f"{db.where}: {table}: {str(exc).strip()}") from exc


def _advance_identity(db: Db, table: Table) -> None:
    """The next id PostgreSQL hands out is past every copied one (SQLite's AUTOINCREMENT
    counter follows explicit ids by itself)."""
    db.execute(
        f"SELECT setval(pg_get_serial_sequence(?, ?), "
        f"COALESCE((SELECT MAX({table.key}) FROM {table.name}), 0) + 1, false)",
        (table.name, table.key),
    )
