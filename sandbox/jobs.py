"""Timed jobs on the sandbox clock: scheduled in the transaction that causes them.

The runner (sandbox.world.runner) executes due jobs in `due_us` order when the clock advances
or the background ticker finds them due. Handlers are registered per kind.
"""

from __future__ import annotations

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Connection

from sandbox import db

DAY_US = 86400 * 1_000_000


def schedule(conn: Connection, due_us: int, kind: str, ref: str | None = None,
             payload: dict | None = None) -> None:
    conn.execute(_INSERT, {"due_us": due_us, "kind": kind, "ref": ref, "payload": payload,
                           "done": False})


_INSERT = db.jobs.insert()  # built once: scheduling is on the path of most requests


# Mark an order's pending jobs of one kind done (by the (kind, ref) index); every payment runs it.
CANCEL = update(db.jobs).where(db.jobs.c.kind == bindparam("job_kind"),
                               db.jobs.c.ref == bindparam("job_ref"),
                               db.jobs.c.done.is_(False)).values(done=True)


def cancel(conn: Connection, kind: str, ref: str) -> None:
    conn.execute(CANCEL, {"job_kind": kind, "job_ref": ref})
