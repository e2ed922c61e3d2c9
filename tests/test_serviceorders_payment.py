"""After completion (reference §2.6-§2.9): modify only lowers, pay asks the world, sync marks
a payment the merchant collected itself; and direct-complete, create and complete in one."""

from __future__ import annotations

from serviceorders_support import (
    CANNOT_PAY,
    DAY_US,
    ORDER,
    PAYS,
    complete,
    complete_body,
    confirm,
    create,
    notifications,
    now_text,
    operation_body,
    order_row,
    query,
)
from sqlalchemy import select, update

from merchant_kit.protocol import payscore_time
from sandbox import db
from sandbox.clock import to_datetime
from sandbox.testing import SignedClient

# ---------------------------------------------------------------- modify, pay, sync


def test_modify_only_lowers(client, sandbox):
    create(client, "L1")
    confirm(client, "L1", CANNOT_PAY)
    complete(client, "L1", 500)

    def modify(total: int, reason: str = "降价"):
        return client.post(f"{ORDER}/L1/modify", {
            **client.ids(), "post_payments": [{"name": "租金", "amount": total}],
            "total_amount": total, "reason": reason})

    for not_lower in (500, 600):
        r = modify(not_lower)
        assert r.status_code == 400 and r.json["code"] == "INVALID_REQUEST"
    lowered = modify(400)
    assert lowered.status_code == 200
    assert lowered.json["total_amount"] == 400
    assert lowered.json["collection"]["paying_amount"] == 400
    assert modify(400).json == lowered.json  # the same modification sent again
    assert modify(400, "another reason").status_code == 400  # 400 is no longer lower
    assert modify(300).json["total_amount"] == 300
    assert modify(0).status_code == 400
    bad = client.post(f"{ORDER}/L1/modify", {
        **client.ids(), "post_payments": [{"name": "租金", "amount": 200}],
        "total_amount": 250, "reason": "x"})
    assert bad.json["message"] == "最终总金额计算非法"
    assert query(client, "L1").json["total_amount"] == 300


def test_modify_pay_sync_while_deducting(client, sandbox):
    create(client, "D1")
    confirm(client, "D1", CANNOT_PAY)
    complete(client, "D1")
    with db.write_tx(sandbox.engine) as conn:  # a deduction in flight (e.g. a held fault)
        conn.execute(update(db.orders).where(db.orders.c.out_order_no == "D1")
                     .values(deducting=True))
    for op in ("modify", "pay", "sync"):
        r = client.post(f"{ORDER}/D1/{op}", operation_body(client, op))
        assert r.status_code == 400, op
        assert r.json["message"] == "单据正在扣款中，请稍后再试"
        assert r.headers["Request-ID"].endswith("-271316754")


def test_pay_asks_the_world(client, sandbox):
    create(client, "Y1")
    confirm(client, "Y1", CANNOT_PAY)
    complete(client, "Y1")
    refused = client.post(f"{ORDER}/Y1/pay", client.ids())
    assert refused.status_code == 403
    assert refused.json == {"code": "TRADE_ERROR", "message": "扣款失败"}
    create(client, "Y2")
    confirm(client, "Y2", PAYS)
    complete(client, "Y2")
    ok = client.post(f"{ORDER}/Y2/pay", client.ids())
    assert ok.status_code == 200
    assert set(ok.json) == {"appid", "mchid", "out_order_no", "service_id", "order_id"}
    with sandbox.engine.connect() as conn:
        triggers = [j.payload for j in conn.execute(select(db.jobs).where(
            db.jobs.c.kind == "deduct", db.jobs.c.ref == str(order_row(
                sandbox, client.merchant.mchid, "Y2").pk)))]
    assert {"trigger": "merchant_pay"} in triggers
    sandbox.advance(1_000_000)
    assert query(client, "Y2").json["state"] == "DONE"


def test_sync_marks_paid_by_the_merchant_without_a_callback(client, sandbox):
    create(client, "S1")
    confirm(client, "S1", CANNOT_PAY)
    complete(client, "S1")
    future = payscore_time(to_datetime(sandbox.clock.now_us() + 3_600_000_000))
    body = {**client.ids(), "type": "Order_Paid", "detail": {"paid_time": future}}
    assert client.post(f"{ORDER}/S1/sync", body).status_code == 400
    paid_time = now_text(client)
    body["detail"]["paid_time"] = paid_time
    r = client.post(f"{ORDER}/S1/sync", body)
    assert r.status_code == 200
    assert (r.json["state"], r.json["collection"]["state"]) == ("DONE", "USER_PAID")
    detail = r.json["collection"]["details"][0]
    assert (detail["paid_type"], detail["paid_time"], detail["amount"]) == \
        ("MCH", paid_time, 500)
    assert r.json["collection"]["paying_amount"] == 0
    assert notifications(sandbox, "PAYSCORE.USER_PAID") == []
    sandbox.advance(7 * DAY_US)  # no deduction or overdue stage may follow a sync
    assert len(query(client, "S1").json["collection"]["details"]) == 1
    bad_type = client.post(f"{ORDER}/S1/sync", {**body, "type": "Order_Refunded"})
    assert bad_type.status_code == 400 and bad_type.json["code"] == "PARAM_ERROR"


# ---------------------------------------------------------------- direct-complete


def direct_body(client: SignedClient, no: str, total: int = 700, **overrides) -> dict:
    start = payscore_time(to_datetime(client.app.extensions["payscore"].clock.now_us()
                                      - 3_600_000_000))
    body = {**client.ids(), "out_order_no": no, "openid": PAYS,
            "service_introduction": "洗车", "post_payments": [{"name": "洗车", "amount": total}],
            "total_amount": total, "notify_url": "https://merchant.example/notify",
            "time_range": {"start_time": start, "end_time": now_text(client)}}
    body.update(overrides)
    return body


def test_direct_complete(client, sandbox):
    path = f"{ORDER}/direct-complete"
    refused = client.post(path, direct_body(client, "DC1"))
    assert refused.status_code == 403 and refused.json["code"] == "NO_AUTH"
    client.post(f"/sandbox/merchants/{client.merchant.mchid}/permissions/authorize",
                {"openid": PAYS}, sign=False)
    body = direct_body(client, "DC1")
    r = client.post(path, body)
    assert r.status_code == 200, r.json
    assert (r.json["state"], r.json["state_description"], r.json["total_amount"]) == \
        ("DOING", "MCH_COMPLETE", 700)
    assert "risk_fund" not in r.json and "collection" not in r.json
    assert client.post(path, body).json == r.json  # identical replay
    other = client.post(path, direct_body(client, "DC1", 600))
    assert other.json["message"] == "订单重入参数校验失败"
    assert client.post(f"{ORDER}/DC1/complete", complete_body(client, 700)).json[
        "message"] == "订单重入参数校验失败"
    assert client.post(f"{ORDER}/DC1/cancel", {**client.ids(), "reason": "x"}).json[
        "code"] == "PARAM_ERROR"
    sandbox.advance(1_000_000)
    assert query(client, "DC1").json["collection"]["state"] == "USER_PAID"
    assert len(notifications(sandbox, "PAYSCORE.USER_PAID")) == 1
    null = client.post(path, direct_body(client, "DC2", 0, notify_url=None))
    assert null.status_code == 400  # null is refused: omit the key instead
    body = direct_body(client, "DC2", 0)
    del body["notify_url"]
    free = client.post(path, body)
    assert free.status_code == 200 and free.json["state"] == "DONE"
    no_url = direct_body(client, "DC3")
    del no_url["notify_url"]
    assert client.post(path, no_url).json["detail"]["field"] == "/notify_url"
    on_accept = direct_body(client, "DC4")
    on_accept["time_range"]["start_time"] = "OnAccept"
    assert client.post(path, on_accept).json["code"] == "PARAM_ERROR"
