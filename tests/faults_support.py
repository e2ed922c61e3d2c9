"""Fault test helpers: arm a fault through the control API, make and query orders, read the
request log, and check a response's signature against the sandbox's platform keys."""

from __future__ import annotations

from sqlalchemy import select

from merchant_kit import protocol
from sandbox import db
from sandbox.testing import SignedClient

S = 1_000_000
CREATE = "/v3/payscore/serviceorder"


def arm(app, **spec) -> dict:
    r = app.test_client().post("/sandbox/faults", json=spec)
    assert r.status_code == 201, r.json
    return r.json


def create(client: SignedClient, out_order_no: str):
    return client.post(CREATE, client.create_body(out_order_no))


def query(client: SignedClient, out_order_no: str):
    return client.get(CREATE, {"out_order_no": out_order_no, **client.ids()})


def order_numbers(sandbox, mchid: str) -> list[str]:
    o = db.orders.c
    with sandbox.engine.connect() as conn:
        return list(conn.execute(select(o.out_order_no).where(o.mchid == mchid)
                                 .order_by(o.pk)).scalars())


def requests_log(app, **filters) -> list[dict]:
    r = app.test_client().get("/sandbox/requests", query_string=filters)
    assert r.status_code == 200, r.json
    return r.json["requests"]


def signature_valid(sandbox, r) -> bool:
    key = sandbox.signer.by_serial.get(r.headers["Wechatpay-Serial"].upper())
    message = protocol.response_message(r.headers["Wechatpay-Timestamp"],
                                        r.headers["Wechatpay-Nonce"], r.get_data())
    return key is not None and protocol.verify(key.public_key, message,
                                               r.headers["Wechatpay-Signature"])
