"""Scores move: the daily 03:00 (China Standard Time) refresh and major-event re-evaluations.

The score is always `rules.compute_score` of the user's current inputs; these jobs decide when
a recomputed score becomes visible. A `score_history` row is written only when a score changes,
so the history is the user's "动态曲线" and the refresh of 50,000 unchanged users writes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Row

from merchant_kit.protocol import rfc3339
from sandbox import db, jobs
from sandbox.clock import to_datetime
from sandbox.world import rules
from sandbox.world.jobs_registry import register_job

REFRESH_KIND = "score_refresh"
EVENT_KIND = "score_event"

_INPUTS = (db.users.c.openid, db.users.c.score, db.users.c.payment_activity,
           db.users.c.on_time_orders, db.users.c.social, db.users.c.assets,
           db.users.c.defaults_total, db.users.c.overdue_fen)


# Found through the (kind, ref, done) index: the refresh job has no ref, and ordering by an
# expression keeps SQLite from choosing the (done, due_us) index to skip the sort, with which
# it walked every pending job due before the refresh (twice a second per process, from the
# ticker; a gray release leaves tens of thousands pending).
PENDING_REFRESH = (select(db.jobs.c.id, db.jobs.c.due_us)
                   .where(db.jobs.c.kind == REFRESH_KIND, db.jobs.c.ref.is_(None),
                          db.jobs.c.done.is_(False))
                   .order_by(db.jobs.c.due_us + 0).limit(1))


def _pending_refresh(conn: Connection) -> Row | None:
    return conn.execute(PENDING_REFRESH).first()


def refresh_misaligned(conn: Connection, now_us: int) -> bool:
    """True when no refresh is pending or the pending one lies beyond the next 03:00."""
    pending = _pending_refresh(conn)
    return pending is None or pending.due_us > rules.next_refresh_us(now_us)


def ensure_refresh_scheduled(conn: Connection, now_us: int) -> None:
    """Exactly one pending refresh at the next 03:00, also after the clock was set back."""
    due = rules.next_refresh_us(now_us)
    pending = _pending_refresh(conn)
    if pending is None:
        jobs.schedule(conn, due, REFRESH_KIND)
    elif pending.due_us > due:  # the clock was frozen or reset to an earlier day
        conn.execute(update(db.jobs).where(db.jobs.c.id == pending.id).values(due_us=due))


def schedule_major_event(conn: Connection, openid: str, now_us: int, reason: str) -> None:
    """A default or complaint: re-evaluate this user within 2 hours (rules.MAJOR_EVENT_DELAY_US)."""
    jobs.schedule(conn, rules.major_event_due_us(now_us), EVENT_KIND, openid, {"reason": reason})


def _apply(conn: Connection, rows: list[Row], now_us: int, reason: str) -> int:
    changed = [(row.openid, score) for row in rows
               if (score := rules.compute_score(row._mapping)) != row.score]
    if not changed:
        return 0
    conn.execute(update(db.users).where(db.users.c.openid == bindparam("o"))
                 .values(score=bindparam("s")),
                 [{"o": openid, "s": score} for openid, score in changed])
    conn.execute(db.score_history.insert(),
                 [{"openid": openid, "at_us": now_us, "score": score, "reason": reason}
                  for openid, score in changed])
    return len(changed)


def refresh_all(conn: Connection, now_us: int, reason: str = "daily_refresh") -> int:
    """Recompute every user's score in bulk; returns how many changed."""
    rows = list(conn.execute(select(*_INPUTS)))
    return _apply(conn, rows, now_us, reason)


def rescore(conn: Connection, openid: str, now_us: int, reason: str) -> int:
    rows = list(conn.execute(select(*_INPUTS).where(db.users.c.openid == openid)))
    return _apply(conn, rows, now_us, reason)


@register_job(REFRESH_KIND)
def score_refresh(conn: Connection, job: Row, now_us: int) -> None:
    refresh_all(conn, now_us)
    ensure_refresh_scheduled(conn, now_us)


@register_job(EVENT_KIND)
def score_event(conn: Connection, job: Row, now_us: int) -> None:
    rescore(conn, job.ref, now_us, (job.payload or {}).get("reason", "major_event"))


def history(conn: Connection, openid: str, limit: int = 100) -> list[dict[str, Any]]:
    """The newest `limit` score changes, oldest first."""
    h = db.score_history
    rows = list(conn.execute(select(h).where(h.c.openid == openid)
                             .order_by(h.c.at_us.desc(), h.c.id.desc()).limit(limit)))
    return [{"at": rfc3339(to_datetime(r.at_us)), "at_us": r.at_us, "score": r.score,
             "reason": r.reason} for r in reversed(rows)]
