"""The job runner: order, one transaction per job, failures, stepping the clock, the ticker."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from test_world_support import DAY, HOUR, SECOND, T0, freeze

from sandbox import db, jobs
from sandbox.testing import make_sandbox
from sandbox.world.jobs_registry import JOB_HANDLERS, register_job

SEEN: list[tuple[str, int, int]] = []  # (ref, now_us, due_us) of every test job run


@register_job("test_record")
def _record(conn, job, now_us):
    SEEN.append((job.ref, now_us, job.due_us))
    follow = (job.payload or {}).get("then_in_us")
    if follow is not None:
        jobs.schedule(conn, now_us + follow, "test_record", job.ref + "+")


@register_job("test_explode")
def _explode(conn, job, now_us):
    jobs.schedule(conn, now_us, "test_record", "written by a failing job")
    raise RuntimeError("handler bug")


@pytest.fixture(autouse=True)
def _clean():
    SEEN.clear()
    yield
    SEEN.clear()


def _schedule(sandbox, due_us, kind="test_record", ref="x", payload=None):
    with db.write_tx(sandbox.engine) as conn:
        jobs.schedule(conn, due_us, kind, ref, payload)


def _job_rows(sandbox, kind=None):
    stmt = select(db.jobs).order_by(db.jobs.c.id)
    if kind:
        stmt = stmt.where(db.jobs.c.kind == kind)
    with sandbox.engine.connect() as conn:
        return list(conn.execute(stmt))


def test_run_due_runs_due_jobs_in_due_then_id_order(sandbox):
    runner = sandbox.extras["job_runner"]
    _schedule(sandbox, T0 + 2, ref="c")
    _schedule(sandbox, T0 + 1, ref="a")
    _schedule(sandbox, T0 + 1, ref="b")
    _schedule(sandbox, T0 + 3, ref="later")
    assert runner.run_due(T0 + 2) == 3
    assert [ref for ref, _, _ in SEEN] == ["a", "b", "c"]
    assert all(now == T0 + 2 for _, now, _ in SEEN)
    done = {r.ref: r.done for r in _job_rows(sandbox, "test_record")}
    assert done == {"c": True, "a": True, "b": True, "later": False}
    assert runner.run_due(T0 + 2) == 0  # nothing runs twice


def test_a_failing_handler_rolls_back_its_effects_and_is_marked_done(sandbox):
    runner = sandbox.extras["job_runner"]
    _schedule(sandbox, T0, kind="test_explode", ref="boom")
    _schedule(sandbox, T0 + 1, ref="after")
    assert runner.run_due(T0 + 1) == 2
    boom = _job_rows(sandbox, "test_explode")[0]
    assert boom.done and "RuntimeError: handler bug" in boom.payload["error"]
    # the job it scheduled before raising was rolled back with it; the queue moved on
    assert [ref for ref, _, _ in SEEN] == ["after"]
    assert {r.ref for r in _job_rows(sandbox, "test_record")} == {"after"}


def test_unknown_kind_is_marked_done_with_an_error(sandbox):
    runner = sandbox.extras["job_runner"]
    _schedule(sandbox, T0, kind="no_such_kind", ref="?")
    assert "no_such_kind" not in JOB_HANDLERS
    assert runner.run_due(T0) == 1
    row = _job_rows(sandbox, "no_such_kind")[0]
    assert row.done and "no handler" in row.payload["error"]


def test_advance_steps_through_each_due_time_including_jobs_scheduled_on_the_way(sandbox):
    freeze(sandbox)
    _schedule(sandbox, T0 + 2 * HOUR, ref="first", payload={"then_in_us": 3 * HOUR})
    _schedule(sandbox, T0 + 10 * HOUR, ref="outside")
    ran = sandbox.advance(6 * HOUR)
    assert ran == 2
    # each job ran with the clock at its own due time, the follow-up 3 h after the first
    assert SEEN == [("first", T0 + 2 * HOUR, T0 + 2 * HOUR),
                    ("first+", T0 + 5 * HOUR, T0 + 5 * HOUR)]
    assert sandbox.clock.now_us() == T0 + 6 * HOUR
    assert sandbox.advance(4 * HOUR) == 1
    assert SEEN[-1] == ("outside", T0 + 10 * HOUR, T0 + 10 * HOUR)


def test_advance_zero_runs_what_is_due_now_and_never_moves_back(sandbox):
    freeze(sandbox)
    _schedule(sandbox, T0 - 5 * SECOND, ref="overdue")
    _schedule(sandbox, T0, ref="now")
    assert sandbox.advance(0) == 2
    assert [(ref, now) for ref, now, _ in SEEN] == [("overdue", T0), ("now", T0)]
    assert sandbox.clock.now_us() == T0
    with pytest.raises(ValueError):
        sandbox.advance(-1)


def test_advance_is_bounded(sandbox, monkeypatch):
    from sandbox.world import runner as runner_module

    freeze(sandbox)
    @register_job("test_forever")
    def _forever(conn, job, now_us):
        jobs.schedule(conn, now_us + SECOND, "test_forever", "loop")  # forever

    _schedule(sandbox, T0 + SECOND, kind="test_forever", ref="loop")
    monkeypatch.setattr(runner_module, "MAX_STEPS_PER_ADVANCE", 50)
    ran = sandbox.advance(DAY)
    assert 50 <= ran <= 52
    assert sandbox.clock.now_us() == T0 + DAY  # the clock still lands on the target


def test_dispatcher_runs_after_every_step_and_callback_retry_times_are_steps(sandbox):
    freeze(sandbox)
    calls: list[int] = []

    class Recorder:
        def dispatch_due(self):
            calls.append(sandbox.clock.now_us())
            return []

    sandbox.extras["dispatcher"] = Recorder()
    _schedule(sandbox, T0 + HOUR, ref="job")
    with db.write_tx(sandbox.engine) as conn:
        conn.execute(db.notifications.insert().values(
            id="n1", mchid="1900000000", event_type="PAYSCORE.USER_PAID", summary="支付成功",
            original_type="payscore", url="http://127.0.0.1:9/", resource={}, status="PENDING",
            attempts=1, next_attempt_us=T0 + 30 * SECOND, created_us=T0))
    sandbox.advance(2 * HOUR)
    assert calls[:2] == [T0 + 30 * SECOND, T0 + HOUR]
    assert calls[-1] == T0 + 2 * HOUR


def test_ticker_runs_due_jobs_as_wall_time_passes_and_stops(tmp_path):
    app = make_sandbox(tmp_path, START_WORLD=True, WORLD_TICK_S=0.02)
    sb = app.extensions["payscore"]
    try:
        _schedule(sb, sb.clock.now_us(), ref="ticked")
        deadline = time.monotonic() + 10
        while not SEEN and time.monotonic() < deadline:
            time.sleep(0.02)  # waiting for the background thread, not for business time
        assert [ref for ref, _, _ in SEEN] == ["ticked"]
    finally:
        sb.extras["stop_services"]()
    SEEN.clear()
    _schedule(sb, sb.clock.now_us(), ref="after stop")
    time.sleep(0.1)
    assert SEEN == []
    assert [r.done for r in _job_rows(sb, "test_record")] == [True, False]
    sb.engine.dispose()
