"""Callback faults through the real dispatcher (sandbox.callbacks.dispatcher): each effect
bends exactly the deliveries of its scope, and every bent attempt is recorded.

Deliveries go over loopback HTTP to a recording receiver; business time is the frozen sandbox
clock, moved with `shift` and followed by a synchronous `drain`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from merchant_kit import protocol
from sandbox import db, testing
from sandbox.callbacks import outbox
from sandbox.callbacks.dispatcher import Dispatcher, dispatcher_of
from sandbox.testing import SignedClient, add_merchant, make_sandbox

S = 1_000_000
T0 = 1_750_000_000 * S


class Receiver:
    """A merchant's notify URL on 127.0.0.1 that records every request and answers 200."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        lock = threading.Lock()
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    received.append({"headers": dict(self.headers), "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ids(self) -> list[str]:
        return [json.loads(r["body"])["id"] for r in self.requests]

    def by_id(self) -> dict[str, dict]:
        """The last request of each notification (a batch is delivered concurrently)."""
        return {json.loads(r["body"])["id"]: r for r in self.requests}

    def events(self) -> list[str]:
        return [json.loads(r["body"])["event_type"] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Env:
    app: Any
    sb: Any
    merchant: testing.TestMerchant
    dispatcher: Dispatcher
    rx: Receiver

    def arm(self, **spec: Any) -> dict:
        r = self.app.test_client().post("/sandbox/faults", json=spec)
        assert r.status_code == 201, r.json
        return r.json

    def enqueue(self, out_order_no: str = "O1", event_type: str = "PAYSCORE.USER_PAID",
                order_pk: int | None = None, mchid: str | None = None, **resource: Any) -> str:
        with db.write_tx(self.sb.engine) as conn:
            return outbox.enqueue(
                conn, mchid=mchid or self.merchant.mchid, event_type=event_type, url=self.rx.url,
                resource={"out_order_no": out_order_no, "mchid": mchid or self.merchant.mchid,
                          "state": "DONE", "service_introduction": "充电宝", **resource},
                now_us=self.sb.clock.now_us(conn), order_pk=order_pk)

    def attempts(self, notification_id: str) -> list:
        a = db.delivery_attempts
        with self.sb.engine.connect() as conn:
            return list(conn.execute(select(a).where(a.c.notification_id == notification_id)
                                     .order_by(a.c.id)))

    def notification(self, notification_id: str):
        n = db.notifications
        with self.sb.engine.connect() as conn:
            return conn.execute(select(n).where(n.c.id == notification_id)).one()

    def shift(self, seconds: float) -> None:
        self.sb.clock.shift(int(seconds * S))

    def signed(self, request: dict) -> bool:
        h = request["headers"]
        key = self.sb.signer.by_serial.get(h["Wechatpay-Serial"].upper())
        message = protocol.response_message(h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"],
                                            request["body"])
        return key is not None and protocol.verify(key.public_key, message,
                                                   h["Wechatpay-Signature"])

    def plaintext(self, request: dict, merchant: testing.TestMerchant | None = None) -> dict:
        resource = json.loads(request["body"])["resource"]
        key = (merchant or self.merchant).apiv3_key.encode()
        return json.loads(protocol.decrypt_resource(key, resource))


@pytest.fixture
def env(tmp_path, db_url):
    app = make_sandbox(tmp_path, db_url=db_url, CALLBACK_TIMEOUT_S=2.0,
                       CALLBACK_RETRY_SCHEDULE="15s,15s,30s")
    sb = app.extensions["payscore"]
    sb.clock.freeze(T0)
    rx = Receiver()
    yield Env(app, sb, add_merchant(app), dispatcher_of(sb), rx)
    rx.close()
    sb.extras["stop_services"]()
    sb.engine.dispose()


def test_duplicates_sequential_and_concurrent_only_in_scope(env):
    env.arm(effect="callback_duplicate", out_order_no="DUP-1", remaining=1, scenario_id="S18")
    env.arm(effect="callback_concurrent_duplicates", out_order_no="DUP-2")
    first, five, plain = env.enqueue("DUP-1"), env.enqueue("DUP-2"), env.enqueue("DUP-3")
    env.dispatcher.drain()
    counts = {nid: env.rx.ids().count(nid) for nid in (first, five, plain)}
    assert counts == {first: 2, five: 5, plain: 1}
    copies = [r["body"] for r in env.rx.requests if json.loads(r["body"])["id"] == first]
    assert copies[0] == copies[1]  # the same bytes twice
    assert [a.fault for a in env.attempts(first)] == ["callback_duplicate"] * 2
    assert env.notification(first).scenario_id == "S18"
    again = env.enqueue("DUP-1")  # remaining=1 was used
    env.dispatcher.drain()
    assert env.rx.ids().count(again) == 1


def test_reorder_holds_confirm_until_paid_was_sent(env):
    env.arm(effect="callback_reorder", out_order_no="RE-1", scenario_id="S20")
    confirm = env.enqueue("RE-1", "PAYSCORE.USER_CONFIRM", order_pk=41, state="DOING")
    other = env.enqueue("RE-2", "PAYSCORE.USER_CONFIRM", order_pk=42, state="DOING")
    env.dispatcher.drain()
    assert env.rx.ids() == [other]
    assert env.notification(confirm).next_attempt_us == T0 + 86400 * S  # one long hold
    env.shift(60)
    env.dispatcher.drain()
    assert env.rx.ids() == [other]  # still held: USER_PAID was not sent yet
    paid = env.enqueue("RE-1", "PAYSCORE.USER_PAID", order_pk=41)
    env.dispatcher.drain()
    assert env.rx.ids() == [other, paid]
    assert env.notification(confirm).next_attempt_us == T0 + 65 * S  # due once paid answered
    env.shift(5)
    env.dispatcher.drain()
    assert env.rx.ids() == [other, paid, confirm]
    faults = [(a.fault, a.status_code) for a in env.attempts(confirm)]
    assert faults == [("callback_reorder", None), ("callback_reorder", 200)]


def test_reorder_is_bounded_by_max_hold(env):
    env.arm(effect="callback_reorder", mchid=env.merchant.mchid, params={"max_hold_s": 120})
    confirm = env.enqueue("RE-3", "PAYSCORE.USER_CONFIRM", order_pk=43, state="DOING")
    env.dispatcher.drain()
    env.shift(119)
    env.dispatcher.drain()
    assert env.rx.ids() == []
    env.shift(1)
    env.dispatcher.drain()
    assert env.rx.ids() == [confirm]


def test_disarming_a_holding_fault_releases_what_it_holds(env):
    http = env.app.test_client()
    delay = env.arm(effect="callback_delay", out_order_no="HO-1", params={"hold_s": 3 * 3600})
    outage = env.arm(effect="outage", out_order_no="HO-2")  # no window: held until disarmed
    held = env.enqueue("HO-1"), env.enqueue("HO-2")
    env.dispatcher.drain()
    assert env.rx.ids() == []
    for fault in (delay, outage):
        assert http.delete(f"/sandbox/faults/{fault['id']}").status_code == 200
    assert {env.notification(nid).next_attempt_us for nid in held} == {T0}
    env.dispatcher.drain()
    assert sorted(env.rx.ids()) == sorted(held)


def test_delay_holds_the_first_attempt_for_hours_once(env):
    env.arm(effect="callback_delay", mchid=env.merchant.mchid, params={"hold_s": 3 * 3600})
    late = env.enqueue("DL-1")
    env.dispatcher.drain()
    env.shift(3 * 3600 - 1)
    env.dispatcher.drain()
    assert env.rx.ids() == []
    env.shift(1)
    env.dispatcher.drain()
    assert env.rx.ids() == [late]
    assert [(a.fault, a.status_code) for a in env.attempts(late)] == \
        [("callback_delay", None), (None, 200)]


def test_drop_loses_every_attempt_of_the_notification_it_took(env):
    env.arm(effect="callback_drop", mchid=env.merchant.mchid, remaining=1, scenario_id="S22")
    lost = env.enqueue("DR-1")
    env.dispatcher.drain()
    kept = env.enqueue("DR-2")  # the trigger was used on DR-1: this one is delivered
    for gap in (0, 15, 15, 30):
        env.shift(gap)
        env.dispatcher.drain()
    assert env.rx.ids() == [kept]
    assert env.notification(lost).status == "FAILED"
    assert [(a.fault, a.error) for a in env.attempts(lost)] == [("callback_drop", "dropped")] * 4


def test_drop_scoped_to_an_event_type(env):
    env.arm(effect="callback_drop", operation="PAYSCORE.USER_CONFIRM")
    confirm = env.enqueue("DR-3", "PAYSCORE.USER_CONFIRM")
    paid = env.enqueue("DR-3", "PAYSCORE.USER_PAID")
    env.dispatcher.drain()
    assert env.rx.ids() == [paid] and env.attempts(confirm)[0].error == "dropped"


@pytest.mark.parametrize("target", ["ciphertext", "tag"])
def test_tampered_callbacks_are_validly_signed_but_do_not_decrypt(env, target):
    env.arm(effect="callback_tamper", mchid=env.merchant.mchid, remaining=1,
            params={"target": target})
    ids = [env.enqueue("TA-1"), env.enqueue("TA-2")]
    env.dispatcher.drain()
    received = env.rx.by_id()
    assert all(env.signed(received[nid]) for nid in ids)
    (tampered,) = [nid for nid in ids if env.attempts(nid)[0].fault == "callback_tamper"]
    with pytest.raises(protocol.DecryptionError):
        env.plaintext(received[tampered])
    (intact,) = set(ids) - {tampered}
    assert env.plaintext(received[intact])["out_order_no"] in ("TA-1", "TA-2")


def test_stale_timestamp_and_probe_signature(env):
    env.arm(effect="callback_stale_timestamp", out_order_no="ST-1")
    env.arm(effect="callback_probe_signature", out_order_no="PR-1")
    ids = env.enqueue("ST-1"), env.enqueue("PR-1")
    env.dispatcher.drain()
    stale, probe = (env.rx.by_id()[nid] for nid in ids)
    assert env.signed(stale) and int(stale["headers"]["Wechatpay-Timestamp"]) == T0 // S - 600
    assert env.plaintext(stale)["out_order_no"] == "ST-1"
    assert probe["headers"]["Wechatpay-Signature"].startswith("WECHATPAY/SIGNTEST/")
    assert not env.signed(probe) and env.plaintext(probe)["out_order_no"] == "PR-1"


def test_mismatched_content_is_signed_and_encrypted_but_wrong(env):
    env.arm(effect="callback_mismatched_content", out_order_no="MM-1")
    env.arm(effect="callback_mismatched_content", out_order_no="MM-2",
            params={"field": "mchid"})
    collection = {"state": "USER_PAID", "total_amount": 500, "paid_amount": 500,
                  "details": [{"seq": 1, "amount": 500}]}
    ids = env.enqueue("MM-1", total_amount=500, collection=collection), \
        env.enqueue("MM-2", total_amount=500)
    env.dispatcher.drain()
    amount, mchid = (env.rx.by_id()[nid] for nid in ids)
    assert env.signed(amount) and env.signed(mchid)
    bent = env.plaintext(amount)
    assert (bent["total_amount"], bent["collection"]["paid_amount"],
            bent["collection"]["details"][0]["amount"]) == (501, 501, 501)
    other = env.plaintext(mchid)["mchid"]
    assert other != env.merchant.mchid and len(other) == len(env.merchant.mchid)


def test_mismatched_appid_on_a_real_order_callback(env):
    env.arm(effect="callback_mismatched_content", mchid=env.merchant.mchid,
            params={"field": "appid", "value": "wx0000000000000000"}, scenario_id="S23")
    client = SignedClient(env.app, env.merchant)
    assert client.post("/v3/payscore/serviceorder",
                       client.create_body("MM-3", notify_url=env.rx.url)).status_code == 200
    confirmed = env.app.test_client().post(
        f"/sandbox/merchants/{env.merchant.mchid}/orders/MM-3/confirm", json={"openid": "o_mm3"})
    assert confirmed.status_code == 200, confirmed.json
    env.dispatcher.drain()
    (request,) = env.rx.requests
    plain = env.plaintext(request)
    assert (plain["out_order_no"], plain["appid"]) == ("MM-3", "wx0000000000000000")
    assert env.merchant.appid != "wx0000000000000000" and env.signed(request)


def test_replay_resends_an_old_delivery_verbatim_before_a_later_one(env):
    env.arm(effect="callback_replay", mchid=env.merchant.mchid, remaining=1,
            params={"after_s": 600}, scenario_id="S17")
    confirm = env.enqueue("RP-1", "PAYSCORE.USER_CONFIRM", state="DOING")
    env.dispatcher.drain()
    env.shift(300)
    soon = env.enqueue("RP-1", "PAYSCORE.USER_PAID")  # too early for the replay
    env.dispatcher.drain()
    env.shift(360)
    paid = env.enqueue("RP-1", "PAYSCORE.USER_PAID")
    env.dispatcher.drain()
    assert env.rx.ids() == [confirm, soon, confirm, paid]
    original, replayed = env.rx.requests[0], env.rx.requests[2]
    assert replayed["body"] == original["body"]
    assert {k: v for k, v in replayed["headers"].items() if k.startswith("Wechatpay-")} == \
        {k: v for k, v in original["headers"].items() if k.startswith("Wechatpay-")}
    assert int(replayed["headers"]["Wechatpay-Timestamp"]) == T0 // S and env.signed(replayed)
    assert [(a.fault, a.status_code) for a in env.attempts(confirm)] == \
        [(None, 200), ("callback_replay", 200)]


def test_outage_holds_callbacks_until_its_window_ends(env):
    env.arm(effect="outage", mchid=env.merchant.mchid, window_s=600)
    held = env.enqueue("OU-1")
    env.dispatcher.drain()
    assert env.rx.ids() == [] and env.notification(held).next_attempt_us == T0 + 600 * S
    env.shift(600)
    env.dispatcher.drain()
    assert env.rx.ids() == [held]


def test_rotated_serial_signs_the_scoped_merchants_callbacks(env):
    other = add_merchant(env.app)
    old = env.sb.signer.certificate.serial
    new = env.arm(effect="rotated_serial", mchid=env.merchant.mchid)["state"]["serial"]
    ids = env.enqueue("RO-1"), env.enqueue("RO-2", mchid=other.mchid)
    env.dispatcher.drain()
    mine, theirs = (env.rx.by_id()[nid] for nid in ids)
    assert (mine["headers"]["Wechatpay-Serial"], theirs["headers"]["Wechatpay-Serial"]) == \
        (new, old)
    assert env.signed(mine) and env.signed(theirs)


def test_public_key_signing_applies_to_callbacks_too(env):
    http = env.app.test_client()
    switched = http.post(f"/sandbox/merchants/{env.merchant.mchid}/signing-mode",
                         json={"mode": "public_key", "scenario_id": "S14"})
    assert switched.status_code == 201, switched.json
    first = env.enqueue("PK-1")
    env.dispatcher.drain()
    http.delete(f"/sandbox/faults/{switched.json['id']}")
    second = env.enqueue("PK-2")
    env.dispatcher.drain()
    received = env.rx.by_id()
    assert received[first]["headers"]["Wechatpay-Serial"].startswith("PUB_KEY_ID_")
    assert received[second]["headers"]["Wechatpay-Serial"] == env.sb.signer.certificate.serial
    assert env.signed(received[first]) and env.signed(received[second])
