"""CallbackHandler: verification, decryption, typing, ownership, durable dedupe, adapters."""

from __future__ import annotations

import datetime as dt
import json
import threading

import flask
import pytest
import sqlalchemy as sa
from werkzeug.test import Client

from merchant_kit import (
    CallbackHandler,
    MerchantConfig,
    NotificationStore,
    PermissionEvent,
    RefundEvent,
    ServiceOrderEvent,
    flask_blueprint,
    protocol,
    wsgi_app,
)
from merchant_kit.keys import PlatformKeys
from merchant_kit.notify import Event

NOW = 1_700_000_000
APIV3 = b"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
MCHID, APPID = "1230000109", "wxd678efh567hg6787"


class Clock:
    def __init__(self):
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def pki():
    platform = protocol.generate_private_key()
    start = dt.datetime.fromtimestamp(NOW, tz=dt.UTC) - dt.timedelta(days=1)
    cert = protocol.make_certificate(platform, "platform", 0x7E57, start)
    return {"platform": platform, "cert": cert, "serial": protocol.certificate_serial(cert),
            "merchant": protocol.generate_private_key()}


PAID = {"appid": APPID, "mchid": MCHID, "out_order_no": "ORD-1", "service_id": "2002",
        "state": "DONE", "total_amount": 300, "need_collection": True,
        "collection": {"state": "USER_PAID", "total_amount": 300, "paying_amount": 0,
                       "paid_amount": 300, "details": [{"seq": 1, "amount": 300,
                                                         "paid_type": "NEWTON",
                                                         "transaction_id": "4200000"}]}}


class Env:
    def __init__(self, pki, tmp_path, on_event=None, create_table=True):
        self.pki, self.clock = pki, Clock()
        self.config = MerchantConfig(
            base_url="https://api.test", mchid=MCHID, appid=APPID, service_id="2002",
            merchant_serial_no="AB", private_key=pki["merchant"], apiv3_key=APIV3)
        self.downloads = 0

        def downloader():
            self.downloads += 1

        self.keys = PlatformKeys(apiv3_key=APIV3, certificates=[pki["cert"]],
                                 downloader=downloader, time_fn=self.clock)
        self.engine = sa.create_engine(f"sqlite:///{tmp_path / 'merchant.db'}",
                                       connect_args={"timeout": 30})
        self.store = NotificationStore(self.engine, time_fn=self.clock)
        self.ledger = sa.Table("ledger", self.store.table.metadata,
                               sa.Column("out_order_no", sa.String(32)),
                               sa.Column("amount", sa.Integer))
        if create_table:
            self.store.table.metadata.create_all(self.engine)
        self.events: list[Event] = []

        def record(event, conn):
            self.events.append(event)
            conn.execute(self.ledger.insert().values(out_order_no=event.id, amount=1))

        self.handler = CallbackHandler(self.config, self.keys, self.store, time_fn=self.clock,
                                       on_event=on_event or record)

    def callback(self, payload=None, event_type="PAYSCORE.USER_PAID", nid="EV-1", key=None,
                 serial=None, ts=None, apiv3=APIV3, tamper=None):
        plain = json.dumps(payload if payload is not None else PAID, ensure_ascii=False)
        resource = protocol.encrypt_resource(apiv3, plain.encode(), "payscore",
                                             protocol.make_aead_nonce(), "payscore")
        if tamper == "ciphertext":
            raw = bytearray(resource["ciphertext"].encode())
            raw[5] = ord("A") if raw[5] != ord("A") else ord("B")
            resource["ciphertext"] = raw.decode()
        body = json.dumps({"id": nid, "create_time": "2023-11-15T06:13:20+08:00",
                           "resource_type": "encrypt-resource", "event_type": event_type,
                           "summary": "支付成功", "resource": resource},
                          ensure_ascii=False).encode()
        headers = protocol.sign_response(key or self.pki["platform"],
                                         serial or self.pki["serial"], body,
                                         int(ts or self.clock()), protocol.make_hex_nonce())
        return {**headers, "Request-ID": "CB-1", "Content-Type": "application/json"}, body

    def ledger_rows(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self.ledger)).scalar()


def fail_message(answer) -> str:
    data = json.loads(answer[1])
    assert data["code"] == "FAIL"
    return data["message"]


def test_valid_callback_is_applied_with_the_merchants_write(pki, tmp_path):
    env = Env(pki, tmp_path)
    assert env.handler.handle(*env.callback()) == (204, b"")
    (event,) = env.events
    assert isinstance(event, ServiceOrderEvent) and event.id == "EV-1"
    assert event.order.collection.state == "USER_PAID" and event.order.total_amount == 300
    assert event.request_id == "CB-1" and event.summary == "支付成功"
    assert env.store.seen("EV-1") and env.ledger_rows() == 1


@pytest.mark.parametrize("case,reason", [
    ("forged", "bad-signature"), ("stale", "stale"), ("probe", "probe"),
    ("unsigned", "unsigned"), ("body-edited", "bad-signature")])
def test_untrusted_callbacks_get_401(pki, tmp_path, case, reason):
    env = Env(pki, tmp_path)
    if case == "forged":
        headers, body = env.callback(key=protocol.generate_private_key())
    elif case == "stale":
        headers, body = env.callback(ts=NOW - 301)
    else:
        headers, body = env.callback()
    if case == "probe":
        headers["Wechatpay-Signature"] = protocol.make_probe_signature()
    if case == "unsigned":
        headers = {"Content-Type": "application/json"}
    if case == "body-edited":
        body = body.replace(b"EV-1", b"EV-2")
    answer = env.handler.handle(headers, body)
    assert answer[0] == 401 and reason in fail_message(answer)
    assert env.events == [] and not env.store.seen("EV-1")


def test_unknown_serial_refreshes_once_then_rejects(pki, tmp_path):
    env = Env(pki, tmp_path)
    stranger = protocol.generate_private_key()
    for _ in range(3):
        answer = env.handler.handle(*env.callback(key=stranger, serial="FFFF0001"))
        assert answer[0] == 401 and "unknown-serial" in fail_message(answer)
    assert env.downloads == 1


@pytest.mark.parametrize("case", ["ciphertext", "wrong-key"])
def test_undecryptable_resource_is_rejected(pki, tmp_path, case):
    env = Env(pki, tmp_path)
    if case == "ciphertext":
        headers, body = env.callback(tamper="ciphertext")
    else:
        headers, body = env.callback(apiv3=b"Z" * 32)
    answer = env.handler.handle(headers, body)
    assert answer[0] == 400 and "decryption" in fail_message(answer)
    assert env.events == []


@pytest.mark.parametrize("field,value", [("mchid", "1999999999"), ("appid", "wx_other")])
def test_callback_for_someone_else_is_rejected(pki, tmp_path, field, value):
    env = Env(pki, tmp_path)
    answer = env.handler.handle(*env.callback({**PAID, field: value}))
    assert answer[0] == 400 and field in fail_message(answer)
    assert env.events == [] and not env.store.seen("EV-1")


def test_signed_garbage_is_a_400_not_a_crash(pki, tmp_path):
    env = Env(pki, tmp_path)
    for body in (b"not json", b"[]", b'{"id":"x"}'):
        headers = protocol.sign_response(pki["platform"], pki["serial"], body, NOW, "n")
        assert env.handler.handle(headers, body)[0] == 400


def test_duplicate_is_acknowledged_but_applied_once(pki, tmp_path):
    env = Env(pki, tmp_path)
    first, again = env.callback(), env.callback()  # WeChat re-signs each delivery
    assert env.handler.handle(*first)[0] == 204
    assert env.handler.handle(*again) == (204, b"")
    assert len(env.events) == 1 and env.ledger_rows() == 1


def test_concurrent_duplicates_apply_exactly_once(pki, tmp_path):
    entered, cond = [], threading.Condition()

    def on_event(event, conn):
        # Hold the first transaction open until every duplicate is inside store.process, so
        # they really race on the primary key instead of arriving one after another.
        with cond:
            assert cond.wait_for(lambda: len(entered) == 5, timeout=10)
        conn.execute(env.ledger.insert().values(out_order_no=event.id, amount=1))
        env.events.append(event)

    env = Env(pki, tmp_path, on_event=on_event)
    real_process = env.store.process

    def counting_process(*args, **kwargs):
        with cond:
            entered.append(1)
            cond.notify_all()
        return real_process(*args, **kwargs)

    env.store.process = counting_process
    deliveries = [env.callback() for _ in range(5)]
    barrier, answers = threading.Barrier(5), []

    def deliver(headers, body):
        barrier.wait()
        answers.append(env.handler.handle(headers, body)[0])

    threads = [threading.Thread(target=deliver, args=d) for d in deliveries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [204] * 5
    assert len(env.events) == 1 and env.ledger_rows() == 1


def test_handler_failure_rolls_back_and_asks_for_a_retry(pki, tmp_path):
    calls = []

    def flaky(event, conn):
        calls.append(event.id)
        conn.execute(sa.text("INSERT INTO ledger (out_order_no, amount) VALUES ('x', 1)"))
        if len(calls) == 1:
            raise RuntimeError("merchant bug")

    env = Env(pki, tmp_path, on_event=flaky)
    answer = env.handler.handle(*env.callback())
    assert answer[0] == 500 and fail_message(answer) == "handler error"
    assert not env.store.seen("EV-1") and env.ledger_rows() == 0  # nothing half-applied
    assert env.handler.handle(*env.callback())[0] == 204
    assert calls == ["EV-1", "EV-1"] and env.ledger_rows() == 1


def test_storage_failure_is_a_500(pki, tmp_path):
    env = Env(pki, tmp_path, create_table=False)
    answer = env.handler.handle(*env.callback())
    assert answer[0] == 500 and env.events == []


def test_permission_refund_and_unknown_events_are_typed(pki, tmp_path):
    env = Env(pki, tmp_path)
    opened = {"appid": APPID, "mchid": MCHID, "service_id": "2002", "openid": "oUp",
              "user_service_status": "USER_OPEN_SERVICE", "openorclose_time": "20231115061320"}
    refund = {"mchid": MCHID, "transaction_id": "4200000", "out_refund_no": "R1",
              "refund_id": "5000", "refund_status": "SUCCESS",
              "amount": {"total": 300, "refund": 100, "payer_total": 300, "payer_refund": 100}}
    assert env.handler.handle(*env.callback(opened, "PAYSCORE.USER_OPEN_SERVICE", "EV-2"))[0] \
        == 204
    assert env.handler.handle(*env.callback(refund, "REFUND.SUCCESS", "EV-3"))[0] == 204
    accepted = {"mchid": MCHID, "appid": APPID}  # a Pay Score variant this kit does not type
    assert env.handler.handle(*env.callback(accepted, "PAYSCORE.USER_ACCEPTED", "EV-4"))[0] \
        == 204
    perm, ref, other = env.events
    assert isinstance(perm, PermissionEvent) and perm.permission.openid == "oUp"
    assert isinstance(ref, RefundEvent) and ref.refund.amount.refund == 100
    assert type(other) is Event and other.payload == accepted


def test_flask_blueprint_passes_raw_bytes(pki, tmp_path):
    env = Env(pki, tmp_path)
    app = flask.Flask(__name__)
    app.register_blueprint(flask_blueprint(env.handler, url_prefix="/payscore"))
    client = app.test_client()
    headers, body = env.callback()
    resp = client.post("/payscore/notify", data=body, headers=headers)
    assert resp.status_code == 204 and resp.data == b""
    resp = client.post("/payscore/notify", data=body + b" ", headers=headers)
    assert resp.status_code == 401 and resp.get_json()["code"] == "FAIL"
    assert len(env.events) == 1


def test_plain_wsgi_app(pki, tmp_path):
    env = Env(pki, tmp_path)
    client = Client(wsgi_app(env.handler))
    headers, body = env.callback()
    resp = client.post("/anything", data=body, headers=headers)
    assert resp.status_code == 204
    resp = client.post("/anything", data=body, headers={**headers, "Wechatpay-Timestamp": "1"})
    assert resp.status_code == 401 and resp.json["code"] == "FAIL"
    assert client.get("/anything").status_code == 405
    assert len(env.events) == 1
