"""Retries, a fleet-wide retry budget, per-call deadlines and a circuit breaker.

Defaults are meant for production: at most 3 attempts, full-jitter exponential back-off
(0.2 s base, 5 s cap), retries limited to 20 % of traffic (with a floor of 3/s), and a breaker that
opens after 5 consecutive provider failures and probes again after 30 s.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import pybreaker
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from merchant_kit.errors import (
    ApiError,
    CircuitOpen,
    DeadlineExceeded,
    RetryBudgetExhausted,
    TransportError,
    WechatPayError,
    is_provider_failure,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


class Deadline:
    """The total time budget of one logical call, retries and outcome resolution included."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.expires_at = clock() + seconds

    def remaining(self) -> float:
        return self.expires_at - self._clock()


class RetryBudget:
    """Retries allowed: `ratio` of the calls seen in the last `window` s, plus `min_per_second`.

    Shared by every client of a process (pass the same RetryPolicy), so when the provider fails
    for everyone the fleet adds at most ~20 % extra load instead of tripling it.
    """

    def __init__(self, ratio: float = 0.2, min_per_second: float = 3.0, window: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.ratio, self.min_per_second, self.window = ratio, min_per_second, window
        self._clock = clock
        self._calls: deque[float] = deque()
        self._retries: deque[float] = deque()
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        for q in (self._calls, self._retries):
            while q and q[0] <= now - self.window:
                q.popleft()

    def record_call(self) -> None:
        with self._lock:
            now = self._clock()
            self._prune(now)
            self._calls.append(now)

    def try_acquire(self) -> bool:
        """Take one retry token if the window allows it."""
        with self._lock:
            now = self._clock()
            self._prune(now)
            allowed = self.min_per_second * self.window + self.ratio * len(self._calls)
            if len(self._retries) + 1 > allowed:
                return False
            self._retries.append(now)
            return True

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            self._prune(self._clock())
            return {"calls": len(self._calls), "retries": len(self._retries),
                    "window_seconds": self.window}


class RetryPolicy:
    """Which failures to repeat, and how long to wait; runs an attempt function via tenacity."""

    def __init__(self, max_attempts: int = 3, base_delay: float = 0.2, max_delay: float = 5.0,
                 rate_limited_base_delay: float = 1.0, budget: RetryBudget | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None):
        self.max_attempts = max_attempts
        self.base_delay, self.max_delay = base_delay, max_delay
        self.rate_limited_base_delay = rate_limited_base_delay
        self.budget = budget if budget is not None else RetryBudget(clock=clock)
        self.sleep, self.clock = sleep, clock
        self._rng = rng or random.Random()

    def should_retry(self, exc: BaseException, replay_safe: bool) -> bool:
        """§4.5. Read timeouts only when repeating cannot double-apply (`replay_safe`)."""
        if not isinstance(exc, WechatPayError) or not exc.retryable:
            return False
        if isinstance(exc, (CircuitOpen, DeadlineExceeded, RetryBudgetExhausted)):
            return False
        if exc.retry_after is not None and exc.retry_after > self.max_delay:
            return False  # "come back in minutes" is the caller's job, not an in-call retry
        return not (isinstance(exc, TransportError) and exc.outcome_unknown and not replay_safe)

    def backoff(self, failures: int, exc: BaseException | None = None) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**(failures-1))); 429 waits longer."""
        rate_limited = isinstance(exc, ApiError) and exc.status == 429
        base = self.rate_limited_base_delay if rate_limited else self.base_delay
        ceiling = min(self.max_delay, base * 2 ** (failures - 1))
        if rate_limited:
            # Equal jitter: a 429 must never be answered by an immediate retry.
            wait = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        else:
            wait = self._rng.uniform(0, ceiling)
        hinted = getattr(exc, "retry_after", None)
        return max(wait, hinted) if hinted else wait

    def run(self, attempt: Callable[[int], T], *, replay_safe: bool,
            deadline: Deadline | None = None) -> T:
        """Call `attempt(n)` until it succeeds or a failure must not be retried.

        If an earlier attempt may have been applied, a later definite error (say ORDER_CANCELED
        after a 500) is flagged `outcome_unknown`: it may be the echo of our own first try.
        """
        if self.budget is not None:
            self.budget.record_call()
        seen_unknown: list[bool] = []

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if not isinstance(exc, WechatPayError):  # should_retry admits nothing else
                return
            wait = state.upcoming_sleep
            if deadline is not None and deadline.remaining() <= wait:
                raise DeadlineExceeded("no time left for another attempt", exc) from exc
            if self.budget is not None and not self.budget.try_acquire():
                raise RetryBudgetExhausted("retry budget exhausted", exc) from exc
            seen_unknown.append(exc.outcome_unknown)

        retrying = Retrying(
            sleep=self.sleep,
            stop=stop_after_attempt(self.max_attempts),
            wait=lambda s: self.backoff(s.attempt_number,
                                        s.outcome.exception() if s.outcome else None),
            retry=retry_if_exception(lambda e: self.should_retry(e, replay_safe)),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            for round_ in retrying:
                with round_:
                    result = attempt(round_.retry_state.attempt_number)
        except WechatPayError as exc:
            if any(seen_unknown) and not exc.outcome_unknown:
                exc.outcome_unknown = True
            raise
        return result


# ---------------------------------------------------------------------- circuit breaker


def _raise(exc: BaseException) -> None:
    raise exc


def _noop() -> None:
    return None


class Breaker:
    """pybreaker's state machine, without holding its lock across network I/O.

    `pybreaker.CircuitBreaker.call` runs the guarded function under the breaker's lock, which
    would serialise every API call of the process. Here the gate (`admit`) and the bookkeeping
    (`record`) go through pybreaker, the HTTP exchange happens in between, unlocked. In half-open
    state exactly one probe is admitted; its outcome closes or re-opens the circuit.
    """

    def __init__(self, circuit: pybreaker.CircuitBreaker,
                 clock: Callable[[], float] = time.monotonic):
        self.circuit = circuit
        self._clock = clock
        self._lock = threading.Lock()
        self._opened_at: float | None = None
        self._probe_out = False
        circuit.add_listener(_OpenedAt(self))
        if _is_business_error not in circuit.excluded_exceptions:
            # A merchant-built CircuitBreaker must not trip on our 4xx business answers either.
            circuit.add_excluded_exception(_is_business_error)  # type: ignore[arg-type]

    @property
    def state(self) -> str:
        return self.circuit.current_state

    def snapshot(self) -> dict[str, Any]:
        """For the merchant's health endpoint."""
        return {"state": self.state, "fail_counter": self.circuit.fail_counter,
                "fail_max": self.circuit.fail_max, "reset_timeout": self.circuit.reset_timeout}

    def admit(self) -> bool:
        """Raise CircuitOpen, or return whether this call is the half-open probe."""
        with self._lock:
            state = self.circuit.current_state
            if state == pybreaker.STATE_OPEN:
                if self._opened_at is None:  # opened elsewhere (shared storage): start timing now
                    self._opened_at = self._clock()
                if self._clock() - self._opened_at < self.circuit.reset_timeout:
                    raise CircuitOpen()
                self.circuit.half_open()
                state = pybreaker.STATE_HALF_OPEN
            if state == pybreaker.STATE_HALF_OPEN:
                if self._probe_out:
                    raise CircuitOpen("circuit half-open: a probe request is in flight")
                self._probe_out = True
                return True
            return False

    def record(self, exc: BaseException | None, probe: bool = False) -> None:
        """Feed one attempt's outcome to pybreaker (business 4xx count as success)."""
        try:
            if exc is None:
                self.circuit.call(_noop)
            else:
                self.circuit.call(_raise, exc)
        except Exception as raised:  # noqa: BLE001 - bookkeeping only; the caller re-raises
            if raised is not exc and not isinstance(raised, pybreaker.CircuitBreakerError):
                log.debug("breaker bookkeeping raised %r", raised)
        finally:
            if probe:
                with self._lock:
                    self._probe_out = False

    def _on_open(self) -> None:
        self._opened_at = self._clock()


class _OpenedAt(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: Breaker):
        self.owner = owner

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        if new_state is not None and new_state.name == pybreaker.STATE_OPEN:
            self.owner._on_open()


def _is_business_error(exc: BaseException) -> bool:
    return not is_provider_failure(exc)


def make_breaker(fail_max: int = 5, reset_timeout: float = 30, name: str = "wechatpay",
                 clock: Callable[[], float] = time.monotonic) -> Breaker:
    """A breaker counting only provider failures (5xx, 429, transport, untrusted replies)."""
    circuit = pybreaker.CircuitBreaker(
        fail_max=fail_max, reset_timeout=reset_timeout, name=name,
        exclude=[_is_business_error],
        throw_new_error_on_trip=False,
    )
    return Breaker(circuit, clock=clock)


def as_breaker(breaker: Breaker | pybreaker.CircuitBreaker | None) -> Breaker:
    if breaker is None:
        return make_breaker()
    if isinstance(breaker, pybreaker.CircuitBreaker):
        return Breaker(breaker)
    return breaker
