"""What simulated users and WeChat do on their own: the job handlers of the world.

Every handler runs inside its job's transaction (sandbox.world.runner), locks the order, and
does nothing if the order has moved on since the job was scheduled (a confirmation for an order
the merchant already cancelled, a retry for an order already paid, ...).

Deduction (WeChat's automatic collection after `complete`): the first attempt runs at
completion; a failed attempt leaves the order DOING/MCH_COMPLETE/USER_PAYING with a
`deduction_failed` timeline event and schedules the next one after DEDUCTION_RETRY_DOC's
delays, for as long as the order stays unpaid (WeChat "keeps retrying"; the order never
expires). The first failure also schedules the overdue stages (rules.OVERDUE_STAGES): day 1
notice (and the default is recorded), day 3 negotiation, day 7 legal (a user flagged malicious
is blacklisted at that stage).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from merchant_kit.protocol import rfc3339
from sandbox import db, errors, jobs, statemachine
from sandbox.backend import orders as o
from sandbox.backend.serviceorders import settle_paid
from sandbox.callbacks import outbox
from sandbox.clock import to_datetime
from sandbox.world import reactions, rules, scores, users
from sandbox.world.jobs_registry import register_job

HOUR_US = rules.HOUR_US
# Delay after failed attempt n (1-based): 1 h, then 6 h, then once a day.
DEDUCTION_RETRY_US = (1 * HOUR_US, 6 * HOUR_US)
DEDUCTION_RETRY_LATER_US = 24 * HOUR_US
DEDUCTION_RETRY_DOC = ("after a failed automatic deduction WeChat tries again 1 hour later, "
                       "then 6 hours later, then once every 24 hours until the order is paid")

# A complaint is a major credit event (re-evaluated within 2 hours); the article gives it no
# formula, so the sandbox lowers the social dimension (0..1) by this much per complaint.
COMPLAINT_SOCIAL_PENALTY = 0.1


def retry_delay_us(failed_attempt: int) -> int:
    if 1 <= failed_attempt <= len(DEDUCTION_RETRY_US):
        return DEDUCTION_RETRY_US[failed_attempt - 1]
    return DEDUCTION_RETRY_LATER_US


def lock_order_pk(conn: Connection, order_pk: int) -> Row | None:
    return o.order_by_pk(conn, order_pk, lock=True)


def _order_of(conn: Connection, job: Row, state: statemachine.State) -> Row | None:
    """The job's order, locked, if it is still in `state`."""
    try:
        order = lock_order_pk(conn, int(job.ref))
    except (TypeError, ValueError):
        return None
    if order is None or statemachine.state_of(order) != state:
        return None
    return order


def unpaid(order: Row) -> int:
    return max((order.total_amount or 0) - order.paid_amount, 0)


# ------------------------------------------------------------------ confirm page


def confirm_in_tx(conn: Connection, order: Row, now_us: int, openid: str | None = None
                  ) -> dict[str, Any]:
    """The user confirms (mirrors ServiceOrders.user_confirm, inside the caller's transaction)."""
    values = {"openid": openid} if openid and not order.openid else {}
    o.transition(conn, order, "user_confirm", now_us, {"by": "user"}, **values)
    order = o.reload(conn, order.pk)
    resource = o.entity(conn, order)
    outbox.enqueue(conn, mchid=order.mchid, event_type="PAYSCORE.USER_CONFIRM",
                   url=order.notify_url, resource=resource, now_us=now_us, order_pk=order.pk)
    return resource


@register_job("user_confirm")
def user_confirm(conn: Connection, job: Row, now_us: int) -> None:
    order = _order_of(conn, job, statemachine.CREATED)
    if order is not None:
        confirm_in_tx(conn, order, now_us, (job.payload or {}).get("openid"))


@register_job("user_decline")
def user_decline(conn: Connection, job: Row, now_us: int) -> None:
    order = _order_of(conn, job, statemachine.CREATED)
    if order is not None:
        o.transition(conn, order, "user_decline", now_us, {"by": "user"})


@register_job("expire_order")
def expire_order(conn: Connection, job: Row, now_us: int) -> None:
    order = _order_of(conn, job, statemachine.CREATED)
    if order is not None:
        o.transition(conn, order, "expire", now_us, {"idle_days": 30})


# ------------------------------------------------------------------ collection


def pay_in_tx(conn: Connection, order: Row, now_us: int) -> dict[str, Any]:
    """Collect the unpaid amount through WeChat (NEWTON) and settle the user's record."""
    resource = settle_paid(conn, order.pk, now_us, "NEWTON")
    reactions.on_order_paid(conn, order.pk, now_us)
    return resource


@register_job("deduct")
def deduct(conn: Connection, job: Row, now_us: int) -> None:
    order = _order_of(conn, job, statemachine.COMPLETED)
    if order is None:
        return  # paid, synced or refunded meanwhile
    payload = job.payload or {}
    user = users.get_or_create_user(conn, order.openid, now_us, lock=True) \
        if order.openid else None
    reason = reactions.deduction_outcome(conn, order, user, now_us)
    if reason is None:
        pay_in_tx(conn, order, now_us)
        return
    if user is not None and reason == reactions.FORCED:
        users.set_columns(conn, user.openid,
                          {"fail_next_deductions": user.fail_next_deductions - 1})
    detail: dict[str, Any] = {"reason": reason, "trigger": payload.get("trigger", "wechat"),
                              "amount": unpaid(order)}
    if "attempt" in payload:  # WeChat's own chain; a merchant's `pay` leaves it as it is
        attempt = int(payload["attempt"])
        next_us = now_us + retry_delay_us(attempt)
        jobs.schedule(conn, next_us, "deduct", str(order.pk), {"attempt": attempt + 1})
        detail.update(attempt=attempt, next_attempt_us=next_us)
    o.transition(conn, order, "deduction_failed", now_us, detail)
    if not _overdue_scheduled(conn, order.pk):
        for due_us, stage, text in rules.overdue_schedule(now_us):
            jobs.schedule(conn, due_us, "overdue_stage", str(order.pk),
                          {"stage": stage, "description": text, "first_failed_us": now_us})


def _overdue_scheduled(conn: Connection, order_pk: int) -> bool:
    j = db.jobs
    return conn.execute(select(j.c.id).where(j.c.kind == "overdue_stage",
                                             j.c.ref == str(order_pk)).limit(1)).first() \
        is not None


# ------------------------------------------------------------------ overdue and risk


def record_default(conn: Connection, user: Row, order_pk: int | None, amount_fen: int,
                   now_us: int) -> None:
    """A default: the user_defaults row, the user's risk columns, a score re-evaluation."""
    conn.execute(db.user_defaults.insert().values(openid=user.openid, order_pk=order_pk,
                                                  at_us=now_us, amount=amount_fen,
                                                  settled=False))
    users.set_columns(conn, user.openid, rules.on_default(user._mapping, amount_fen, now_us))
    scores.schedule_major_event(conn, user.openid, now_us, "default")


def complain(conn: Connection, user: Row, now_us: int) -> None:
    social = max(0.0, round(float(user.social) - COMPLAINT_SOCIAL_PENALTY, 4))
    users.set_columns(conn, user.openid, {"social": social})
    scores.schedule_major_event(conn, user.openid, now_us, "complaint")


def blacklist(conn: Connection, user: Row) -> None:
    users.set_columns(conn, user.openid, {"malicious": True, **rules.on_malicious(user._mapping)})


@register_job("overdue_stage")
def overdue_stage(conn: Connection, job: Row, now_us: int) -> None:
    order = _order_of(conn, job, statemachine.COMPLETED)
    if order is None:
        return  # paid meanwhile: no escalation
    payload = job.payload or {}
    stage = payload.get("stage", "NOTICE")
    amount = unpaid(order)
    here = statemachine.name(statemachine.COMPLETED)
    detail: dict[str, Any] = {"stage": stage, "description": payload.get("description"),
                              "unpaid": amount}
    user = users.get_or_create_user(conn, order.openid, now_us, lock=True) \
        if order.openid else None
    if user is not None and stage == rules.OVERDUE_STAGES[0][1]:
        record_default(conn, user, order.pk, amount, now_us)
        detail["default_recorded"] = True
    if user is not None and stage == rules.OVERDUE_STAGES[-1][1] and user.malicious:
        blacklist(conn, user)
        detail["blacklisted"] = True
    o.record_event(conn, order.pk, now_us, f"overdue_{stage.lower()}", here, here, detail)


# ------------------------------------------------------------------ the control API's operations


def _at(us: int) -> str:
    return rfc3339(to_datetime(us))


class World:
    """The control API's world operations (one method per operationId, one transaction each)."""

    def __init__(self, sandbox):
        self.sb = sandbox
        self.engine = sandbox.engine

    def get_user(self, openid: str, now_us: int) -> dict[str, Any]:
        with db.write_tx(self.engine) as conn:  # an unseeded openid becomes its ad-hoc user
            return users.profile(conn, openid, now_us)

    def seed_users(self, count: int, seed: int, now_us: int) -> dict[str, Any]:
        from sandbox.world import population

        with db.write_tx(self.engine) as conn:
            inserted = population.seed_users(conn, count, seed, now_us)
            total = users.count_users(conn)
        return {"count": count, "seed": seed, "inserted": inserted, "total_users": total,
                "first_openid": population.make_openid(seed, 0) if count else None}

    def act_as_user(self, openid: str, body: dict, now_us: int) -> dict[str, Any]:
        """Make the user do `action` now; answers the user's profile and the order, if any."""
        action = body["action"]
        mchid, out_order_no = body.get("mchid"), body.get("out_order_no")
        order_answer: dict[str, Any] | None = None
        if action in ("confirm", "decline", "pay") and not (mchid and out_order_no):
            raise errors.param_error("out_order_no", f"{action} needs mchid and out_order_no")
        if action in ("confirm", "decline"):
            with db.read_tx(self.engine) as conn:
                _owned(o.lock_order(conn, mchid, out_order_no), openid)
            if action == "confirm":
                order_answer = self.sb.orders.user_confirm(mchid, out_order_no, now_us, openid)
            else:
                order_answer = self.sb.orders.user_decline(mchid, out_order_no, now_us)
        else:
            with db.write_tx(self.engine) as conn:
                user = users.get_or_create_user(conn, openid, now_us, lock=True)
                order = _owned(o.lock_order(conn, mchid, out_order_no), openid) \
                    if mchid and out_order_no else None
                order_answer = self._act_in_tx(conn, action, user, order, body, now_us)
        return {"action": action, "order": order_answer,
                "user": self.get_user(openid, now_us)}

    @staticmethod
    def _act_in_tx(conn: Connection, action: str, user: Row, order: Row | None, body: dict,
                   now_us: int) -> dict[str, Any] | None:
        if action == "pay":
            assert order is not None
            statemachine.next_state("deduction_succeeded", statemachine.state_of(order))
            return pay_in_tx(conn, order, now_us)
        if action == "fail_next_deduction":
            users.set_columns(conn, user.openid, {
                "fail_next_deductions": user.fail_next_deductions + body.get("count", 1)})
        elif action == "default":
            amount = body.get("amount", unpaid(order) if order is not None else 0)
            if amount < 1:
                raise errors.param_error("amount", "nothing unpaid on this order: give an "
                                                   "amount in fen")
            record_default(conn, user, order.pk if order is not None else None, amount, now_us)
        elif action == "complain":
            complain(conn, user, now_us)
        elif action == "flag_malicious":
            blacklist(conn, user)
        return o.entity(conn, order) if order is not None else None

    def list_jobs(self, due_before: int | None = None, kind: str | None = None,
                  ref: str | None = None, limit: int = 200) -> dict[str, Any]:
        runner = self.sb.extras.get("job_runner")
        if runner is not None:  # show the daily refresh where it will really run
            runner.realign(self.sb.clock.now_us())
        j = db.jobs
        stmt = select(j).where(j.c.done.is_(False))
        if due_before is not None:
            stmt = stmt.where(j.c.due_us <= due_before)
        if kind:
            stmt = stmt.where(j.c.kind == kind)
        if ref:
            stmt = stmt.where(j.c.ref == ref)
        with db.read_tx(self.engine) as conn:
            rows = list(conn.execute(stmt.order_by(j.c.due_us, j.c.id).limit(limit)))
        return {"data": [{"id": r.id, "due_us": r.due_us, "due_time": _at(r.due_us),
                          "kind": r.kind, "ref": r.ref, "payload": r.payload} for r in rows],
                "limit": limit}

    def get_order_timeline(self, mchid: str, out_order_no: str) -> dict[str, Any]:
        e = db.order_events
        with db.read_tx(self.engine) as conn:
            order = o.lock_order(conn, mchid, out_order_no)
            rows = list(conn.execute(select(e).where(e.c.order_pk == order.pk)
                                     .order_by(e.c.at_us, e.c.id)))
            state = statemachine.name(statemachine.state_of(order))
        return {"mchid": mchid, "out_order_no": out_order_no, "state": state,
                "events": [{"at_us": r.at_us, "at_time": _at(r.at_us), "kind": r.kind,
                            "from_state": r.from_state, "to_state": r.to_state,
                            "detail": r.detail} for r in rows]}


def _owned(order: Row, openid: str) -> Row:
    """The order, if it is this user's (or nobody's yet: need-confirm orders)."""
    if order.openid and order.openid != openid:
        raise errors.ParamError("订单不属于该用户",
                                detail={"field": "openid", "issue": "not this order's user",
                                        "location": "path"})
    return order
