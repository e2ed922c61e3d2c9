"""Bringing a database made by an earlier version up to the current schema.

`metadata.create_all` creates missing tables only: columns and indexes added to a table since
a user's `.payscore/sandbox.db` (or PostgreSQL schema) was created are added here, at startup,
by whichever process gets there first.
"""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateColumn

from sandbox.db import metadata, write_tx


def add_new_indexes(engine: Engine) -> None:
    """Indexes added to an existing table since its database was created (create_all leaves
    the indexes of tables that exist alone)."""
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        present = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name in present:
                continue
            try:
                with write_tx(engine) as conn:
                    index.create(conn, checkfirst=True)
            except DBAPIError:  # another process created it first
                if index.name not in {i["name"] for i in inspect(engine).get_indexes(
                        table.name)}:
                    raise


def add_new_columns(engine: Engine) -> None:
    """Columns added to an existing table since its database was created (create_all only
    creates missing tables): ALTER TABLE ADD COLUMN, for nullable or server-defaulted ones."""
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present or not (column.nullable or column.server_default):
                continue
            ddl = CreateColumn(column).compile(dialect=engine.dialect)
            try:
                with write_tx(engine) as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
            except DBAPIError:  # another process added it first
                if column.name not in {c["name"] for c in inspect(engine).get_columns(
                        table.name)}:
                    raise
