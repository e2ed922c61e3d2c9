"""Callbacks as WeChat sends them (reference §6): envelope, AEAD, signature, answers, retries.

Deliveries go over real loopback HTTP to `Receiver`; business time is the frozen sandbox clock,
moved with `shift` and followed by a synchronous `drain` (no sleeping for business time).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Self

import pytest
from flask import Flask
from sqlalchemy import select, update

from merchant_kit import protocol
from sandbox import db
from sandbox.callbacks import envelope, outbox
from sandbox.callbacks.dispatcher import Dispatcher, dispatcher_of
from sandbox.clock import to_datetime
from sandbox.service import Sandbox
from sandbox.testing import SignedClient, add_merchant, make_sandbox

if TYPE_CHECKING:  # imported for annotations only: pytest would try to collect Test*
    from sandbox.testing import TestMerchant

S = 1_000_000
T0 = 1_750_000_000 * S
GENERIC = outbox.parse_schedule("generic")


class Receiver:
    """A merchant notify endpoint on 127.0.0.1: records every request, answers a script.

    `script` is a list of statuses used in order, then `default`; `delays` likewise (seconds).
    """

    def __init__(self, script=(), default: int = 200, delays=(), default_delay: float = 0.0):
        self.script, self.default = list(script), default
        self.delays, self.default_delay = list(delays), default_delay
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = {}
        self.max_in_flight_per_id = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # one small answer must not wait for a delayed ACK

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: nothing was delivered
                    self.close_connection = True
                    return
                status, delay, key = receiver._take(body)
                try:
                    if delay:
                        time.sleep(delay)  # a slow merchant, on wall time (network)
                    with receiver.lock:
                        receiver.requests.append({"headers": dict(self.headers), "body": body,
                                                  "status": status, "path": self.path})
                    answer = b"" if status == 204 else json.dumps(
                        {"code": "SUCCESS" if status < 300 else "FAIL", "message": "ok"}).encode()
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                finally:
                    receiver._done(key)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request, client_address):
                pass  # a sender that vanishes (kill -9, timeouts) is part of the tests

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _take(self, body: bytes):
        try:
            key = json.loads(body).get("id", "")
        except ValueError:
            key = ""
        with self.lock:
            status = self.script.pop(0) if self.script else self.default
            delay = self.delays.pop(0) if self.delays else self.default_delay
            self.in_flight[key] = self.in_flight.get(key, 0) + 1
            self.max_in_flight_per_id = max(self.max_in_flight_per_id, self.in_flight[key])
        return status, delay, key

    def _done(self, key: str) -> None:
        with self.lock:
            self.in_flight[key] -= 1

    def ids(self, ok_only: bool = False) -> list[str]:
        with self.lock:
            return [json.loads(r["body"])["id"] for r in self.requests
                    if not ok_only or 200 <= r["status"] < 300]

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def enqueue(sb, mchid: str, url: str, event_type: str = "PAYSCORE.USER_PAID",
            resource: dict | None = None) -> str:
    with db.write_tx(sb.engine) as conn:
        return outbox.enqueue(conn, mchid=mchid, event_type=event_type, url=url,
                              resource=resource or {"out_order_no": "O1", "state": "DONE",
                                                    "service_introduction": "充电宝"},
                              now_us=sb.clock.now_us(conn))


def row_of(sb, notification_id: str):
    with sb.engine.connect() as conn:
        return conn.execute(select(db.notifications)
                            .where(db.notifications.c.id == notification_id)).one()


def attempts_of(sb, notification_id: str) -> list:
    a = db.delivery_attempts
    with sb.engine.connect() as conn:
        return list(conn.execute(select(a).where(a.c.notification_id == notification_id)
                                 .order_by(a.c.id)))


def set_merchant(sb, mchid: str, **values) -> None:
    with db.write_tx(sb.engine) as conn:
        conn.execute(update(db.merchants).where(db.merchants.c.mchid == mchid).values(**values))


@dataclass
class Env:
    app: Flask
    sb: Sandbox
    m: TestMerchant
    d: Dispatcher


@pytest.fixture
def cb(tmp_path):
    """A sandbox on a frozen clock, one merchant, and its (not started) dispatcher."""
    app = make_sandbox(tmp_path, CALLBACK_TIMEOUT_S=1.0)
    sb = app.extensions["payscore"]
    sb.clock.freeze(T0)
    yield Env(app, sb, add_merchant(app), dispatcher_of(sb))
    sb.extras["stop_services"]()
    sb.engine.dispose()


def test_envelope_headers_and_aead_exactly_per_reference(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    with Receiver() as rx:
        nid = enqueue(sb, m.mchid, rx.url)
        assert d.drain()["delivered"] == 1
    (req,) = rx.requests
    h, body = req["headers"], req["body"]
    assert set(h) >= {"Request-ID", "Wechatpay-Nonce", "Wechatpay-Serial", "Wechatpay-Signature",
                      "Wechatpay-Signature-Type", "Wechatpay-Timestamp", "Content-Type"}
    assert re.fullmatch(r"[0-9A-F]{44}-0", h["Request-ID"])
    assert re.fullmatch(r"[0-9a-f]{32}", h["Wechatpay-Nonce"])
    assert h["Content-Type"] == "application/json"
    assert h["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert h["Wechatpay-Timestamp"] == str(T0 // S)
    assert h["Wechatpay-Serial"] == sb.signer.certificate.serial
    # the signature covers the exact body bytes, with the platform certificate's key
    keys = {sb.signer.certificate.serial.upper(): sb.signer.certificate.public_key}
    assert protocol.check_signed_message(h, body, keys, T0 // S) == sb.signer.certificate.serial
    with pytest.raises(protocol.SignatureRejected):
        protocol.check_signed_message(h, body.replace(b"encrypt-resource", b"encrypt-resourcf"), keys, T0 // S)
    data = json.loads(body)
    assert list(data) == ["id", "create_time", "resource_type", "event_type", "summary",
                          "resource"]
    assert data["id"] == nid and len(nid) == 36
    assert data["create_time"] == protocol.rfc3339(to_datetime(T0))
    assert data["create_time"].endswith("+08:00")
    assert data["resource_type"] == "encrypt-resource"
    assert data["event_type"] == "PAYSCORE.USER_PAID"
    assert data["summary"] == "支付成功" and "支付成功".encode() in body  # raw UTF-8, not \u
    res = data["resource"]
    assert list(res) == ["original_type", "algorithm", "ciphertext", "associated_data", "nonce"]
    assert res["original_type"] == "payscore" and res["associated_data"] == "payscore"
    assert res["algorithm"] == "AEAD_AES_256_GCM"
    assert re.fullmatch(r"[0-9A-Za-z]{12}", res["nonce"])
    plain = protocol.decrypt_resource(m.apiv3_key.encode(), res)
    assert json.loads(plain) == {"out_order_no": "O1", "state": "DONE",
                                 "service_introduction": "充电宝"}
    with pytest.raises(protocol.DecryptionError):  # the AAD is bound into the tag
        protocol.decrypt_resource(m.apiv3_key.encode(), {**res, "associated_data": ""})
    row = row_of(sb, nid)
    assert (row.status, row.attempts, row.delivered_us, row.lease_owner) == \
        ("DELIVERED", 1, T0, None)
    (attempt,) = attempts_of(sb, nid)
    assert (attempt.at_us, attempt.status_code, attempt.error) == (T0, 200, None)
    assert attempt.signature_serial == sb.signer.certificate.serial
    assert json.loads(attempt.answer)["code"] == "SUCCESS" and attempt.latency_ms > 0


def test_refund_notice_uses_refund_type_and_aad(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    with Receiver() as rx:
        enqueue(sb, m.mchid, rx.url, "REFUND.SUCCESS", {"refund_status": "SUCCESS"})
        d.drain()
    data = json.loads(rx.requests[0]["body"])
    assert data["summary"] == "退款成功"
    assert data["resource"]["original_type"] == "refund"
    assert data["resource"]["associated_data"] == "refund"
    assert json.loads(protocol.decrypt_resource(m.apiv3_key.encode(), data["resource"])) == \
        {"refund_status": "SUCCESS"}


def test_retries_follow_the_schedule_and_stop_at_the_first_2xx(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    with Receiver(script=[500, 404, 204], default=200) as rx:
        nid = enqueue(sb, m.mchid, rx.url)
        d.drain()
        assert row_of(sb, nid).next_attempt_us == T0 + 15 * S
        sb.clock.shift(14 * S)
        assert d.drain()["attempts"] == 0  # not due yet: no real waiting, no early retry
        sb.clock.shift(1 * S)
        assert d.drain() == {"attempts": 1, "delivered": 0, "pending": 1, "failed": 0,
                             "held": 0, "still_due": 0}
        assert row_of(sb, nid).next_attempt_us == T0 + 30 * S
        sb.clock.shift(15 * S)
        assert d.drain()["delivered"] == 1
        sb.clock.shift(86400 * S)
        assert d.drain()["attempts"] == 0
    assert [r["status"] for r in rx.requests] == [500, 404, 204]
    assert {json.loads(r["body"])["id"] for r in rx.requests} == {nid}
    assert len({r["headers"]["Wechatpay-Nonce"] for r in rx.requests}) == 3  # fresh envelopes
    assert [r["headers"]["Wechatpay-Timestamp"] for r in rx.requests] == \
        [str(T0 // S), str(T0 // S + 15), str(T0 // S + 30)]
    rows = attempts_of(sb, nid)
    assert [(a.at_us, a.status_code) for a in rows] == \
        [(T0, 500), (T0 + 15 * S, 404), (T0 + 30 * S, 204)]
    assert row_of(sb, nid).status == "DELIVERED" and row_of(sb, nid).attempts == 3


def test_fifteen_retries_then_failed(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    with Receiver(default=500) as rx:
        nid = enqueue(sb, m.mchid, rx.url)
        d.drain()
        for gap in GENERIC:
            assert row_of(sb, nid).status == "PENDING"
            sb.clock.shift(gap)
            assert d.drain()["attempts"] == 1
        sb.clock.shift(7 * 86400 * S)
        assert d.drain()["attempts"] == 0
    assert len(rx.requests) == 16
    row = row_of(sb, nid)
    assert (row.status, row.attempts, row.next_attempt_us) == ("FAILED", 16, None)
    expected, at = [T0], T0
    for gap in GENERIC:
        at += gap
        expected.append(at)
    assert [a.at_us for a in attempts_of(sb, nid)] == expected
    assert expected[-1] - T0 == (24 * 3600 + 4 * 60) * S  # 24 h 4 m in all (§6.5)


def test_payscore_schedule_is_configurable_and_counted_from_the_first_attempt(tmp_path):
    app = make_sandbox(tmp_path, CALLBACK_RETRY_SCHEDULE="payscore")
    sb = app.extensions["payscore"]
    sb.clock.freeze(T0)
    m = add_merchant(app)
    d = dispatcher_of(sb)
    try:
        with Receiver(default=503) as rx:
            nid = enqueue(sb, m.mchid, rx.url)
            d.drain()
            sb.clock.shift(4 * 3600 * S)  # one jump past every retry (3 h 4 m): all overdue
            counts = d.drain()
        assert counts["failed"] == 1 and counts["attempts"] == 9
        assert len(rx.requests) == 10 and row_of(sb, nid).status == "FAILED"
    finally:
        sb.extras["stop_services"]()


def test_parse_schedule_variants():
    assert outbox.parse_schedule(None) == GENERIC and len(GENERIC) == 15
    assert [g // S for g in outbox.parse_schedule("payscore")] == \
        [15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600]
    assert outbox.parse_schedule("15s, 3m,1h") == (15 * S, 180 * S, 3600 * S)
    assert outbox.parse_schedule([1, "2m", 0.5]) == (S, 120 * S, S // 2)
    with pytest.raises(ValueError):
        outbox.parse_schedule([0])
    with pytest.raises(ValueError):
        outbox.parse_schedule("soon")


def test_timeout_and_connection_refused_are_failed_attempts(cb):
    sb, m, d = cb.sb, cb.m, cb.d  # CALLBACK_TIMEOUT_S=1.0 for this fixture
    with Receiver(delays=[1.3], default=200) as rx:
        slow = enqueue(sb, m.mchid, rx.url)
        refused = enqueue(sb, m.mchid, f"http://127.0.0.1:{free_port()}/notify")
        d.drain()
        first_slow, first_refused = attempts_of(sb, slow)[0], attempts_of(sb, refused)[0]
        assert first_slow.status_code is None and "timeout" in first_slow.error
        assert first_slow.latency_ms >= 1000
        assert first_refused.status_code is None and "ConnectionError" in first_refused.error
        for nid in (slow, refused):
            assert (row_of(sb, nid).status, row_of(sb, nid).next_attempt_us) == \
                ("PENDING", T0 + 15 * S)
        sb.clock.shift(15 * S)
        d.drain()
    assert row_of(sb, slow).status == "DELIVERED"
    assert row_of(sb, refused).status == "PENDING" and row_of(sb, refused).attempts == 2


def test_public_key_mode_signs_with_the_wechatpay_public_key(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    set_merchant(sb, m.mchid, signing_mode="public_key")
    with Receiver() as rx:
        enqueue(sb, m.mchid, rx.url)
        d.drain()
    h, body = rx.requests[0]["headers"], rx.requests[0]["body"]
    pub = sb.signer.public_key
    assert h["Wechatpay-Serial"] == pub.serial and pub.serial.startswith("PUB_KEY_ID_")
    assert protocol.check_signed_message(h, body, {pub.serial.upper(): pub.public_key},
                                         T0 // S) == pub.serial
    cert_only = {sb.signer.certificate.serial.upper(): sb.signer.certificate.public_key}
    with pytest.raises(protocol.SignatureRejected):
        protocol.check_signed_message(h, body, cert_only, T0 // S)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_migrating_mode_signs_a_deterministic_share_with_the_public_key(cb, ratio):
    sb, m, d = cb.sb, cb.m, cb.d
    set_merchant(sb, m.mchid, signing_mode="migrating", migration_ratio=ratio)
    both = {k.serial.upper(): k.public_key for k in (sb.signer.certificate, sb.signer.public_key)}
    with Receiver() as rx:
        ids = [enqueue(sb, m.mchid, rx.url) for _ in range(120)]
        d.drain()
        for nid in ids[:10]:
            d.redeliver(nid)
    serial_by_id: dict[str, set] = {}
    for r in rx.requests:
        protocol.check_signed_message(r["headers"], r["body"], both, T0 // S)
        nid = json.loads(r["body"])["id"]
        serial_by_id.setdefault(nid, set()).add(r["headers"]["Wechatpay-Serial"])
    assert all(len(s) == 1 for s in serial_by_id.values())  # a re-delivery keeps its key
    public = {nid for nid, s in serial_by_id.items() if sb.signer.public_key.serial in s}
    assert public == {nid for nid in ids if envelope.public_key_share(nid) < ratio}
    if ratio == 0.3:
        assert 0.15 < len(public) / len(ids) < 0.45


def test_build_hooks_see_both_stages_and_may_force_a_serial(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    seen = []

    def hook(delivery, stage):
        seen.append((stage, bool(delivery.body), delivery.attempt))
        if stage == "plaintext":
            delivery.sign_serial = sb.signer.public_key.serial
            delivery.plaintext["attach"] = "bent"

    sb.hooks.build.append(hook)
    with Receiver() as rx:
        nid = enqueue(sb, m.mchid, rx.url)
        d.drain()
        sb.hooks.build.remove(hook)
        sb.hooks.build.append(lambda dl, stage: stage == "plaintext" and setattr(
            dl, "sign_serial", "0123456789ABCDEF"))
        d.redeliver(nid)
    assert seen == [("plaintext", False, 1), ("signed", True, 1)]
    forced, unknown = (r["headers"] for r in rx.requests)
    assert forced["Wechatpay-Serial"] == sb.signer.public_key.serial
    plain = json.loads(protocol.decrypt_resource(
        m.apiv3_key.encode(), json.loads(rx.requests[0]["body"])["resource"]))
    assert plain["attach"] == "bent"
    assert unknown["Wechatpay-Serial"] == "0123456789ABCDEF"  # a serial the merchant can't map
    with pytest.raises(protocol.SignatureRejected, match="unknown-serial"):
        protocol.check_signed_message(
            unknown, rx.requests[1]["body"],
            {k.serial.upper(): k.public_key for k in sb.signer.keys}, T0 // S)


def test_send_hooks_drop_duplicate_and_hold(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    plan = {}

    def send_hook(delivery):
        effect = plan.get(delivery.notification_id)
        if effect == "drop":
            delivery.copies, delivery.fault = 0, "drop_callback"
        elif effect in ("dup", "dup_concurrent"):
            delivery.copies, delivery.concurrent = 3, effect == "dup_concurrent"
            delivery.fault, delivery.scenario_id = "duplicate_callback", "S1"
        elif effect == "hold":
            delivery.hold_us, delivery.fault = 600 * S, "delay_callback"
        plan.pop(delivery.notification_id, None)  # each fault bends one attempt

    sb.hooks.send.append(send_hook)
    with Receiver() as rx:
        ids = {effect: enqueue(sb, m.mchid, rx.url)
               for effect in ("drop", "dup", "dup_concurrent", "hold")}
        plan.update({nid: effect for effect, nid in ids.items()})
        counts = d.drain()
        assert counts["held"] == 1 and counts["delivered"] == 2 and counts["pending"] == 1
        by_id = {}
        for nid in rx.ids():
            by_id[nid] = by_id.get(nid, 0) + 1
        assert by_id == {ids["dup"]: 3, ids["dup_concurrent"]: 3}
        dropped = attempts_of(sb, ids["drop"])
        assert [(a.status_code, a.error, a.fault) for a in dropped] == \
            [(None, "dropped", "drop_callback")]
        assert row_of(sb, ids["drop"]).next_attempt_us == T0 + 15 * S
        assert [a.fault for a in attempts_of(sb, ids["dup"])] == ["duplicate_callback"] * 3
        held = row_of(sb, ids["hold"])
        assert (held.status, held.attempts, held.next_attempt_us) == \
            ("PENDING", 0, T0 + 600 * S)
        assert attempts_of(sb, ids["hold"])[0].error.startswith("held")
        sb.clock.shift(600 * S)
        d.drain()
    assert row_of(sb, ids["hold"]).status == "DELIVERED"
    assert row_of(sb, ids["drop"]).status == "DELIVERED"
    copies = [r for r in rx.requests if json.loads(r["body"])["id"] == ids["dup"]]
    assert len({r["body"] for r in copies}) == 1  # true duplicates: the same bytes


def test_an_order_callback_end_to_end(cb):
    app, m, d = cb.app, cb.m, cb.d
    client = SignedClient(app, m)
    with Receiver() as rx:
        r = client.post("/v3/payscore/serviceorder",
                        client.create_body("CB1", notify_url=rx.url))
        assert r.status_code == 200, r.json
        r = app.test_client().post(f"/sandbox/merchants/{m.mchid}/orders/CB1/confirm",
                                   json={"openid": "o_user_cb1"})
        assert r.status_code == 200, r.json
        d.drain()
    (req,) = rx.requests
    data = json.loads(req["body"])
    assert data["event_type"] == "PAYSCORE.USER_CONFIRM" and data["summary"] == "确认订单"
    plain = json.loads(protocol.decrypt_resource(m.apiv3_key.encode(), data["resource"]))
    assert (plain["out_order_no"], plain["state"], plain["state_description"]) == \
        ("CB1", "DOING", "USER_CONFIRM")
    listed = app.test_client().get(f"/sandbox/notifications?order=CB1&mchid={m.mchid}").json
    assert listed["total"] == 1 and listed["data"][0]["id"] == data["id"]


def test_control_api_lists_shows_redelivers_drains_and_probes(cb):
    app, sb, m = cb.app, cb.sb, cb.m
    http = app.test_client()
    with Receiver(script=[500]) as rx:
        first = enqueue(sb, m.mchid, rx.url)
        second = enqueue(sb, m.mchid, rx.url, resource={"out_order_no": "O2"})
        drained = http.post("/sandbox/notifications/drain").json
        assert drained["attempts"] == 2 and drained["delivered"] == 1 and drained["pending"] == 1
        pending = http.get("/sandbox/notifications?status=PENDING").json
        assert pending["total"] == 1
        (item,) = pending["data"]
        assert item["attempts"] == 1 and item["next_attempt_us"] == T0 + 15 * S
        assert item["next_attempt_time"] == protocol.rfc3339(to_datetime(T0 + 15 * S))
        assert http.get(f"/sandbox/notifications?mchid={m.mchid}&limit=1").json["total"] == 2
        assert len(http.get("/sandbox/notifications?limit=1&offset=1").json["data"]) == 1
        delivered = next(x for x in (first, second) if x != item["id"])
        again = http.post(f"/sandbox/notifications/{delivered}/redeliver").json
        assert again["status"] == "DELIVERED" and again["attempts"][0]["status_code"] == 200
        now_due = http.post(f"/sandbox/notifications/{item['id']}/redeliver").json
        assert now_due["status"] == "DELIVERED"  # made due now, not at T0+15s
        detail = http.get(f"/sandbox/notifications/{delivered}").json
        assert detail["attempt_rows"] == 2 and len(detail["attempt_log"]) == 2
        assert detail["resource"]["out_order_no"] in ("O1", "O2")
        probe = http.post("/sandbox/notifications/test",
                          json={"url": rx.url, "mchid": m.mchid,
                                "event_type": "PAYSCORE.USER_OPEN_SERVICE"}).json
        assert probe["status"] == "DELIVERED" and probe["attempts"][0]["status_code"] == 200
    sent = json.loads(rx.requests[-1]["body"])
    assert sent["event_type"] == "PAYSCORE.USER_OPEN_SERVICE" and sent["id"] == probe["id"]
    plain = json.loads(protocol.decrypt_resource(m.apiv3_key.encode(), sent["resource"]))
    assert plain["user_service_status"] == "USER_OPEN_SERVICE" and plain["mchid"] == m.mchid
    keys = {k.serial.upper(): k.public_key for k in sb.signer.keys}
    protocol.check_signed_message(rx.requests[-1]["headers"], rx.requests[-1]["body"], keys,
                                  T0 // S)
    refused = http.post("/sandbox/notifications/test",
                        json={"url": f"http://127.0.0.1:{free_port()}/x", "mchid": m.mchid}).json
    assert refused["status"] == "FAILED" and refused["attempts"][0]["error"]  # no retries
    assert http.get(f"/sandbox/notifications/{refused['id']}").json["next_attempt_us"] is None


@pytest.mark.parametrize("method, path, body, status, code", [
    ("get", "/sandbox/notifications/nope", None, 404, "RESOURCE_NOT_EXISTS"),
    ("post", "/sandbox/notifications/nope/redeliver", None, 404, "RESOURCE_NOT_EXISTS"),
    ("get", "/sandbox/notifications?status=LOST", None, 400, "PARAM_ERROR"),
    ("get", "/sandbox/notifications?limit=abc", None, 400, "PARAM_ERROR"),
    ("get", "/sandbox/notifications?limit=0", None, 400, "PARAM_ERROR"),
    ("get", "/sandbox/notifications?colour=red", None, 400, "PARAM_ERROR"),
    ("post", "/sandbox/notifications/test", None, 400, "PARAM_ERROR"),
    ("post", "/sandbox/notifications/test", [1], 400, "PARAM_ERROR"),
    ("post", "/sandbox/notifications/test", {"url": "ftp://x/y", "mchid": "1"}, 400,
     "PARAM_ERROR"),
    ("post", "/sandbox/notifications/test",
     {"url": "http://127.0.0.1:9/x", "mchid": "1", "event_type": "PAYSCORE.NOPE"}, 400,
     "PARAM_ERROR"),
    ("post", "/sandbox/notifications/test", {"url": "http://127.0.0.1:9/x", "mchid": "nobody"},
     400, "MCH_NOT_EXISTS"),
])
def test_control_api_rejects_bad_input_with_wechat_errors(cb, method, path, body, status, code):
    app = cb.app
    r = getattr(app.test_client(), method)(path, json=body)
    assert r.status_code == status, r.json
    assert r.json["code"] == code and r.json["message"]
