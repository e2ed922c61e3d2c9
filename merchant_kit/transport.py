"""The signing, sending and verifying core under `merchant_kit.client.PayScoreClient`.

Every request body is serialised once (`encode_body`) and those exact bytes are signed and sent;
the signed URL is the one `requests` puts on the wire (``PreparedRequest.path_url``). Every 2xx,
204 included, is verified before its body is read. Failures raise `merchant_kit.errors`
exceptions carrying the Request-ID, `retryable` and `outcome_unknown`. Attempts run under the
retry policy, the circuit breaker and the call's total deadline; after an unknown outcome,
`_guarded` lets the operation's own probe decide (the table is in merchant_kit.client).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import pybreaker
import requests

from merchant_kit import protocol
from merchant_kit.config import MerchantConfig
from merchant_kit.errors import (
    ApiError,
    CircuitOpen,
    DeadlineExceeded,
    UntrustedResponse,
    WechatPayError,
    error_from_exception,
    error_from_reply,
)
from merchant_kit.keys import PlatformKeys
from merchant_kit.resilience import Breaker, Deadline, RetryPolicy, as_breaker

# Records keep the logger name they had before this module was split out of client.py, so
# existing logging configuration for "merchant_kit.client" still sees them.
log = logging.getLogger("merchant_kit.client")
R = TypeVar("R")
Accept = Callable[[Mapping[str, str], bytes], Any]


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    path: str
    success: int = 200
    replay_safe: bool = False  # repeating after an unknown outcome cannot double-apply


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, serialised once; these bytes are both signed and sent (§1.2, §10)."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if any(ord(ch) > 0xFFFF for ch in text):
        raise ValueError("WeChat Pay rejects 4-byte UTF-8 characters (emoji) in request bodies")
    return text.encode("utf-8")


def session_for(base_url: str) -> requests.Session:
    """A requests session for calls to `base_url`; environment proxies only off loopback.

    A loopback sandbox is never behind a proxy, yet requests would send 127.0.0.1 through
    HTTP(S)_PROXY unless NO_PROXY names it, and it reads the environment's proxy settings on
    every call: a twentieth of a loaded reference merchant's CPU.
    """
    session = requests.Session()
    host = urlsplit(base_url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    session.trust_env = not loopback
    return session


class SignedTransport:
    """Signed, verified, bounded calls to the operations named in `operations` (subclass's)."""

    operations: ClassVar[Mapping[str, Operation]]

    def __init__(self, config: MerchantConfig, keys: PlatformKeys | None = None,
                 session: requests.Session | None = None,
                 breaker: Breaker | pybreaker.CircuitBreaker | None = None,
                 retry_policy: RetryPolicy | None = None,
                 time_fn: Callable[[], float] = time.time):
        self.config = config
        self.keys = keys if keys is not None else PlatformKeys.from_config(config, time_fn=time_fn)
        self.session = session if session is not None else session_for(config.base_url)
        self.breaker = as_breaker(breaker)
        self.retry_policy = retry_policy if retry_policy is not None else RetryPolicy()
        self._time = time_fn

    def health(self) -> dict[str, Any]:
        """Breaker and retry-budget state, for the merchant's health endpoint."""
        budget = self.retry_policy.budget
        return {"breaker": self.breaker.snapshot(),
                "retry_budget": budget.snapshot() if budget is not None else None,
                "platform_keys": {"mode": self.keys.mode,
                                  "serials": sorted(self.keys.snapshot())}}

    def _deadline(self) -> Deadline:
        return Deadline(self.config.total_deadline, self.retry_policy.clock)

    def _call(self, name: str, *, path_params: Mapping[str, str] | None = None,
              query: list[tuple[str, str]] | None = None, body: bytes | None = None,
              deadline: Deadline | None = None, accept: Accept | None = None) -> Any:
        op = self.operations[name]
        if path_params and body and set(path_params) & set(json.loads(body)):
            # §1.2: WeChat rejects a field mapped from both the URI template and the body.
            raise ValueError(f"{name}: path parameters must not be repeated in the body")
        params = {k: quote(str(v), safe="") for k, v in (path_params or {}).items()}
        path = op.path.format(**params)
        # Query built here, in a fixed order, and left alone by requests: what we sign is sent.
        target = path + ("?" + urlencode(query) if query else "")
        dl = deadline or self._deadline()
        return self.retry_policy.run(lambda _n: self._attempt(op, target, body, dl, accept),
                                     replay_safe=op.replay_safe, deadline=dl)

    def _attempt(self, op: Operation, target: str, body: bytes | None, deadline: Deadline,
                 accept: Accept | None) -> Any:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise DeadlineExceeded(f"{op.name}: total deadline exhausted", operation=op.name)
        try:
            probe = self.breaker.admit()
        except CircuitOpen as exc:
            exc.operation = op.name
            raise
        outcome: BaseException | None = None
        try:
            return self._exchange(op, target, body, remaining, accept)
        except WechatPayError as exc:
            exc.operation = exc.operation or op.name
            outcome = exc
            raise
        finally:
            self.breaker.record(outcome, probe)

    def _exchange(self, op: Operation, target: str, body: bytes | None, remaining: float,
                  accept: Accept | None) -> Any:
        cfg = self.config
        headers = {"Accept": "application/json", "User-Agent": cfg.user_agent}
        if body is not None:
            headers["Content-Type"] = "application/json"
        serial = self.keys.request_serial()
        if serial:
            headers["Wechatpay-Serial"] = serial
        prepared = self.session.prepare_request(
            requests.Request(op.method, cfg.base_url + target, data=body, headers=headers))
        raw_body = prepared.body if isinstance(prepared.body, bytes) else b""
        prepared.headers["Authorization"] = protocol.build_authorization(
            cfg.mchid, cfg.merchant_serial_no, cfg.private_key, op.method, prepared.path_url,
            raw_body, int(self._time()), protocol.make_nonce())
        timeout = (min(cfg.timeouts.connect, remaining), min(cfg.timeouts.read, remaining))
        try:
            settings = self.session.merge_environment_settings(prepared.url, {}, None, None, None)
            resp = self.session.send(prepared, timeout=timeout, allow_redirects=False, **settings)
        except requests.RequestException as exc:
            raise error_from_exception(exc, op.name) from exc
        status, content, rid = resp.status_code, resp.content, resp.headers.get("Request-ID")
        log.debug("%s %s -> %s [Request-ID %s]", op.method, prepared.path_url, status, rid)
        if not 200 <= status < 300:
            raise error_from_reply(status, resp.headers, content, op.name)
        try:
            if accept is not None:
                return accept(resp.headers, content)
            self.keys.verify(resp.headers, content)
            if status == 202 and op.success != 202:
                raise ApiError("accepted but not processed; repeat with identical parameters",
                               status=202, code="ACCEPTED", request_id=rid,
                               outcome_unknown=True)
            if op.success == 204 and not content:
                return None
            data = json.loads(content)
            if not isinstance(data, dict):
                raise ValueError("JSON object expected")  # noqa: TRY004 - mapped just below
            return data
        except protocol.SignatureRejected as exc:
            raise UntrustedResponse(reason=exc.reason, status=status, request_id=rid) from exc
        except ValueError as exc:  # JSONDecodeError, ProtocolError, DecryptionError
            raise UntrustedResponse(reason="unparseable", status=status, request_id=rid,
                                    detail=str(exc)) from exc

    def _guarded(self, send: Callable[[], R], probe: Callable[[], R | None]) -> R:
        try:
            return send()
        except WechatPayError as exc:
            if not exc.outcome_unknown:
                raise
            return self._resolve(exc, probe, send)

    def _resolve(self, exc: WechatPayError, probe: Callable[[], R | None],
                 replay: Callable[[], R]) -> R:
        """After an unknown outcome: probe() says applied (a result) or not (None); else raise."""
        log.warning("resolving unknown outcome of %s [Request-ID %s]", exc.operation,
                    exc.request_id)
        try:
            found = probe()
        except ApiError as conflict:
            if conflict.status is None:  # a local finding (the order differs): the truth
                raise
            exc.outcome_unknown = True
            raise exc from conflict
        except WechatPayError as failure:
            exc.outcome_unknown = True
            raise exc from failure
        return found if found is not None else replay()
