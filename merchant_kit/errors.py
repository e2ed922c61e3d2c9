"""Exceptions raised by the merchant kit (reference §4).

Two questions matter to a caller after a failure, so every exception answers both:

* `retryable` — is trying again (with the *same* parameters) a sensible reaction (§4.5)?
* `outcome_unknown` — may WeChat Pay have applied the request anyway? If so the caller must not
  issue a *different* request (e.g. a new out_order_no) before learning the truth by a query.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests
import urllib3

# WeChat answers this while an auto-debit is running; the same call succeeds minutes later (§2.6).
DEBIT_IN_PROGRESS = "单据正在扣款中"
GATEWAY_ERROR = "GATEWAY_ERROR"


def is_retryable_reply(status: int | None, message: str | None = None) -> bool:
    """§4.5: 5xx, 429 and 202 are worth repeating; 400/401/403/404 are not (except 扣款中)."""
    if message and DEBIT_IN_PROGRESS in message:
        return True
    if status is None:
        return False
    return status >= 500 or status in (429, 202)


class WechatPayError(Exception):
    """Base class; `str(exc)` names code, status and Request-ID for support tickets."""

    default_retryable = False

    def __init__(self, message: str = "", *, status: int | None = None, code: str | None = None,
                 detail: Any = None, request_id: str | None = None,
                 retryable: bool | None = None, outcome_unknown: bool = False,
                 retry_after: float | None = None, operation: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.detail = detail
        self.request_id = request_id
        self.retryable = self.default_retryable if retryable is None else retryable
        self.outcome_unknown = outcome_unknown
        # Seconds the provider (Retry-After) or the reference (扣款中: ~3 min) asks us to wait.
        self.retry_after = retry_after
        self.operation = operation

    def __str__(self) -> str:
        parts = [self.code or type(self).__name__]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.operation:
            parts.append(self.operation)
        text = " ".join(parts) + (f": {self.message}" if self.message else "")
        if self.request_id:
            text += f" [Request-ID {self.request_id}]"
        if self.outcome_unknown:
            text += " (outcome unknown: the request may have been applied)"
        return text


class ApiError(WechatPayError):
    """A non-2xx answer: JSON `{code, message, detail}` or, for proxies, anything else."""

    def __init__(self, message: str = "", *, status: int | None = None, **kwargs: Any):
        kwargs.setdefault("retryable", is_retryable_reply(status, message))
        # A 5xx may come after the provider acted (SYSTEM_ERROR says "retry the same parameters"),
        # so it is never proof that nothing happened.
        kwargs.setdefault("outcome_unknown", status is not None and status >= 500)
        super().__init__(message, status=status, **kwargs)


class UntrustedResponse(WechatPayError):
    """A 2xx that failed verification or could not be parsed; the call may have succeeded."""

    def __init__(self, message: str = "", *, reason: str = "untrusted", **kwargs: Any):
        kwargs.setdefault("outcome_unknown", True)
        kwargs.setdefault("code", "UNTRUSTED_RESPONSE")
        super().__init__(message or f"response rejected: {reason}", **kwargs)
        self.reason = reason


class TransportError(WechatPayError):
    """No HTTP answer. `phase` is 'connect' (nothing was sent) or 'read' (sent, no answer)."""

    default_retryable = True

    def __init__(self, message: str = "", *, phase: str = "read", **kwargs: Any):
        kwargs.setdefault("outcome_unknown", phase != "connect")
        kwargs.setdefault("code", "CONNECT_ERROR" if phase == "connect" else "READ_ERROR")
        super().__init__(message, **kwargs)
        self.phase = phase


class CircuitOpen(WechatPayError):
    """The breaker is open: the request was not sent (outcome known: not applied)."""

    default_retryable = True  # later, not now: the retry policy never retries it in-call

    def __init__(self, message: str = "circuit breaker open; request not sent", **kwargs: Any):
        kwargs.setdefault("code", "CIRCUIT_OPEN")
        super().__init__(message, **kwargs)


class _Wrapping(WechatPayError):
    """Ends a logical call early; keeps what the last attempt learnt."""

    default_code = ""

    def __init__(self, message: str, last_error: WechatPayError | None = None, **kwargs: Any):
        if last_error is not None:
            kwargs.setdefault("status", last_error.status)
            kwargs.setdefault("request_id", last_error.request_id)
            kwargs.setdefault("detail", last_error.detail)
            kwargs.setdefault("retryable", last_error.retryable)
            kwargs.setdefault("outcome_unknown", last_error.outcome_unknown)
            kwargs.setdefault("operation", last_error.operation)
        kwargs.setdefault("code", self.default_code)
        super().__init__(message, **kwargs)
        self.last_error = last_error


class DeadlineExceeded(_Wrapping):
    """The per-call total deadline ran out (before an attempt or before a retry)."""

    default_code = "DEADLINE_EXCEEDED"


class RetryBudgetExhausted(_Wrapping):
    """The shared retry budget refused a retry: the provider is failing for many callers."""

    default_code = "RETRY_BUDGET_EXHAUSTED"


def is_provider_failure(exc: BaseException) -> bool:
    """What a circuit breaker should count: the provider misbehaving, not our business errors."""
    if isinstance(exc, (TransportError, UntrustedResponse)):
        return True
    if isinstance(exc, ApiError):
        return exc.status is not None and (exc.status >= 500 or exc.status == 429)
    return False


# ---------------------------------------------------------------------- building errors

# 扣款中: the reference says to come back after about three minutes (§2.6).
DEBIT_RETRY_AFTER = 180.0


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP-date; the back-off applies instead


def error_from_reply(status: int, headers: Any, body: bytes,
                     operation: str | None = None) -> ApiError:
    """A non-2xx answer. Usually unsigned (§5.2), so only its shape is used, never trusted."""
    request_id = headers.get("Request-ID") if headers is not None else None
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("code"), str):
        code, message, detail = data["code"], str(data.get("message") or ""), data.get("detail")
    else:
        # A proxy's HTML page, an empty 5xx, garbage: not WeChat speaking.
        code, detail = GATEWAY_ERROR, {"body_excerpt": body[:200].decode("utf-8", "replace")}
        message = f"HTTP {status} without a WeChat Pay error body"
    retry_after = _retry_after(headers)
    if DEBIT_IN_PROGRESS in message:
        retry_after = max(retry_after or 0.0, DEBIT_RETRY_AFTER)
    return ApiError(message, status=status, code=code, detail=detail, request_id=request_id,
                    retry_after=retry_after, operation=operation)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo.extend([item.__cause__, item.__context__, getattr(item, "reason", None)])
        todo.extend(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))


def error_from_exception(exc: BaseException, operation: str | None = None) -> TransportError:
    """Classify a `requests` failure: did the request possibly reach WeChat Pay?"""
    never_sent = isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError))
    never_sent = never_sent or any(
        isinstance(e, (urllib3.exceptions.NewConnectionError,
                       urllib3.exceptions.ConnectTimeoutError)) for e in _chain(exc))
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return TransportError(f"bad URL: {exc}", phase="connect", retryable=False,
                              operation=operation)
    phase = "connect" if never_sent else "read"
    what = "could not connect" if never_sent else "no complete answer after sending"
    return TransportError(f"{what}: {type(exc).__name__}: {exc}", phase=phase,
                          operation=operation)
