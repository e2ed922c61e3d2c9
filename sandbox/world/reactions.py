"""How the simulated world reacts to merchant operations (called inside their transaction).

The backends call these hooks; the world decides what users do next by scheduling jobs on the
sandbox clock. Kept separate so the API rules (backend) and the world's rules never mix.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection, Row

from sandbox import jobs

EXPIRY_US = 30 * jobs.DAY_US


def check_create(conn: Connection, merchant: Row, openid: str | None, amount_fen: int,
                 now_us: int) -> None:
    """Raise the WeChat error if this user may not get a new service order."""


def on_order_created(conn: Connection, order: Row, now_us: int) -> None:
    if order.state == "CREATED":
        jobs.schedule(conn, now_us + EXPIRY_US, "expire_order", str(order.pk))


def on_order_completed(conn: Connection, order: Row, now_us: int) -> None:
    """Schedule WeChat's first automatic deduction attempt."""
    jobs.schedule(conn, now_us, "deduct", str(order.pk), {"attempt": 1})
