"""Bringing a database made by an earlier version up to the current schema.

`metadata.create_all` creates missing tables only: columns and indexes added to a table since
a user's `.payscore/sandbox.db` (or PostgreSQL schema) was created are added here, at startup,
by whichever process gets there first.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateColumn

from sandbox.db import metadata, write_tx


def upgrade(engine: Engine) -> None:
    """Add what the tables lack, in one pass over the schema: nullable or server-defaulted
    columns (ALTER TABLE ADD COLUMN) and indexes."""
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in columns or not (column.nullable or column.server_default):
                continue
            ddl = CreateColumn(column).compile(dialect=engine.dialect)
            _add_once(engine, lambda conn, d=ddl, t=table.name: conn.exec_driver_sql(
                          f"ALTER TABLE {t} ADD COLUMN {d}"),
                      lambda t=table.name, n=column.name: n in {
                          c["name"] for c in inspect(engine).get_columns(t)})
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name in indexes:
                continue
            _add_once(engine, lambda conn, i=index: i.create(conn, checkfirst=True),
                      lambda t=table.name, n=index.name: n in {
                          i["name"] for i in inspect(engine).get_indexes(t)})


def _add_once(engine: Engine, add: Callable[[Connection], object],
              present: Callable[[], bool]) -> None:
    """Run `add` in a write transaction; another process having added it first is fine."""
    try:
        with write_tx(engine) as conn:
            add(conn)
    except DBAPIError:
        if not present():
            raise
