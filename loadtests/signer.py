"""Signing and verifying as a merchant, for load users that speak HTTP themselves.

Locust's FastHttpUser sends the bytes we give it, so a load user signs with
`merchant_kit.protocol` over exactly those bytes and the target it requests, and verifies
every 2xx against the platform keys named in merchant.json. No second copy of any crypto.

Time: requests are signed with the *sandbox* clock (wall time + the offset read once from
GET /sandbox/clock), so a run against a sandbox whose clock was moved still signs valid
timestamps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from merchant_kit import protocol
from merchant_kit.config import MerchantConfig

USER_AGENT = "payscore-loadtest/1 (locust)"


@dataclass
class MerchantSigner:
    mchid: str
    appid: str
    service_id: str
    serial_no: str
    private_key: protocol.PrivateKey = field(repr=False)
    platform_keys: dict[str, protocol.PublicKey] = field(repr=False, default_factory=dict)
    apiv3_key: bytes = field(repr=False, default=b"")
    clock_offset_s: float = 0.0
    clock_error_s: float = 0.05

    @classmethod
    def from_file(cls, path: str | Path) -> MerchantSigner:
        config = MerchantConfig.from_file(path)
        keys: dict[str, protocol.PublicKey] = {}
        if config.platform_certificate_pem and config.platform_serial_no:
            cert = protocol.load_certificate(config.platform_certificate_pem)
            keys[config.platform_serial_no.upper()] = protocol.public_key_of(cert)
        if config.platform_public_key is not None and config.platform_public_key_id:
            keys[config.platform_public_key_id.upper()] = config.platform_public_key
        return cls(config.mchid, config.appid, config.service_id, config.merchant_serial_no,
                   config.private_key, keys, config.apiv3_key)

    def now(self) -> int:
        return int(self.now_exact())

    def now_exact(self) -> float:
        return time.time() + self.clock_offset_s

    def sync_clock(self, sandbox_url: str, timeout: float = 10.0, samples: int = 5) -> float:
        """Read the sandbox clock; later signatures use wall time + this offset.

        The offset comes from the sample with the shortest round trip (its midpoint), and half
        that round trip bounds the error (`clock_error_s`), which callers that must stay on
        the right side of a second boundary (complete's end_time) allow for.
        """
        best: tuple[float, float] | None = None
        with requests.Session() as http:
            for _ in range(max(1, samples)):
                sent = time.time()
                r = http.get(f"{sandbox_url.rstrip('/')}/sandbox/clock", timeout=timeout)
                received = time.time()
                r.raise_for_status()
                rtt = received - sent
                offset = r.json()["now_us"] / 1e6 - (sent + received) / 2
                if best is None or rtt < best[0]:
                    best = (rtt, offset)
        assert best is not None
        self.clock_offset_s = best[1]
        self.clock_error_s = best[0] / 2 + 0.002
        return self.clock_offset_s

    def signed_headers(self, method: str, target: str, body: bytes) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT,
                   "Authorization": protocol.build_authorization(
                       self.mchid, self.serial_no, self.private_key, method, target, body,
                       self.now(), protocol.make_nonce())}
        if body:
            headers["Content-Type"] = "application/json"
        return headers

    def verify(self, headers: Mapping[str, str] | Any, body: bytes) -> str | None:
        """None when the reply is trustworthy, else the reason it is not."""
        try:
            protocol.check_signed_message(Caseless(headers), body, self.platform_keys,
                                          self.now())
        except protocol.SignatureRejected as exc:
            return exc.reason
        return None

    def ids(self) -> dict[str, str]:
        return {"appid": self.appid, "service_id": self.service_id}


class Caseless:
    """Header lookup that ignores case whatever mapping the HTTP library returns."""

    def __init__(self, headers: Mapping[str, str] | Any):
        pairs = headers.items() if hasattr(headers, "items") else (headers or ())
        self._items = {str(k).lower(): v for k, v in pairs}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._items.get(name.lower(), default)


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def query_target(path: str, query: Mapping[str, str]) -> str:
    return f"{path}?{urlencode(query)}" if query else path
