"""What the scripted provider answers and what PayScoreClient is asked, for the client unit
tests: stock replies and requests, transport failures, untrusted 2xx replies, and the check
that a request was signed exactly as sent."""

from __future__ import annotations

import requests
import urllib3

from merchant_kit import CreateServiceOrderRequest, RiskFund, TimeRange, protocol

NOW = 1_700_000_000
APIV3 = b"0123456789abcdef0123456789abcdef"
MCHID, APPID, SERVICE = "1230000109", "wxd678efh567hg6787", "2002000000000558128851361561536"
ORDER_PATH = "/v3/payscore/serviceorder"


def order(**over):
    return {"appid": APPID, "mchid": MCHID, "out_order_no": "ORD-1", "service_id": SERVICE,
            "service_introduction": "充电宝租借", "state": "CREATED",
            "risk_fund": {"name": "DEPOSIT", "amount": 9900}, "order_id": "1000000000201912",
            **over}


def create_request(**over):
    fields = {"out_order_no": "ORD-1", "service_introduction": "充电宝租借",
              "time_range": TimeRange(start_time="OnAccept"),
              "risk_fund": RiskFund(name="DEPOSIT", amount=9900),
              "notify_url": "https://merchant.test/notify", "need_user_confirm": True}
    return CreateServiceOrderRequest(**{**fields, **over})


def read_timeout():
    return requests.exceptions.ReadTimeout("read timed out")


def refused():
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")
    return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason))


def reset_after_send():
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "x")))


def assert_signed_as_sent(env, prepared):
    auth = protocol.parse_authorization(prepared.headers["Authorization"])
    assert auth.mchid == MCHID and auth.serial_no == "1DDE55AD98ED71D6"
    message = protocol.request_message(prepared.method, prepared.path_url, auth.timestamp,
                                       auth.nonce_str, prepared.body or b"")
    assert protocol.verify(env.pki["merchant"].public_key(), message, auth.signature)
    return auth


def stranger():
    return protocol.generate_private_key()


def with_headers(reply, extra):
    status, headers, body = reply
    return status, {**headers, **extra}, body


# 2xx replies the client must not trust, by the UntrustedResponse reason they should produce.
REJECTIONS = {
    "unsigned": lambda env: (200, {"Request-ID": "R-1"}, b'{"state":"CREATED"}'),
    "probe": lambda env: with_headers(env.ok(order()), {"Wechatpay-Signature":
                                                        protocol.make_probe_signature()}),
    "bad-signature": lambda env: env.ok(order(), key=stranger()),
    "stale": lambda env: env.ok(order(), ts=NOW - 301),
    "unparseable": lambda env: env.ok(raw=b"<html>ok</html>"),
    "truncated": lambda env: env.ok(raw=b'{"state":"CRE'),
}
