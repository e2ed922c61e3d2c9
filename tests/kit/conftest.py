"""Fixtures for the PayScoreClient unit tests: a PayScoreClient wired to a scripted `requests`
transport, a clock that only moves when told, and the merchant / platform key material.
No network, no sleeping."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from merchant_kit import MerchantConfig, PayScoreClient, RetryPolicy, make_breaker, protocol

from .scripted import APIV3, APPID, MCHID, NOW, SERVICE


class Clock:
    """Wall clock and monotonic clock in one; `sleep` only advances it."""

    def __init__(self):
        self.now, self.sleeps = float(NOW), []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Wire(BaseAdapter):
    """A requests transport: records every PreparedRequest, answers from per-route scripts."""

    def __init__(self):
        super().__init__()
        self.routes: dict[tuple[str, str], list] = {}
        self.sent: list[requests.PreparedRequest] = []
        self.timeouts: list = []

    def on(self, method: str, path: str, *outcomes) -> None:
        self.routes[(method, path)] = list(outcomes)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.sent.append(request)
        self.timeouts.append(timeout)
        script = self.routes[(request.method, request.path_url.split("?")[0])]
        outcome = script.pop(0) if len(script) > 1 else script[0]
        if callable(outcome):
            outcome = outcome(request)
        if isinstance(outcome, BaseException):
            raise outcome
        status, headers, body = outcome
        resp = requests.Response()
        resp.status_code, resp._content, resp.url, resp.request = status, body, request.url, request
        resp.headers = CaseInsensitiveDict(headers)
        return resp

    def close(self):
        pass

    def bodies(self, method: str) -> list[bytes]:
        return [r.body for r in self.sent if r.method == method]


class Env:
    def __init__(self, pki, clock=None, total_deadline=30.0, breaker=None, policy=None,
                 keys=None, **cfg):
        self.pki, self.clock, self.wire = pki, clock or Clock(), Wire()
        self.config = MerchantConfig(
            base_url="https://api.test", mchid=MCHID, appid=APPID, service_id=SERVICE,
            merchant_serial_no="1DDE55AD98ED71D6", private_key=pki["merchant"], apiv3_key=APIV3,
            platform_certificate_pem=protocol.certificate_pem(pki["cert"]),
            total_deadline=total_deadline, **cfg)
        session = requests.Session()
        session.mount("https://", self.wire)
        self.policy = policy or RetryPolicy(sleep=self.clock.sleep, clock=self.clock,
                                            rng=random.Random(7))
        self.client = PayScoreClient(
            self.config, keys=keys, session=session, retry_policy=self.policy,
            breaker=breaker or make_breaker(clock=self.clock), time_fn=self.clock)

    def ok(self, data=None, status=200, key=None, serial=None, ts=None, raw=None):
        body = raw if raw is not None else (json.dumps(data, ensure_ascii=False).encode()
                                            if data is not None else b"")
        headers = protocol.sign_response(key or self.pki["platform"], serial or self.pki["serial"],
                                         body, int(ts or self.clock()), protocol.make_hex_nonce())
        return status, {**headers, "Request-ID": "08F5B8C2B5061-0"}, body

    @staticmethod
    def error(status, code, message, detail=None):
        body = {"code": code, "message": message, **({"detail": detail} if detail else {})}
        return status, {"Request-ID": f"08F5B8C2B5061-{status}"}, json.dumps(body).encode()


@pytest.fixture(scope="module")
def pki():
    merchant = protocol.generate_private_key()
    platform = protocol.generate_private_key()
    start = dt.datetime.fromtimestamp(NOW, tz=dt.UTC) - dt.timedelta(days=1)
    cert = protocol.make_certificate(platform, "platform", 0x5DEA10EF, start)
    return {"merchant": merchant, "platform": platform, "cert": cert,
            "serial": protocol.certificate_serial(cert)}


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_env(pki, clock):
    """Env(...) on this test's `clock` unless given another; keyword arguments as Env's."""
    def make(**kwargs) -> Env:
        kwargs.setdefault("clock", clock)
        return Env(pki, **kwargs)
    return make


@pytest.fixture
def env(make_env):
    return make_env()
