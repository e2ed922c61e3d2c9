"""The merchant's Pay Score client: the kit's PayScoreClient with go-live defaults, or, when a
bug switch says so, the client a careless integration would have built.

`Provider.call` is the one door to WeChat Pay for the rest of the merchant: it counts the calls
per rental and re-reads a followed test clock once when WeChat says our timestamp is stale.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from merchant_kit import (
    ApiError,
    MerchantConfig,
    PayScoreClient,
    PlatformKeys,
    RetryPolicy,
    Timeouts,
    WechatPayError,
    make_breaker,
)
from merchant_kit.reference.clock import MerchantClock

log = logging.getLogger(__name__)
R = TypeVar("R")

BUSINESS_RETRIES = 5  # retry_business_errors
HAMMER_ATTEMPTS = 10  # no_backoff


class Tally:
    """Provider calls made on behalf of one rental (the driver's `provider_calls`)."""

    def __init__(self) -> None:
        self.calls = 0


class _TrustingKeys:
    """trust_unsigned_replies: every reply 'verifies'; everything else is the real key set."""

    def __init__(self, inner: PlatformKeys):
        self._inner = inner

    def verify(self, headers: Mapping[str, str] | Any, body: bytes,
               now: float | None = None) -> str:
        return headers.get("Wechatpay-Serial") or ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _HammerPolicy(RetryPolicy):
    """no_backoff: retry anything retryable at once, ignoring Retry-After and any budget."""

    def __init__(self) -> None:
        super().__init__(max_attempts=HAMMER_ATTEMPTS, base_delay=0.0, max_delay=0.0,
                         rate_limited_base_delay=0.0, budget=None)
        self.budget = None

    def should_retry(self, exc: BaseException, replay_safe: bool) -> bool:
        return isinstance(exc, WechatPayError) and exc.retryable and exc.code not in (
            "CIRCUIT_OPEN", "DEADLINE_EXCEEDED")

    def backoff(self, failures: int, exc: BaseException | None = None) -> float:
        return 0.0


def merchant_config(config: MerchantConfig, bugs: frozenset[str], settings: Mapping[str, Any]
                    ) -> MerchantConfig:
    changes: dict[str, Any] = {}
    if "certificate_only" in bugs:
        changes.update(platform_public_key=None, platform_public_key_id=None)
    if "no_key_refresh" in bugs and config.platform_certificate_pem:
        # Went live before the public key existed and never updated its key set.
        changes.update(platform_public_key=None, platform_public_key_id=None)
    if settings.get("PROVIDER_TIMEOUTS"):
        changes["timeouts"] = Timeouts(**settings["PROVIDER_TIMEOUTS"])
    if settings.get("PROVIDER_TOTAL_DEADLINE"):
        changes["total_deadline"] = float(settings["PROVIDER_TOTAL_DEADLINE"])
    return dataclasses.replace(config, **changes) if changes else config


def build_client(config: MerchantConfig, bugs: frozenset[str], clock: MerchantClock,
                 settings: Mapping[str, Any]) -> tuple[PayScoreClient, PlatformKeys]:
    """The client and the verification keys the callback handler shares with it."""
    keys = PlatformKeys.from_config(config, time_fn=clock.now)
    frozen_keys = "no_key_refresh" in bugs
    if frozen_keys:
        keys.download_enabled = bool(not config.platform_certificate_pem
                                     and config.platform_public_key is None)
    if "no_breaker" in bugs:
        breaker = make_breaker(fail_max=10**9, reset_timeout=1)
    else:
        breaker = make_breaker(fail_max=int(settings.get("BREAKER_FAIL_MAX", 5)),
                               reset_timeout=float(settings.get("BREAKER_RESET_TIMEOUT", 30)))
    policy = _HammerPolicy() if "no_backoff" in bugs else RetryPolicy(
        base_delay=float(settings.get("RETRY_BASE_DELAY", 0.2)),
        rate_limited_base_delay=float(settings.get("RETRY_BASE_DELAY_429", 1.0)))
    client_keys: Any = _TrustingKeys(keys) if "trust_unsigned_replies" in bugs else keys
    client = PayScoreClient(config, keys=client_keys, breaker=breaker, retry_policy=policy,
                            time_fn=clock.now)
    if frozen_keys and keys.download_enabled:
        # Nothing configured: one download at start-up, then never again.
        try:
            client.download_certificates()
        except WechatPayError as exc:
            log.warning("start-up certificate download failed: %s", exc)
        keys.download_enabled = False
    return client, keys


def _stale_timestamp(exc: WechatPayError) -> bool:
    return (isinstance(exc, ApiError) and exc.status == 401 and exc.code == "SIGN_ERROR"
            and "timestamp" in (exc.message or ""))


class Provider:
    def __init__(self, client: PayScoreClient, clock: MerchantClock, bugs: frozenset[str]):
        self.client = client
        self.clock = clock
        self.bugs = bugs

    def call(self, tally: Tally, fn: Callable[[PayScoreClient], R]) -> R:
        resynced = False
        repeats = 0
        while True:  # bounded: one clock resync, at most BUSINESS_RETRIES repeats
            tally.calls += 1
            try:
                return fn(self.client)
            except ApiError as exc:
                if not resynced and self.clock.following and _stale_timestamp(exc):
                    resynced = True
                    self.clock.refresh()
                    continue
                definite_4xx = exc.status is not None and 400 <= exc.status < 500 \
                    and not exc.outcome_unknown
                if ("retry_business_errors" in self.bugs and definite_4xx
                        and repeats < BUSINESS_RETRIES):
                    repeats += 1
                    continue
                raise

    def health(self) -> dict[str, Any]:
        info = self.client.health()
        policy = self.client.retry_policy
        info["retry_policy"] = {"max_attempts": policy.max_attempts,
                                "base_delay": policy.base_delay, "max_delay": policy.max_delay}
        cfg = self.client.config
        info["timeouts"] = {"connect": cfg.timeouts.connect, "read": cfg.timeouts.read,
                            "total_deadline": cfg.total_deadline}
        if "no_breaker" in self.bugs:
            info["breaker"] = {**info["breaker"], "disabled": True}
        return info
