"""An existing database is brought up to the current schema at startup, on SQLite and
PostgreSQL: tables, columns and indexes added since it was created appear, data stays."""

from __future__ import annotations

import pytest
from sqlalchemy import func, inspect, select, text

from sandbox import db, jobs


@pytest.fixture(params=[None, pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path, postgres_schemas):
    if request.param is None:
        engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield engine
        engine.dispose()
        return
    with postgres_schemas() as url:
        engine = db.make_engine(url)
        yield engine
        engine.dispose()


def test_an_older_database_gets_the_new_index_and_column(engine):
    db.init_db(engine)
    with db.write_tx(engine) as conn:  # what a database of an earlier version lacks
        jobs.schedule(conn, 1, "expire", "42", None)
        conn.execute(text("DROP INDEX ix_jobs_kind_ref"))
        conn.execute(text("ALTER TABLE request_log DROP COLUMN duration_ms"))
    assert "ix_jobs_kind_ref" not in {i["name"] for i in inspect(engine).get_indexes("jobs")}

    db.init_db(engine)  # the next start
    db.init_db(engine)  # and the one after: nothing left to add, nothing fails

    found = inspect(engine)
    assert "ix_jobs_kind_ref" in {i["name"] for i in found.get_indexes("jobs")}
    assert "duration_ms" in {c["name"] for c in found.get_columns("request_log")}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.jobs)).scalar_one() == 1


def test_cancelling_an_orders_jobs_uses_the_index(tmp_path):
    """Payments cancel an order's jobs; scanning every pending job instead made a 50,000-user
    gray release slow down as it went."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    try:
        db.init_db(engine)
        compiled = jobs.CANCEL.compile(dialect=engine.dialect)
        values = compiled.construct_params({"job_kind": "expire", "job_ref": "42"})
        with engine.connect() as conn:
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + str(compiled),
                tuple(values[name] for name in compiled.positiontup)))
        assert "ix_jobs_kind_ref" in plan, plan
    finally:
        engine.dispose()


def test_the_ticker_finds_the_daily_refresh_by_index(tmp_path):
    """The ticker looks for the pending score refresh twice a second; walking the due-order
    index instead visited every job due before it (a gray release leaves tens of thousands)."""
    from sandbox.world import scores

    engine = db.make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    try:
        db.init_db(engine)
        sql = str(scores.PENDING_REFRESH.compile(dialect=engine.dialect,
                                                 compile_kwargs={"literal_binds": True}))
        with engine.connect() as conn:
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + sql))
        assert "ix_jobs_kind_ref" in plan and "ix_jobs_due" not in plan, plan
    finally:
        engine.dispose()
