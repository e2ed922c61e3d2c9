"""Callbacks end to end from an order, and the control API over the outbox: list, show,
redeliver, drain, send a test notification, and refuse bad input as WeChat would.
"""

from __future__ import annotations

import json

import pytest
from callbacks_support import T0, Receiver, S, enqueue

from loadtests.runner import free_port
from merchant_kit import protocol
from sandbox.clock import to_datetime
from sandbox.testing import SignedClient


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
