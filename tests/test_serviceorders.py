"""Service orders (reference §2.2-§2.9, §3): every operation in every state, and the rules."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from merchant_kit.protocol import CST, payscore_time
from sandbox import db
from sandbox.clock import from_datetime, to_datetime
from sandbox.testing import SignedClient, add_merchant

ORDER = "/v3/payscore/serviceorder"
PAYS = "o_magic_always_confirms"  # confirms, and every deduction succeeds at once
CANNOT_PAY = "o_magic_insufficient_balance"
DAY_US = 86400 * 1_000_000
PAYMENTS = [{"name": "租金", "amount": 500}]


def create(client: SignedClient, no: str, **overrides):
    return client.post(ORDER, client.create_body(no, **overrides))


def confirm(client: SignedClient, no: str, openid: str = PAYS):
    r = client.post(f"/sandbox/merchants/{client.merchant.mchid}/orders/{no}/confirm",
                    {"openid": openid}, sign=False)
    assert r.status_code == 200, r.json
    return r


def now_text(client: SignedClient) -> str:
    return payscore_time(client.app.extensions["payscore"].clock.now())


def complete_body(client: SignedClient, total: int = 500, **overrides) -> dict:
    body = {**client.ids(), "post_payments": [{"name": "租金", "amount": total}],
            "total_amount": total, "time_range": {"end_time": now_text(client)}}
    body.update(overrides)
    return body


def complete(client: SignedClient, no: str, total: int = 500, **overrides):
    return client.post(f"{ORDER}/{no}/complete", complete_body(client, total, **overrides))


def query(client: SignedClient, no: str):
    return client.get(ORDER, query={**client.ids(), "out_order_no": no})


def order_row(sandbox, mchid: str, no: str):
    with sandbox.engine.connect() as conn:
        return conn.execute(select(db.orders).where(db.orders.c.mchid == mchid,
                                                    db.orders.c.out_order_no == no)).one()


def notifications(sandbox, event_type: str) -> list:
    with sandbox.engine.connect() as conn:
        return list(conn.execute(select(db.notifications)
                                 .where(db.notifications.c.event_type == event_type)))


def drive(client: SignedClient, sandbox, state: str, *numbers: str) -> None:
    """Bring new orders into one of the seven states of §3.3."""
    for no in numbers:
        assert create(client, no, post_payments=PAYMENTS).status_code == 200
    if state == "EXPIRED":
        sandbox.advance(30 * DAY_US + 1_000_000)
    for no in numbers:
        if state in ("CREATED", "EXPIRED"):
            continue
        if state == "REVOKED":
            assert client.post(f"{ORDER}/{no}/cancel", {**client.ids(), "reason": "r"}) \
                .status_code == 200
            continue
        confirm(client, no, PAYS)  # pays only when the clock moves (the deduction job)
        if state != "CONFIRMED":
            assert complete(client, no, 0 if state == "DONE_FREE" else 500).status_code == 200
    if state == "PAID":
        sandbox.advance(1_000_000)  # WeChat's first deduction runs at completion


STATES = {
    "CREATED": ("CREATED", None, None),
    "CONFIRMED": ("DOING", "USER_CONFIRM", None),
    "COMPLETED": ("DOING", "MCH_COMPLETE", "USER_PAYING"),
    "PAID": ("DONE", None, "USER_PAID"),
    "DONE_FREE": ("DONE", None, None),
    "REVOKED": ("REVOKED", None, None),
    "EXPIRED": ("EXPIRED", None, None),
}

WRONG_STATE = ("INVALID_REQUEST", "当前订单状态不合法")
NOT_PAYING = ("INVALID_REQUEST", "仅服务订单支付状态为待支付时，才可使用此能力")
CANCELED = ("ORDER_CANCELED", "单据已取消")
DONE = ("ORDER_DONE", "订单已完成")

# (operation, state) -> None for success, else (code, message) of a 400 (reference §3.3).
MATRIX = {
    ("cancel", "CREATED"): None,
    ("cancel", "CONFIRMED"): None,
    ("cancel", "COMPLETED"): ("PARAM_ERROR", "当前订单状态不满足撤销条件"),
    ("cancel", "PAID"): DONE,
    ("cancel", "DONE_FREE"): DONE,
    ("cancel", "REVOKED"): CANCELED,
    ("cancel", "EXPIRED"): WRONG_STATE,
    ("complete", "CREATED"): ("INVALID_REQUEST", "当前订单状态不合法（确认状态）"),
    ("complete", "CONFIRMED"): None,
    ("complete", "COMPLETED"): ("INVALID_REQUEST", "订单重入参数校验失败"),
    ("complete", "PAID"): DONE,
    ("complete", "DONE_FREE"): DONE,
    ("complete", "REVOKED"): CANCELED,
    ("complete", "EXPIRED"): WRONG_STATE,
    **{(op, state): NOT_PAYING for op in ("modify", "pay", "sync")
       for state in ("CREATED", "CONFIRMED", "PAID", "DONE_FREE", "EXPIRED")},
    **{(op, "COMPLETED"): None for op in ("modify", "pay", "sync")},
    **{(op, "REVOKED"): CANCELED for op in ("modify", "pay", "sync")},
}


def operation_body(client: SignedClient, op: str) -> dict:
    ids = client.ids()
    return {
        "cancel": {**ids, "reason": "another reason"},
        # a different amount than the one the order was completed with: not a re-entry
        "complete": complete_body(client, 400),
        "modify": {**ids, "post_payments": [{"name": "租金", "amount": 300}],
                   "total_amount": 300, "reason": "discount"},
        "pay": ids,
        "sync": {**ids, "type": "Order_Paid", "detail": {"paid_time": now_text(client)}},
    }[op]


@pytest.mark.parametrize("state", list(STATES))
def test_every_operation_in_every_state(client, sandbox, state):
    """One order per (state, operation): the matrix of §3.3, then query always works."""
    operations = ("cancel", "complete", "modify", "pay", "sync")
    drive(client, sandbox, state, *(f"M{op}" for op in operations))
    for op in operations:
        no = f"M{op}"
        row = order_row(sandbox, client.merchant.mchid, no)
        assert (row.state, row.state_description, row.collection_state) == STATES[state]
        r = client.post(f"{ORDER}/{no}/{op}", operation_body(client, op))
        expected = MATRIX[(op, state)]
        if expected is None:
            assert r.status_code == 200, (op, state, r.json)
            assert r.json["out_order_no"] == no
        else:
            assert r.status_code == 400, (op, state, r.json)
            assert (r.json["code"], r.json["message"]) == expected, (op, state)
            assert "Wechatpay-Signature" not in r.headers  # errors are not signed
            after = order_row(sandbox, client.merchant.mchid, no)
            assert after.version == row.version, "a refused operation changed the order"
        seen = query(client, no)
        assert seen.status_code == 200 and seen.json["out_order_no"] == no


def test_successful_transitions_land_in_the_documented_state(client, sandbox):
    for no in ("T1", "T2", "T3"):
        assert create(client, no, post_payments=PAYMENTS).json["state"] == "CREATED"
    assert client.post(f"{ORDER}/T1/cancel", {**client.ids(), "reason": "r"}).json[
        "order_id"] == query(client, "T1").json["order_id"]
    assert query(client, "T1").json["state"] == "REVOKED"
    confirm(client, "T2", CANNOT_PAY)
    answer = complete(client, "T2").json
    assert (answer["state"], answer["state_description"], answer["total_amount"],
            answer["need_collection"]) == ("DOING", "MCH_COMPLETE", 500, True)
    entity = query(client, "T2").json
    assert entity["collection"] == {"state": "USER_PAYING", "total_amount": 500,
                                    "paying_amount": 500, "paid_amount": 0, "details": []}
    confirm(client, "T3")
    free = complete(client, "T3", 0).json
    assert (free["state"], free["need_collection"]) == ("DONE", False)
    assert "collection" not in query(client, "T3").json


def test_cancel_retry_with_the_same_reason_answers_again(client):
    create(client, "C1")
    body = {**client.ids(), "reason": "用户取消"}
    first = client.post(f"{ORDER}/C1/cancel", body)
    again = client.post(f"{ORDER}/C1/cancel", body)
    assert first.status_code == again.status_code == 200
    assert again.json == first.json


def test_complete_identical_reentry_answers_the_same(client):
    create(client, "R1")
    confirm(client, "R1", CANNOT_PAY)
    body = complete_body(client)
    first = client.post(f"{ORDER}/R1/complete", body)
    again = client.post(f"{ORDER}/R1/complete", body)
    assert first.status_code == again.status_code == 200
    assert again.json == first.json


def test_paid_order_has_a_newton_collection_and_user_paid_callback(client, sandbox):
    drive(client, sandbox, "PAID", "P1")
    entity = query(client, "P1").json
    detail = entity["collection"]["details"][0]
    assert (entity["state"], entity["collection"]["state"]) == ("DONE", "USER_PAID")
    assert (detail["seq"], detail["amount"], detail["paid_type"]) == (1, 500, "NEWTON")
    assert len(detail["transaction_id"]) <= 32
    assert len(notifications(sandbox, "PAYSCORE.USER_CONFIRM")) == 1
    paid = notifications(sandbox, "PAYSCORE.USER_PAID")
    assert len(paid) == 1 and paid[0].resource["state"] == "DONE"
    assert paid[0].url == "https://merchant.example/notify"


# ---------------------------------------------------------------- create


def test_create_identical_replay_is_the_same_order(client, sandbox):
    body = client.create_body("I1", post_payments=PAYMENTS)
    first = client.post(ORDER, body)
    again = client.post(ORDER, body)
    assert first.status_code == again.status_code == 200
    assert again.json == first.json  # same order_id and package
    with sandbox.engine.connect() as conn:
        assert len(list(conn.execute(select(db.orders)))) == 1


def test_create_replay_with_other_parameters_is_refused(client):
    assert create(client, "I2").status_code == 200
    r = create(client, "I2", service_introduction="另一个服务")
    assert r.status_code == 400
    assert r.json == {"code": "INVALID_REQUEST", "message": "订单重入参数校验失败"}
    assert r.headers["Request-ID"].endswith("-271316598")


def test_risk_fund_ceiling(app, sandbox):
    merchant = add_merchant(app, risk_fund_ceiling=5000)
    client = SignedClient(app, merchant)
    over = create(client, "K1", risk_fund={"name": "ESTIMATE_ORDER_COST", "amount": 5001})
    assert over.status_code == 400
    assert over.json["message"] == "创建订单的订单风险金额超过此服务的服务风险金额"
    assert create(client, "K2", risk_fund={"name": "ESTIMATE_ORDER_COST",
                                           "amount": 5000}).status_code == 200
    confirm(client, "K2", CANNOT_PAY)
    r = complete(client, "K2", 5001)
    assert r.status_code == 400 and r.json["message"] == "总金额超过此服务的服务风险金额"
    assert r.headers["Request-ID"].endswith("-271316656")
    # 先免 (deposit) mode: the order's own risk fund caps the total
    create(client, "K3", risk_fund={"name": "DEPOSIT", "amount": 800})
    confirm(client, "K3", CANNOT_PAY)
    assert complete(client, "K3", 801).json["message"] == "总金额超过订单风险金额"
    assert complete(client, "K3", 800).status_code == 200


def test_no_confirm_create_needs_an_authorised_user(client):
    body = client.create_body("N1", need_user_confirm=False, openid=PAYS)
    refused = client.post(ORDER, body)
    assert refused.status_code == 403 and refused.json["code"] == "NO_AUTH"
    client.post(f"/sandbox/merchants/{client.merchant.mchid}/permissions/authorize",
                {"openid": PAYS}, sign=False)
    created = client.post(ORDER, body)
    assert created.status_code == 200
    assert (created.json["state"], created.json["state_description"]) == \
        ("DOING", "USER_CONFIRM")


@pytest.fixture
def frozen_evening(sandbox):
    """17:00 UTC on 1 Jan 2024 is already 2 Jan, 01:00 in China (UTC+8)."""
    at = dt.datetime(2024, 1, 1, 17, 0, 0, tzinfo=dt.UTC)
    sandbox.clock.freeze(from_datetime(at))
    return at.astimezone(CST)


@pytest.mark.parametrize("time_range, ok", [
    ({"start_time": "20240102010000"}, False),  # exactly now: must be after the call
    ({"start_time": "20240102010001"}, True),
    ({"start_time": "20240101"}, False),  # today in UTC, yesterday in China
    ({"start_time": "20240102"}, True),
    ({"start_time": "OnAccept", "end_time": "20240102010100"}, False),  # not > now + 1 min
    ({"start_time": "OnAccept", "end_time": "20240102010101"}, True),
    ({"start_time": "20240102020000", "end_time": "20240102015959"}, False),  # before start
    ({"start_time": "20240103", "end_time": "20240102"}, False),
    ({"start_time": "20240102", "end_time": "20240102"}, True),
    ({"start_time": "20240231"}, False),  # not a real date
])
def test_create_time_range_rules_in_china_time(client, frozen_evening, time_range, ok):
    r = create(client, "TR1", time_range=time_range)
    assert (r.status_code == 200) is ok, r.json
    if not ok:
        assert r.json["code"] == "PARAM_ERROR"


def test_complete_end_time_rules(client, sandbox):
    create(client, "E1", time_range={"start_time": "OnAccept"})
    confirm(client, "E1", CANNOT_PAY)
    later = payscore_time(to_datetime(sandbox.clock.now_us() + 120_000_000))
    r = complete(client, "E1", time_range={"end_time": later})
    assert r.status_code == 400 and r.json["message"] == "实际结束时间不能晚于使用完结接口的时间"
    before_confirm = payscore_time(to_datetime(sandbox.clock.now_us() - 3_600_000_000))
    r = complete(client, "E1", time_range={"end_time": before_confirm})
    assert r.status_code == 400 and r.json["message"] == "真实结束时间小于预计开始时间"
    missing = complete_body(client)
    del missing["time_range"]
    r = client.post(f"{ORDER}/E1/complete", missing)
    assert r.status_code == 400 and r.json["detail"]["field"] == "/time_range/end_time"
    assert complete(client, "E1").status_code == 200


def test_total_formula(client):
    create(client, "F1")
    confirm(client, "F1", CANNOT_PAY)
    body = {**client.ids(), "post_payments": [{"name": "租金", "amount": 1000},
                                              {"name": "赔偿", "amount": 200}],
            "post_discounts": [{"name": "新人券", "amount": 300}],
            "time_range": {"end_time": now_text(client)}}
    wrong = client.post(f"{ORDER}/F1/complete", {**body, "total_amount": 1200})
    assert wrong.status_code == 400
    assert (wrong.json["code"], wrong.json["message"]) == ("PARAM_ERROR", "最终总金额计算非法")
    right = client.post(f"{ORDER}/F1/complete", {**body, "total_amount": 900})
    assert right.status_code == 200 and right.json["total_amount"] == 900
    assert right.json["post_discounts"] == body["post_discounts"]


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


# ---------------------------------------------------------------- query and input rules


def test_query_by_query_id(client, sandbox):
    create(client, "Q1")
    query_id = order_row(sandbox, client.merchant.mchid, "Q1").query_id
    r = client.get(ORDER, query={**client.ids(), "query_id": query_id})
    assert r.status_code == 200 and r.json["out_order_no"] == "Q1"
    missing = client.get(ORDER, query={**client.ids(), "query_id": "nope"})
    assert missing.status_code == 404 and missing.json["code"] == "ORDER_NOT_EXIST"
    assert missing.headers["Request-ID"].endswith("-271317510")


@pytest.mark.parametrize("keys", [{}, {"out_order_no": "Q2", "query_id": "x"}])
def test_query_needs_exactly_one_key(client, keys):
    create(client, "Q2")
    r = client.get(ORDER, query={**client.ids(), **keys})
    assert r.status_code == 400 and r.json["code"] == "PARAM_ERROR"


def test_path_parameter_in_body_is_refused(client):
    create(client, "B1")
    r = client.post(f"{ORDER}/B1/cancel", {**client.ids(), "reason": "x", "out_order_no": "B1"})
    assert r.status_code == 400 and r.json["code"] == "PARAM_ERROR"
    assert "/uri_template/out_order_no" in r.json["message"]
    assert query(client, "B1").json["state"] == "CREATED"


@pytest.mark.parametrize("mutate", [
    lambda b: b.update(service_introduction="充电宝😀"),  # 4-byte UTF-8
    lambda b: b.update(out_order_no="A1\n"),  # Python's `$` would let this pass
    lambda b: b.update(service_introduction="x" * 21),
    lambda b: b["risk_fund"].update(name="CASH"),
    lambda b: b["risk_fund"].update(amount="100"),
    lambda b: b.update(unknown_field=1),
    lambda b: b.update(post_payments=[{"name": "a", "amount": 1}, {"name": "a", "amount": 2}]),
    lambda b: b.update(need_user_confirm=False),  # needs an openid
    lambda b: b.update(notify_url="https://merchant.example/notify?x=1"),
])
def test_create_field_rules(client, mutate):
    body = client.create_body("V1")
    mutate(body)
    r = client.post(ORDER, body)
    assert r.status_code == 400 and r.json["code"] == "PARAM_ERROR", r.json


def test_expiry_after_thirty_idle_days(client, sandbox):
    create(client, "X1")
    create(client, "X2")
    confirm(client, "X2", CANNOT_PAY)
    sandbox.advance(29 * DAY_US)
    assert query(client, "X1").json["state"] == "CREATED"
    sandbox.advance(DAY_US + 1_000_000)
    assert query(client, "X1").json["state"] == "EXPIRED"
    assert query(client, "X2").json["state"] == "DOING"  # confirmed orders never expire


# ---------------------------------------------------------------- isolation


def test_another_merchant_cannot_see_or_touch_an_order(app, client, sandbox):
    create(client, "ISO1")
    confirm(client, "ISO1", CANNOT_PAY)
    other = SignedClient(app, add_merchant(app))
    for ids in (other.ids(), client.ids()):  # its own ids, or the victim's
        r = other.get(ORDER, query={**ids, "out_order_no": "ISO1"})
        assert r.status_code == 404 and r.json["code"] == "ORDER_NOT_EXIST"
        for op in ("cancel", "complete", "modify", "pay", "sync"):
            body = {**operation_body(other, op), **ids}
            r = other.post(f"{ORDER}/ISO1/{op}", body)
            assert r.status_code == 404 and r.json["code"] == "ORDER_NOT_EXIST", (op, r.json)
    row = order_row(sandbox, client.merchant.mchid, "ISO1")
    assert row.state == "DOING" and row.version == 2
    # the same out_order_no is free for the other merchant: numbers are per merchant
    assert create(other, "ISO1").status_code == 200
