"""pytest plugin (entry point `payscore_sandbox`): an isolated sandbox per test.

    def test_rental(payscore_sandbox):
        client = payscore_sandbox.client            # merchant_kit.PayScoreClient, ready
        client.create_service_order(...)
        payscore_sandbox.confirm("R1")              # the simulated user confirms
        payscore_sandbox.advance("1h")              # move the sandbox clock, run due jobs
        payscore_sandbox.notifications()            # what the sandbox sent, with attempts

Each test gets a fresh database in its tmp dir, a provisioned merchant and a real HTTP server on
a free 127.0.0.1 port, so the code under test talks to it exactly as to WeChat.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.clock import parse_duration


class SandboxHandle:
    """What a test gets: the base URL, the merchant's credentials, a client and helpers."""

    def __init__(self, live, merchant_json: Path):
        self.live = live
        self.base_url: str = live.base_url
        self.merchant_json = merchant_json
        self._client = None

    @property
    def sandbox(self):
        return self.live.sandbox

    @property
    def config(self):
        from merchant_kit.config import MerchantConfig

        return MerchantConfig.from_file(self.merchant_json)

    @property
    def client(self):
        if self._client is None:
            from merchant_kit.client import PayScoreClient

            # The sandbox clock can be frozen or advanced; a client on wall time would then
            # sign "stale" requests, so the fixture's client reads the sandbox's clock.
            self._client = PayScoreClient(self.config, time_fn=self.now)
        return self._client

    def now(self) -> float:
        """Seconds on the sandbox clock: give it to your own client/handler as `time_fn`."""
        return self.sandbox.clock.now_us() / 1_000_000

    @property
    def mchid(self) -> str:
        import json

        return json.loads(self.merchant_json.read_text())["mchid"]

    def control(self, method: str, path: str, json: Any = None) -> Any:
        r = requests.request(method, f"{self.base_url}/sandbox{path}", json=json, timeout=30)
        if r.status_code >= 400:
            raise AssertionError(f"control API {method} {path}: {r.status_code} {r.text}")
        return r.json() if r.content else None

    def confirm(self, out_order_no: str, openid: str | None = None) -> dict:
        body = {"openid": openid} if openid else {}
        return self.control("POST", f"/merchants/{self.mchid}/orders/{out_order_no}/confirm", body)

    def decline(self, out_order_no: str) -> dict:
        return self.control("POST", f"/merchants/{self.mchid}/orders/{out_order_no}/decline", {})

    def pay(self, out_order_no: str) -> dict:
        return self.control("POST", f"/merchants/{self.mchid}/orders/{out_order_no}/deduction",
                            {})

    def advance(self, by: str) -> dict:
        parse_duration(by)  # fail fast on a typo, before the request
        return self.control("POST", "/clock/advance", {"by": by})

    def freeze(self) -> dict:
        return self.control("POST", "/clock/freeze", {})

    def notifications(self, **filters: Any) -> list[dict]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        answer = self.control("GET", "/notifications" + (f"?{query}" if query else ""))
        return answer["data"]

    def drain(self) -> dict:
        return self.control("POST", "/notifications/drain", {})


@pytest.fixture
def payscore_sandbox(tmp_path_factory) -> Iterator[SandboxHandle]:
    """A fresh sandbox on a free loopback port with one provisioned merchant."""
    from sandbox.cli import ensure_demo_merchant
    from sandbox.live import LiveSandbox

    data_dir = tmp_path_factory.mktemp("payscore")
    live = LiveSandbox(data_dir).start()
    try:
        merchant_json = ensure_demo_merchant(live.app, live.base_url)
        yield SandboxHandle(live, merchant_json)
    finally:
        live.stop()
