"""merchant_kit against a live sandbox over real HTTP, in both signing modes.

Certificate mode: the merchant knows only the platform certificate (merchant.json without the
public key) and the sandbox signs with the certificate. Public-key mode: the merchant knows only
the WeChat Pay public key (no certificate) and the sandbox merchant's signing_mode is
public_key, so /v3/certificates answers RESOURCE_NOT_EXISTS. Every operation of the client runs;
every 2xx reply and every callback must carry the serial of the mode's key, and the kit's
CallbackHandler (served as a plain WSGI app) must accept each callback exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, select, update
from werkzeug.serving import make_server

from merchant_kit import (
    OPERATIONS,
    ApiError,
    CallbackHandler,
    CompleteServiceOrderRequest,
    CreateRefundRequest,
    CreateServiceOrderRequest,
    DirectCompleteRequest,
    MerchantConfig,
    ModifyServiceOrderRequest,
    NotificationStore,
    Payment,
    PayScoreClient,
    RefundAmount,
    RiskFund,
    TimeRange,
    wsgi_app,
)
from merchant_kit.protocol import payscore_time
from sandbox import db

GOOD_USER = "o_magic_never_confirms"  # eligible, pays, waits for us to confirm for them


@dataclass
class Kit:
    mode: str
    expected_serial: str
    client: PayScoreClient
    notify_url: str
    handle: Any
    reply_serials: list[str] = field(default_factory=list)
    callback_serials: list[str] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    called: set[str] = field(default_factory=set)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.called.add(name)
        return getattr(self.client, name)(*args, **kwargs)


@pytest.fixture(params=["certificate", "public_key"])
def kit(request, payscore_sandbox, tmp_path) -> Iterator[Kit]:
    mode, handle = request.param, payscore_sandbox
    info = json.loads(handle.merchant_json.read_text())
    with handle.sandbox.engine.begin() as conn:
        conn.execute(update(db.merchants).where(db.merchants.c.mchid == info["mchid"])
                     .values(signing_mode=mode))
    if mode == "certificate":
        drop = {"platform_public_key": None, "platform_public_key_id": None}
        expected = info["platform_serial_no"]
    else:
        drop = {"platform_certificate_pem": None, "platform_serial_no": None}
        expected = info["platform_public_key_id"]
    config = MerchantConfig.from_file(handle.merchant_json, **drop)
    session = requests.Session()
    client = PayScoreClient(config, session=session)
    store = NotificationStore(create_engine(f"sqlite:///{tmp_path / 'merchant.db'}"))
    store.create_table()
    holder: dict[str, Kit] = {}
    handler = CallbackHandler(config, client.keys, store,
                              on_event=lambda event, conn: holder["kit"].events.append(event))
    inner = wsgi_app(handler)

    def receiver(environ, start_response):
        holder["kit"].callback_serials.append(environ.get("HTTP_WECHATPAY_SERIAL"))
        return inner(environ, start_response)

    server = make_server("127.0.0.1", 0, receiver, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    k = Kit(mode, expected, client, f"http://127.0.0.1:{server.server_port}/notify", handle)
    holder["kit"] = k

    def record(response, *args, **kwargs):
        if 200 <= response.status_code < 300:
            k.reply_serials.append(response.headers.get("Wechatpay-Serial"))

    session.hooks["response"].append(record)
    try:
        yield k
    finally:
        server.shutdown()
        thread.join(timeout=5)


def create_request(k: Kit, number: str, openid: str, **extra: Any) -> CreateServiceOrderRequest:
    return CreateServiceOrderRequest(
        out_order_no=number, service_introduction="充电宝租借",
        time_range=TimeRange(start_time="OnAccept"),
        risk_fund=RiskFund(name="ESTIMATE_ORDER_COST", amount=9900),
        notify_url=k.notify_url, openid=openid, **extra)


def complete_request(amount: int) -> CompleteServiceOrderRequest:
    end = payscore_time(dt.datetime.now(dt.UTC))  # returned now: after the confirmation
    return CompleteServiceOrderRequest(post_payments=[Payment(name="租借费", amount=amount)],
                                       total_amount=amount, time_range=TimeRange(end_time=end))


def until(probe, what: str) -> Any:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def number(tag: str) -> str:
    return f"KIT{tag}{secrets.token_hex(6)}"


def test_every_operation_in_both_signing_modes(kit: Kit) -> None:
    k, h = kit, kit.handle
    # Certificates: downloadable in certificate mode, absent for a public-key-only merchant.
    if k.mode == "certificate":
        assert k.expected_serial in [c.serial_no for c in k.call("download_certificates")]
    else:
        with pytest.raises(ApiError) as refused:
            k.call("download_certificates")
        assert refused.value.code == "RESOURCE_NOT_EXISTS"

    # create, query (by out_order_no and by query_id), cancel
    first = number("A")
    created = k.call("create_service_order", create_request(k, first, GOOD_USER))
    assert created.state == "CREATED" and created.package
    assert k.call("query_service_order", first).state == "CREATED"
    with h.sandbox.engine.connect() as conn:
        query_id = conn.execute(select(db.orders.c.query_id).where(
            db.orders.c.out_order_no == first)).scalar_one()
    assert k.call("query_service_order", query_id=query_id).out_order_no == first
    assert k.call("cancel_service_order", first, "用户取消").out_order_no == first
    assert k.client.query_service_order(first).state == "REVOKED"

    # confirm (callback), complete, modify while the first deduction fails, pay, refund
    second = number("B")
    k.call("create_service_order", create_request(k, second, GOOD_USER))
    h.control("POST", f"/users/{GOOD_USER}/act", {"action": "fail_next_deduction", "count": 1})
    h.confirm(second, GOOD_USER)
    completed = k.call("complete_service_order", second, complete_request(300))
    assert (completed.state, completed.state_description) == ("DOING", "MCH_COMPLETE")
    until(lambda: "deduction_failed" in [e["kind"] for e in h.control(
        "GET", f"/orders/{h.mchid}/{second}/timeline")["events"]], "the failed deduction")
    modified = k.call("modify_service_order", second, ModifyServiceOrderRequest(
        post_payments=[Payment(name="租借费", amount=250)], total_amount=250, reason="优惠"))
    assert modified.total_amount == 250
    assert k.call("pay_service_order", second).out_order_no == second
    paid = until(lambda: (o := k.client.query_service_order(second)).state == "DONE" and o,
                 "the collection")
    txn = paid.collection.details[0].transaction_id
    refund_no = number("R")
    refund = k.call("create_refund", CreateRefundRequest(
        transaction_id=txn, out_refund_no=refund_no, notify_url=k.notify_url,
        amount=RefundAmount(refund=100, total=250)))
    assert refund.status == "PROCESSING"
    assert k.call("query_refund", refund_no).amount.refund == 100

    # sync: the user cannot pay through WeChat and paid the merchant instead
    third = number("C")
    k.call("create_service_order", create_request(k, third, "o_magic_insufficient_balance"))
    h.confirm(third, "o_magic_insufficient_balance")
    k.call("complete_service_order", third, complete_request(120))
    synced = k.call("sync_service_order", third, payscore_time(dt.datetime.now(dt.UTC)))
    assert synced.state == "DONE"
    assert [d.paid_type for d in synced.collection.details] == ["MCH"]

    # pre-authorisation by code, then by openid; direct-complete for an authorised user
    code = "KITAUTH" + secrets.token_hex(6)
    assert k.call("create_permission", code, notify_url=k.notify_url).apply_permissions_token
    assert k.call("query_permission_by_code", code).authorization_state == "UNBINDUSER"
    user = "o_kit_user_" + secrets.token_hex(4)
    h.control("POST", f"/merchants/{h.mchid}/permissions/authorize",
              {"openid": user, "authorization_code": code})
    assert k.call("query_permission_by_code", code).authorization_state == "AVAILABLE"
    assert k.call("query_permission_by_openid", user).authorization_state == "AVAILABLE"
    assert k.call("query_user_service_state", user).use_service_state == "AVAILABLE"
    buyer = "o_kit_user_" + secrets.token_hex(4)  # authorised directly, by openid
    h.control("POST", f"/merchants/{h.mchid}/permissions/authorize", {"openid": buyer})
    now = dt.datetime.now(dt.UTC)
    direct = k.call("direct_complete_service_order", DirectCompleteRequest(
        out_order_no=number("D"), openid=buyer, service_introduction="充电宝租借",
        post_payments=[Payment(name="租借费", amount=100)], total_amount=100,
        notify_url=k.notify_url,
        time_range=TimeRange(start_time=payscore_time(now - dt.timedelta(hours=2)),
                             end_time=payscore_time(now - dt.timedelta(hours=1)))))
    assert direct.total_amount == 100
    assert k.call("terminate_permission_by_code", code, "测试结束") is None
    assert k.client.query_permission_by_code(code).authorization_state != "AVAILABLE"
    other = "o_kit_user_" + secrets.token_hex(4)
    h.control("POST", f"/merchants/{h.mchid}/permissions/authorize", {"openid": other})
    assert k.call("terminate_permission_by_openid", other, "测试结束") is None
    assert k.client.query_user_service_state(other).use_service_state == "UNAVAILABLE"

    assert k.called >= set(OPERATIONS)  # every operation of the client ran at least once
    assert k.reply_serials and set(k.reply_serials) == {k.expected_serial}

    # Callbacks: confirm, paid (x2), refund, permission opened; each verified and applied once.
    h.advance("2m")  # the refund settles a minute after it was accepted
    h.drain()
    kinds = until(lambda: (got := {e.event_type for e in k.events}) >= {
        "PAYSCORE.USER_CONFIRM", "PAYSCORE.USER_PAID", "REFUND.SUCCESS",
        "PAYSCORE.USER_OPEN_SERVICE"} and got, "the callbacks")
    assert "PAYSCORE.USER_PAID" in kinds
    assert len({e.id for e in k.events}) == len(k.events)
    assert set(k.callback_serials) == {k.expected_serial}
