"""The job runner: timed jobs on the sandbox clock (sandbox.jobs schedules them).

Each job runs in its own write transaction that also marks it done, so a crash between two
jobs re-runs nothing twice and loses nothing: either the handler's effects and the "done" mark
commit together, or neither does. `advance` walks the clock forward job by job, so a job due at
t runs with now=t and sees every effect of the jobs before it (a confirmation at +5 s, the
deduction after completion, its retries, the overdue stages on day 1, 3 and 7, ...). With
`START_WORLD` a ticker thread runs due jobs as wall time passes.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection, Row

from sandbox import db
from sandbox.world.jobs_registry import JOB_HANDLERS

if TYPE_CHECKING:
    from sandbox.service import Sandbox

log = logging.getLogger("payscore.world")

# Modules whose import registers job handlers, so a runner built without the whole app (the
# CLI, a test) still knows every kind. A module that is not installed is skipped.
HANDLER_MODULES = ("sandbox.world.behaviour", "sandbox.world.scores", "sandbox.backend.refunds")

MAX_JOBS_PER_CALL = 100_000
MAX_STEPS_PER_ADVANCE = 100_000
TICK_S = 0.5


# Built once (values as parameters): every job runs them.
_NEXT_JOB = (select(db.jobs).where(db.jobs.c.done.is_(False),
                                   db.jobs.c.due_us <= bindparam("now_us"))
             .order_by(db.jobs.c.due_us, db.jobs.c.id).limit(1))
_NEXT_JOB_SKIP_LOCKED = _NEXT_JOB.with_for_update(skip_locked=True)
_CLAIM_JOB = (update(db.jobs).where(db.jobs.c.id == bindparam("job_id"),
                                    db.jobs.c.done.is_(False)).values(done=True))

def _load_handlers() -> None:
    for name in HANDLER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


class JobRunner:
    """Runs due jobs for one sandbox; safe to use from several threads and processes."""

    def __init__(self, sandbox: Sandbox):
        _load_handlers()
        self.sandbox = sandbox
        self.engine = sandbox.engine
        self.clock = sandbox.clock

    # ------------------------------------------------------------ running

    def run_due(self, now_us: int, limit: int = MAX_JOBS_PER_CALL) -> int:
        """Run every job due at or before now_us in (due_us, id) order; returns how many ran.

        Jobs that a handler schedules at or before now_us run in the same call.
        """
        if self.next_due_us(now_us) is None:
            return 0  # a read: idle ticks never take the write lock
        ran = 0
        while ran < limit:
            if not self._run_one(now_us):
                break
            ran += 1
        return ran

    def _run_one(self, now_us: int) -> bool:
        claimed: list[int] = []
        try:
            with db.write_tx(self.engine) as conn:
                job = self._claim(conn, now_us)
                if job is None:
                    return False
                claimed.append(job.id)
                handler = JOB_HANDLERS.get(job.kind)
                if handler is None:
                    log.error("job %s: no handler for kind %r; marked done", job.id, job.kind)
                    _mark_failed(conn, job, f"no handler for kind {job.kind!r}")
                    return True
                handler(conn, job, now_us)
                return True
        except Exception as exc:
            if not claimed:
                raise  # the database itself failed: nothing was claimed, nothing to skip
            # A handler bug must not wedge the queue: its effects rolled back, mark it done.
            log.exception("job %s failed; marked done with the error", claimed[0])
            with db.write_tx(self.engine) as conn:
                job = conn.execute(select(db.jobs).where(db.jobs.c.id == claimed[0])).first()
                if job is not None and not job.done:
                    _mark_failed(conn, job, f"{type(exc).__name__}: {exc}"[:500])
            return True

    def _claim(self, conn: Connection, now_us: int) -> Row | None:
        stmt = _NEXT_JOB_SKIP_LOCKED if db.is_postgres(conn) else _NEXT_JOB
        job = conn.execute(stmt, {"now_us": now_us}).first()
        if job is None:
            return None
        claimed = conn.execute(_CLAIM_JOB, {"job_id": job.id})
        return job if claimed.rowcount == 1 else None

    # ------------------------------------------------------------ the clock

    def next_due_us(self, before_us: int | None = None) -> int | None:
        with self.engine.connect() as conn:
            stmt = select(func.min(db.jobs.c.due_us)).where(db.jobs.c.done.is_(False))
            if before_us is not None:
                stmt = stmt.where(db.jobs.c.due_us <= before_us)
            return conn.execute(stmt).scalar()

    def advance(self, delta_us: int) -> int:
        """Move the clock forward by delta_us, stopping at each due job; returns jobs run."""
        if delta_us < 0:
            raise ValueError("the sandbox clock only moves forward")
        now = self.clock.now_us()
        target = now + delta_us
        self.realign(now)
        ran = 0
        for _ in range(MAX_STEPS_PER_ADVANCE):
            step = self._next_step(now, target)
            if step is None or ran >= MAX_JOBS_PER_CALL:
                break
            if step > now:
                now = self.clock.shift(step - now)
            ran += self.run_due(now, MAX_JOBS_PER_CALL - ran)
            self._dispatch()
            now = self.clock.now_us()  # a running (unfrozen) clock moved on meanwhile
        current = self.clock.now_us()
        if current < target:
            self.clock.shift(target - current)
            self._dispatch()
        return ran

    def realign(self, now_us: int) -> None:
        """Pull the daily refresh back to the next 03:00 if the clock was set back."""
        from sandbox.world import scores

        with self.engine.connect() as conn:  # a read first: the ticker calls this per tick
            if not scores.refresh_misaligned(conn, now_us):
                return
        with db.write_tx(self.engine) as conn:
            scores.ensure_refresh_scheduled(conn, now_us)

    def _next_step(self, now: int, target: int) -> int | None:
        """The next instant something is due: a job, or a callback retry (strictly later)."""
        candidates = [self.next_due_us(target)]
        if self.sandbox.extras.get("dispatcher") is not None:
            with self.engine.connect() as conn:
                candidates.append(conn.execute(
                    select(func.min(db.notifications.c.next_attempt_us)).where(
                        db.notifications.c.status == "PENDING",
                        db.notifications.c.next_attempt_us > now,
                        db.notifications.c.next_attempt_us <= target)).scalar())
        found = [c for c in candidates if c is not None]
        return min(found) if found else None

    def _dispatch(self) -> None:
        dispatcher: Any = self.sandbox.extras.get("dispatcher")
        if dispatcher is not None:
            dispatcher.dispatch_due()

    # ------------------------------------------------------------ wall-time ticker

    def start_ticker(self, interval_s: float = TICK_S) -> Callable[[], None]:
        """Run due jobs every interval_s in a daemon thread; returns the stop function."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval_s):
                try:
                    now = self.clock.now_us()
                    self.realign(now)
                    self.run_due(now)
                except Exception:  # keep ticking: the next tick retries
                    log.exception("job ticker: run_due failed")

        thread = threading.Thread(target=loop, name="payscore-job-ticker", daemon=True)
        thread.start()

        def stop_ticker() -> None:
            stop.set()
            thread.join(timeout=5)

        return stop_ticker


def _mark_failed(conn: Connection, job: Row, error: str) -> None:
    payload = dict(job.payload or {})
    payload["error"] = error
    conn.execute(update(db.jobs).where(db.jobs.c.id == job.id).values(done=True,
                                                                      payload=payload))


def install(app: Flask, sandbox: Sandbox) -> JobRunner:
    """Wire the world into a new app: the runner, the first-start users, the ticker."""
    from sandbox.world import users

    runner = JobRunner(sandbox)
    sandbox.extras["job_runner"] = runner
    if app.config.get("PROVISION", True):
        with db.write_tx(sandbox.engine) as conn:
            users.ensure_world(conn, sandbox.clock.now_us(conn))
    if app.config.get("START_WORLD"):
        stops = sandbox.extras.setdefault("stop_callbacks", [])
        stops.append(runner.start_ticker(app.config.get("WORLD_TICK_S", TICK_S)))  # type: ignore[union-attr]
    return runner
