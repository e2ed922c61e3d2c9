"""What the dashboard tests share: a merchant signing over real HTTP, a notify endpoint whose
answer the test sets, screenshots, and lookups in the live sandbox."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import requests

from merchant_kit import protocol
from sandbox import db
from sandbox.live import LiveSandbox
from sandbox.testing import TestMerchant

try:
    from playwright.sync_api import expect, sync_playwright
except ModuleNotFoundError:  # the browser fixture says so, loudly; the API tests still run
    expect = sync_playwright = None

ROOT = Path(__file__).resolve().parents[2]
# README screenshots are refreshed on request (PAYSCORE_SCREENSHOTS=1), so a test run never
# dirties the checkout; otherwise they still get taken, into the test's temp dir.
SHOTS = ROOT / "docs" / "screenshots" if os.environ.get("PAYSCORE_SCREENSHOTS") else None
WAIT_MS = 10_000  # the page polls every 2 s; a few polls at most


class Receiver:
    """A merchant's notify_url on loopback whose answer the test sets (status, body)."""

    def __init__(self) -> None:
        self.status, self.body = 500, b'{"code":"FAIL","message":"boom"}'
        self.hits: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.hits.append(self.rfile.read(int(self.headers["Content-Length"] or 0)))
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HttpMerchant:
    """SignedClient's signing over real HTTP: what a merchant's integration sends."""

    def __init__(self, live: LiveSandbox, merchant: TestMerchant):
        self.live, self.m = live, merchant

    def request(self, method: str, path: str, body: dict | None = None,
                query: dict | None = None, timestamp: int | None = None) -> requests.Response:
        target = path + ("?" + urlencode(query) if query else "")
        data = b"" if body is None else json.dumps(body, ensure_ascii=False,
                                                   separators=(",", ":")).encode()
        now = self.live.sandbox.clock.now_s() if timestamp is None else timestamp
        auth = protocol.build_authorization(self.m.mchid, self.m.serial_no, self.m.private_key,
                                            method, target, data, now, protocol.make_nonce())
        headers = {"Authorization": auth, "Accept": "application/json",
                   "User-Agent": "dashboard-tests/1", "Content-Type": "application/json"}
        return requests.request(method, self.live.base_url + target, data=data,
                                headers=headers, timeout=10)

    def create(self, out_order_no: str, **overrides: object) -> requests.Response:
        body = {"out_order_no": out_order_no, "appid": self.m.appid,
                "service_id": self.m.service_id, "service_introduction": "充电宝租借",
                "time_range": {"start_time": "OnAccept"},
                "risk_fund": {"name": "ESTIMATE_ORDER_COST", "amount": 9900},
                "notify_url": "https://merchant.example/notify", "need_user_confirm": True,
                **overrides}
        answer = self.request("POST", "/v3/payscore/serviceorder", body)
        assert answer.status_code == 200, answer.text
        return answer


def order_no(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def shot(page, name: str) -> None:
    folder = SHOTS or Path(tempfile.gettempdir()) / "payscore-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def order_pk(live: LiveSandbox, out_order_no: str) -> int:
    with live.sandbox.engine.connect() as conn:
        return conn.execute(db.orders.select().where(
            db.orders.c.out_order_no == out_order_no)).one().pk


def a_user(live: LiveSandbox) -> str:
    answer = requests.get(f"{live.base_url}/sandbox/api/users", params={"limit": 1}, timeout=10)
    users = answer.json()["users"]
    if not users:
        requests.post(f"{live.base_url}/sandbox/users/seed", json={"count": 5}, timeout=30)
        users = requests.get(f"{live.base_url}/sandbox/api/users", timeout=10).json()["users"]
    return users[0]["openid"]


def confirm_as_user(live: LiveSandbox, shop: HttpMerchant, out_order_no: str,
                    openid: str) -> None:
    answer = requests.post(f"{live.base_url}/sandbox/users/{openid}/act", timeout=10, json={
        "action": "confirm", "mchid": shop.m.mchid, "out_order_no": out_order_no})
    assert answer.status_code == 200, answer.text
