"""Helpers for tests of the sandbox itself and for merchants' suites (via the pytest plugin).

`SignedClient` signs requests exactly like a merchant would (merchant_kit.protocol) and sends
them through Flask's test client or a real HTTP connection.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask

from merchant_kit import protocol
from sandbox import db, provision
from sandbox.app import create_app


@dataclass
class TestMerchant:
    __test__ = False  # a helper, not a test class, despite its name
    mchid: str
    appid: str
    service_id: str
    serial_no: str
    private_key: protocol.PrivateKey
    apiv3_key: str
    json_path: Path | None = None


@functools.cache
def _key_pool() -> tuple[protocol.PrivateKey, ...]:
    return tuple(protocol.generate_private_key() for _ in range(6))


def pooled_keygen() -> protocol.PrivateKey:
    """RSA-2048 generation costs ~60 ms; test sandboxes draw from a small pool instead."""
    pool = _key_pool()
    return pool[next(_key_counter) % len(pool)]


_key_counter = itertools.count()


def make_sandbox(tmp_path: Path, db_url: str | None = None, **config: Any) -> Flask:
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"DATABASE_URL": db_url or f"sqlite:///{data_dir / 'sandbox.db'}",
           "DATA_DIR": str(data_dir), "TESTING": True, "KEYGEN": pooled_keygen, **config}
    return create_app(cfg)


def add_merchant(app: Flask, base_url: str = "http://127.0.0.1", **kw: Any) -> TestMerchant:
    sb = app.extensions["payscore"]
    with db.write_tx(sb.engine) as conn:
        kw.setdefault("keygen", sb.config.get("KEYGEN") or protocol.generate_private_key)
        m = provision.add_merchant(conn, sb.clock.now_us(conn), **kw)
        keys = provision.load_platform_keys(conn)
    path = provision.write_merchant_files(sb.data_dir, m, base_url, keys,
                                          name=f"merchant_{m.mchid}")
    return TestMerchant(m.mchid, m.appid, m.service_id, m.serial_no,
                        protocol.load_private_key(m.private_key_pem), m.apiv3_key, path)


class SignedClient:
    """Signs like a merchant; `now` defaults to the sandbox clock so frozen time still works."""

    def __init__(self, app: Flask, merchant: TestMerchant):
        self.app = app
        self.merchant = merchant
        self.http = app.test_client()
        self.extra_headers: dict[str, str] = {}

    def _now(self) -> int:
        return self.app.extensions["payscore"].clock.now_s()

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None,
                headers: dict | None = None, sign: bool = True, timestamp: int | None = None,
                raw_body: bytes | None = None):
        target = path + ("?" + urlencode(query) if query else "")
        if raw_body is not None:
            data = raw_body
        elif body is None:
            data = b""
        else:
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        hdrs = {"Accept": "application/json", "User-Agent": "payscore-tests/1",
                **self.extra_headers}
        if data:
            hdrs["Content-Type"] = "application/json"
        if sign:
            m = self.merchant
            hdrs["Authorization"] = protocol.build_authorization(
                m.mchid, m.serial_no, m.private_key, method, target, data,
                timestamp if timestamp is not None else self._now(), protocol.make_nonce())
        hdrs.update(headers or {})
        return self.http.open(target, method=method, data=data, headers=hdrs)

    def get(self, path: str, query: dict | None = None, **kw: Any):
        return self.request("GET", path, query=query, **kw)

    def post(self, path: str, body: Any = None, **kw: Any):
        return self.request("POST", path, body=body, **kw)

    def create_body(self, out_order_no: str, **overrides: Any) -> dict:
        m = self.merchant
        body = {
            "out_order_no": out_order_no, "appid": m.appid, "service_id": m.service_id,
            "service_introduction": "充电宝租借",
            "time_range": {"start_time": "OnAccept"},
            "risk_fund": {"name": "ESTIMATE_ORDER_COST", "amount": 9900},
            "notify_url": "https://merchant.example/notify",
            "need_user_confirm": True,
        }
        body.update(overrides)
        return body

    def ids(self) -> dict:
        return {"appid": self.merchant.appid, "service_id": self.merchant.service_id}


def wall_now() -> int:
    return int(time.time())
