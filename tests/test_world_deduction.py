"""WeChat's automatic deduction after complete, its retries, the merchant's `pay` and `sync`."""

from __future__ import annotations

from test_world_support import (
    DAY,
    HOUR,
    T0,
    act,
    completed_order,
    control,
    count,
    events_of,
    freeze,
    kinds,
    notifications,
    state,
    user_row,
)

from merchant_kit.protocol import payscore_time
from sandbox import db
from sandbox.clock import to_datetime
from sandbox.world import behaviour, population

MAGIC = population.MAGIC_OPENIDS


def _attempt_times(client, out_order_no):
    return [e["at_us"] for e in events_of(client, out_order_no, "deduction_failed")]


def test_a_paying_user_is_debited_at_once_with_user_paid(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["always_confirms"]
    before = user_row(sandbox, openid).on_time_orders
    completed_order(client, sandbox, "P1", openid, 1234)
    assert state(client, "P1") == "DOING/MCH_COMPLETE/USER_PAYING"
    sandbox.advance(0)  # the first attempt is due at completion time
    assert state(client, "P1") == "DONE/USER_PAID"
    paid = notifications(sandbox, "PAYSCORE.USER_PAID")
    assert len(paid) == 1 and paid[0].created_us == T0
    collection = paid[0].resource["collection"]
    assert collection["state"] == "USER_PAID" and collection["paid_amount"] == 1234
    assert collection["details"][0]["paid_type"] == "NEWTON"
    assert count(sandbox, db.transactions) == 1
    # paid on time: the user's record gains one on-time order (2 points at the next refresh)
    assert user_row(sandbox, openid).on_time_orders == before + 1
    assert kinds(client, "P1")[-2:] == ["deduction_succeeded", "paid_on_time"]
    assert control(client).get("/sandbox/jobs?kind=deduct").json["data"] == []
    # nothing is owed any more: neither a payment nor a default of the unpaid amount applies
    for action in ("pay", "default"):
        answer = control(client).post(f"/sandbox/users/{openid}/act", json={
            "action": action, "mchid": client.merchant.mchid, "out_order_no": "P1"})
        assert answer.status_code == 400, (action, answer.json)


def test_a_user_who_cannot_pay_is_retried_on_the_documented_schedule(client, sandbox):
    freeze(sandbox)
    completed_order(client, sandbox, "F1", MAGIC["insufficient_balance"], 800)
    sandbox.advance(3 * DAY)
    expected = [T0, T0 + HOUR, T0 + 7 * HOUR, T0 + 31 * HOUR, T0 + 55 * HOUR]
    assert _attempt_times(client, "F1") == expected
    assert [behaviour.retry_delay_us(n) for n in (1, 2, 3, 9)] == \
        [HOUR, 6 * HOUR, DAY, DAY]
    failed = events_of(client, "F1", "deduction_failed")
    assert failed[0]["detail"]["attempt"] == 1 and failed[0]["detail"]["amount"] == 800
    assert failed[0]["detail"]["next_attempt_us"] == T0 + HOUR
    assert failed[0]["from_state"] == failed[0]["to_state"] == "DOING/MCH_COMPLETE/USER_PAYING"
    assert state(client, "F1") == "DOING/MCH_COMPLETE/USER_PAYING"
    assert notifications(sandbox, "PAYSCORE.USER_PAID") == []
    pending = control(client).get("/sandbox/jobs?kind=deduct").json["data"]
    assert [j["due_us"] for j in pending] == [T0 + 79 * HOUR]


def test_fail_next_deduction_forces_one_failure_then_the_retry_pays(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["always_confirms"]
    act(client, openid, "fail_next_deduction")
    assert user_row(sandbox, openid).fail_next_deductions == 1
    completed_order(client, sandbox, "FN", openid, 500)
    sandbox.advance(0)
    assert state(client, "FN") == "DOING/MCH_COMPLETE/USER_PAYING"
    assert user_row(sandbox, openid).fail_next_deductions == 0
    sandbox.advance(HOUR)
    assert state(client, "FN") == "DONE/USER_PAID"
    assert events_of(client, "FN", "deduction_succeeded")[0]["at_us"] == T0 + HOUR
    assert user_row(sandbox, openid).defaults_total == 0  # paid long before day 1


def test_a_late_payer_pays_once_their_delay_has_passed(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["pays_after_3_days"]
    completed_order(client, sandbox, "L1", openid, 3000)
    sandbox.advance(7 * DAY)
    paid_at = events_of(client, "L1", "deduction_succeeded")[0]["at_us"]
    assert paid_at == T0 + 79 * HOUR  # the first daily retry after 3 days
    assert _attempt_times(client, "L1") == [T0, T0 + HOUR, T0 + 7 * HOUR, T0 + 31 * HOUR,
                                            T0 + 55 * HOUR]
    # overdue day 1 and 3 happened before the payment, day 7 did not
    assert [k for k in kinds(client, "L1") if k.startswith("overdue_")] == \
        ["overdue_notice", "overdue_negotiation"]
    row = user_row(sandbox, openid)
    assert row.defaults_total == 1 and row.overdue_fen == 0  # the default is settled
    assert count(sandbox, db.user_defaults, db.user_defaults.c.settled.is_(True)) == 1
    assert len(notifications(sandbox, "PAYSCORE.USER_PAID")) == 1


def test_merchant_pay_refused_while_the_user_cannot_pay(client, sandbox):
    freeze(sandbox)
    completed_order(client, sandbox, "MP0", MAGIC["insufficient_balance"], 700)
    sandbox.advance(0)
    answer = client.post("/v3/payscore/serviceorder/MP0/pay", client.ids())
    assert answer.status_code == 403
    assert answer.json == {"code": "TRADE_ERROR", "message": "扣款失败"}
    # WeChat's own schedule is unchanged: one failure so far, next attempt in an hour
    assert len(_attempt_times(client, "MP0")) == 1
    pending = control(client).get("/sandbox/jobs?kind=deduct").json["data"]
    assert [j["due_us"] for j in pending] == [T0 + HOUR]


def test_merchant_pay_triggers_a_new_attempt_that_succeeds(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["always_confirms"]
    act(client, openid, "fail_next_deduction")
    completed_order(client, sandbox, "MP1", openid, 600)
    sandbox.advance(10 * 60 * 1_000_000)  # the first attempt failed (forced)
    assert state(client, "MP1") == "DOING/MCH_COMPLETE/USER_PAYING"
    answer = client.post("/v3/payscore/serviceorder/MP1/pay", client.ids())
    assert answer.status_code == 200, answer.json
    assert answer.json["out_order_no"] == "MP1"
    sandbox.advance(0)  # the merchant's attempt runs now, not at WeChat's next retry
    assert state(client, "MP1") == "DONE/USER_PAID"
    success = events_of(client, "MP1", "deduction_succeeded")[0]
    assert success["at_us"] == T0 + 10 * 60 * 1_000_000
    assert len(notifications(sandbox, "PAYSCORE.USER_PAID")) == 1
    assert control(client).get("/sandbox/jobs?kind=deduct").json["data"] == []


def test_sync_records_payment_elsewhere_and_stops_the_retries(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["insufficient_balance"]
    completed_order(client, sandbox, "S1", openid, 4500)
    sandbox.advance(2 * DAY)  # overdue: the default is recorded on day 1
    assert user_row(sandbox, openid).overdue_fen == 4500
    paid_time = payscore_time(to_datetime(sandbox.clock.now_us()))
    answer = client.post("/v3/payscore/serviceorder/S1/sync", {
        **client.ids(), "type": "Order_Paid", "detail": {"paid_time": paid_time}})
    assert answer.status_code == 200, answer.json
    assert answer.json["collection"]["details"][0]["paid_type"] == "MCH"
    assert state(client, "S1") == "DONE/USER_PAID"
    attempts = len(_attempt_times(client, "S1"))
    sandbox.advance(10 * DAY)
    assert len(_attempt_times(client, "S1")) == attempts  # no more retries
    assert [k for k in kinds(client, "S1") if k.startswith("overdue_")] == ["overdue_notice"]
    assert user_row(sandbox, openid).overdue_fen == 0
    assert notifications(sandbox, "PAYSCORE.USER_PAID") == []  # the merchant told WeChat
