"""How the simulated world reacts to merchant operations (called inside their transaction).

The backends call these hooks; the world decides what users do next by scheduling jobs on the
sandbox clock. Kept separate so the API rules (backend) and the world's rules never mix. The
job handlers that carry the decisions out live in sandbox.world.behaviour.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection, Row

from sandbox import db, errors, jobs
from sandbox.backend.orders import order_by_pk, record_event
from sandbox.world import rules, users

EXPIRY_US = 30 * jobs.DAY_US

# Why a deduction attempt fails (the timeline's wording), or None when it succeeds.
FORCED = "forced failure (fail_next_deduction)"
NO_BALANCE = "余额不足 (balance behaviour: cannot pay)"
NOT_YET = "余额不足 (balance behaviour: pays late)"


# Built once (values as parameters): these run on every payment and deduction.
_DEFAULTS_OF_ORDER = select(db.user_defaults.c.id, db.user_defaults.c.amount,
                            db.user_defaults.c.settled).where(
    db.user_defaults.c.order_pk == bindparam("order_pk"))
_HAS_EVENT = select(db.order_events.c.id).where(
    db.order_events.c.order_pk == bindparam("order_pk"),
    db.order_events.c.kind == bindparam("kind")).limit(1)

def check_create(conn: Connection, merchant: Row, openid: str | None, amount_fen: int,
                 now_us: int) -> None:
    """Raise the WeChat error if this user may not get a new service order.

    Without an openid (need-confirm mode) the user is unknown until they confirm, so there is
    nothing to assess here.
    """
    if not openid:
        return
    user = users.get_or_create_user(conn, openid, now_us)
    month = users.defaults_this_month(conn, openid, now_us)
    refused = rules.refusal(user._mapping, month, amount_fen, now_us)
    if refused is not None:
        error = getattr(errors, refused.error_class)
        raise error(refused.message, internal_code=refused.internal_code)
    if users.pending_overdue_order(conn, openid) is not None:
        message = rules.MSG_OVERDUE_PENDING
        raise errors.InvalidRequest(message, internal_code=rules.INTERNAL_CODES[message])


def check_can_open_service(conn: Connection, openid: str, now_us: int) -> None:
    """Raise the WeChat error if this user may not open Pay Score for a merchant (permissions).

    Eligibility, freeze and blacklist apply; the monthly-defaults limit does not (it limits
    high-value orders, not the service itself).
    """
    refused = rules.refusal(users.peek(conn, openid), 0, 0, now_us)
    if refused is not None:
        error = getattr(errors, refused.error_class)
        raise error(refused.message, internal_code=refused.internal_code)


def on_order_created(conn: Connection, order: Row, now_us: int) -> None:
    """Expiry after 30 idle days, and the known user's own reaction to the confirm request."""
    if order.state != "CREATED":
        return
    jobs.schedule(conn, now_us + EXPIRY_US, "expire_order", str(order.pk))
    if not order.openid:
        return
    user = users.get_or_create_user(conn, order.openid, now_us)
    due = now_us + user.confirm_delay_s * 1_000_000
    if user.confirm_behaviour == "confirms":
        jobs.schedule(conn, due, "user_confirm", str(order.pk), {"openid": order.openid})
    elif user.confirm_behaviour == "declines":
        jobs.schedule(conn, due, "user_decline", str(order.pk))


def on_order_completed(conn: Connection, order: Row, now_us: int) -> None:
    """Schedule WeChat's first automatic deduction attempt."""
    jobs.schedule(conn, now_us, "deduct", str(order.pk), {"attempt": 1})


def completed_at(conn: Connection, order: Row) -> int:
    """When the merchant completed the order (a late payer's delay counts from then)."""
    e = db.order_events
    at = conn.execute(select(e.c.at_us).where(
        e.c.order_pk == order.pk, e.c.kind.in_(("complete", "direct_complete")))
        .order_by(e.c.id.desc()).limit(1)).scalar()
    return order.created_us if at is None else at


def deduction_outcome(conn: Connection, order: Row, user: Row | None, now_us: int
                      ) -> str | None:
    """None if a deduction attempt at now_us succeeds, else why it fails."""
    if user is None:
        return None  # nobody to model: WeChat collects
    if user.fail_next_deductions > 0:
        return FORCED
    if user.balance_behaviour == "cannot":
        return NO_BALANCE
    if user.balance_behaviour == "late" and \
            now_us < completed_at(conn, order) + user.pay_delay_days * rules.DAY_US:
        return NOT_YET
    return None


def on_pay_requested(conn: Connection, order: Row, now_us: int) -> None:
    """The merchant's `pay` (催收): an immediate attempt, or TRADE_ERROR if it cannot succeed.

    WeChat's own retry schedule is not changed (reference §2.7). A refused request writes
    nothing, so it does not use up a forced failure (fail_next_deduction).
    """
    user = users.find_user(conn, order.openid) if order.openid else None
    if deduction_outcome(conn, order, user, now_us) is not None:
        raise errors.TradeError("扣款失败")
    jobs.schedule(conn, now_us, "deduct", str(order.pk), {"trigger": "merchant_pay"})


def on_order_paid(conn: Connection, order_pk: int, now_us: int) -> None:
    """After any payment (deduction, the user paying, `sync`): settle the user's record.

    Pending retries and overdue stages are cancelled; defaults recorded for this order are
    settled (the overdue amount goes away, a running freeze keeps its 30 days); an order paid
    before it ever went overdue counts as paid on time (+1 on-time order, 2 score points).
    Idempotent: a second call for the same order changes nothing.
    """
    jobs.cancel(conn, "deduct", str(order_pk))
    jobs.cancel(conn, "overdue_stage", str(order_pk))
    order = order_by_pk(conn, order_pk)
    if order is None or not order.openid:
        return
    user = users.find_user(conn, order.openid, lock=True)
    if user is None:
        return
    d = db.user_defaults
    rows = list(conn.execute(_DEFAULTS_OF_ORDER, {"order_pk": order_pk}))
    unsettled = [r for r in rows if not r.settled]
    if unsettled:
        conn.execute(d.update().where(d.c.id.in_([r.id for r in unsettled])).values(settled=True))
        users.set_columns(conn, user.openid, rules.on_overdue_settled(
            user._mapping, sum(r.amount for r in unsettled)))
        return
    if rows or _has_event(conn, order_pk, "paid_on_time"):
        return
    users.set_columns(conn, user.openid, rules.on_paid_on_time(user._mapping))
    record_event(conn, order_pk, now_us, "paid_on_time", detail={
        "openid": user.openid, "on_time_orders": user.on_time_orders + 1})


def _has_event(conn: Connection, order_pk: int, kind: str) -> bool:
    return conn.execute(_HAS_EVENT, {"order_pk": order_pk, "kind": kind}).first() is not None
