"""Locust users: a merchant hitting the sandbox directly, and a user driving a merchant.

`SandboxMerchantUser` is a merchant: it signs every call with merchant_kit.protocol over the
exact bytes sent, verifies every 2xx, and on an unknown outcome (5xx, reset, untrusted reply)
re-sends the identical request or queries, as a correct merchant does. Flow mix: rental
(create -> user confirms -> complete -> deduction -> query) and query-only.

`DriverUser` is a customer of any merchant integration, driven through the driver API of
design.md: rent, confirm in the (simulated) Pay Score mini-program, finish, the provider's
deduction, and reading the merchant's own view. The merchant handles provider faults itself.

Request names are operationIds: the API's (create_service_order, ...), the control API's
(user_confirm, deduction_succeeded) and the driver API's (start_rental, finish_rental,
get_rental).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

import gevent
from locust import FastHttpUser, task

from loadtests import judge
from loadtests.judge import FlowRecord
from loadtests.runconfig import RunConfig
from loadtests.signer import MerchantSigner, encode, query_target
from merchant_kit import protocol

ORDER = "/v3/payscore/serviceorder"
RETRIES = 4
_counter = itertools.count(1)


class Reply:
    """One HTTP exchange as a flow sees it."""

    def __init__(self, status: int, data: Any = None, error: str | None = None):
        self.status, self.data, self.error = status, data, error

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.error is None

    @property
    def code(self) -> str | None:
        return self.data.get("code") if isinstance(self.data, dict) else None

    def describe(self) -> str:
        return self.error or f"{self.status} {self.code or ''}".strip()


def _json(content: bytes | None) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def _retryable(status: int) -> bool:
    return status == 0 or status == 429 or status >= 500


class _Base(FastHttpUser):
    abstract = True
    cfg: RunConfig
    rng: random.Random

    def wait_time(self) -> float:
        return self.rng.uniform(self.cfg.wait_min, self.cfg.wait_max)

    def on_start(self) -> None:
        self.cfg = RunConfig.from_options(self.environment.parsed_options)
        self.rng = random.Random(f"{self.cfg.seed}:{os.getpid()}:{next(_counter)}")
        self.prefix = f"L{self.cfg.run_id[-8:]}{os.getpid():07d}"
        self.signer = _signer(self.cfg)

    def run_flow(self, target: str, steps: Callable[[FlowRecord], None]) -> None:
        """One new flow through `steps`, recorded however it ends; the end of the run stopping
        it midway marks it interrupted (the judge counts it apart, neither passed nor failed)."""
        number = f"{self.prefix}{next(_counter):08d}"
        flow = FlowRecord(flow_id=number, target=target,
                          openid=self.rng.choice(self.cfg.openids),
                          amount=self.rng.randint(self.cfg.min_amount, self.cfg.max_amount),
                          started=time.time())
        try:
            steps(flow)
        except gevent.GreenletExit:
            flow.interrupted = True
            raise
        finally:
            flow.ended = time.time()
            flowlog = getattr(self.environment, "payscore_flowlog", None)
            if flowlog is not None:
                flowlog.record(flow)

    # ------------------------------------------------------------ plain JSON calls

    def plain(self, name: str, method: str, url: str, body: Any = None,
              flow: FlowRecord | None = None, expected: tuple[int, ...] = (200, 201),
              retries: int = 1) -> Reply:
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        reply = Reply(0, error="not sent")
        for attempt in range(retries):
            with self.client.request(method, url, name=name, data=data, headers=headers,
                                     catch_response=True) as resp:
                status = resp.status_code or 0
                reply = Reply(status, _json(resp.content if status else None))
                if status in expected:
                    resp.success()
                    return reply
                reply.error = f"{name}: {status} {_short(resp)}"
                resp.failure(reply.error)
            if flow is not None:
                flow.http_failures += 1
            if not _retryable(status) or attempt == retries - 1:
                break
            gevent.sleep(0.05 * 2 ** attempt)
        return reply

    def control(self, name: str, path: str, body: Any = None,
                flow: FlowRecord | None = None) -> Reply:
        return self.plain(name, "POST", f"{self.cfg.sandbox_url}/sandbox{path}", body or {},
                          flow, expected=(200,), retries=RETRIES)

    def deduct(self, flow: FlowRecord) -> Reply:
        """WeChat's deduction succeeds now; 400 (already paid by the world) is no failure."""
        mchid = self.signer.mchid if self.signer is not None else self.cfg.mchid
        return self.plain("deduction_succeeded", "POST",
                          f"{self.cfg.sandbox_url}/sandbox/merchants/{mchid}/orders/"
                          f"{flow.out_order_no}/deduction", {}, flow, expected=(200, 400),
                          retries=RETRIES)

    # ------------------------------------------------------------ signed v3 calls

    def signed(self, name: str, method: str, path: str, body: dict | None = None,
               query: dict | None = None, flow: FlowRecord | None = None,
               retries: int = RETRIES) -> Reply:
        """A signed call; identical re-sends on an unknown outcome, verified 2xx only."""
        data = encode(body) if body is not None else b""
        target = query_target(path, query or {})
        url = self.cfg.sandbox_url + target
        reply = Reply(0, error="not sent")
        for attempt in range(retries):
            headers = self.signer.signed_headers(method, target, data)
            with self.client.request(method, url, name=name, data=data, headers=headers,
                                     catch_response=True) as resp:
                status = resp.status_code or 0
                content = resp.content if status else None
                if 200 <= status < 300:
                    untrusted = self.signer.verify(resp.headers, content or b"")
                    if untrusted is None:
                        resp.success()
                        return Reply(status, _json(content))
                    reply = Reply(status, None, f"{name}: untrusted reply ({untrusted})")
                else:
                    reply = Reply(status, _json(content), f"{name}: {status} {_short(resp)}")
                resp.failure(reply.error)
            if flow is not None:
                flow.http_failures += 1
            if not (_retryable(status) or 200 <= status < 300) or attempt == retries - 1:
                break
            gevent.sleep(0.05 * 2 ** attempt)
        return reply


def _short(resp: Any) -> str:
    error = getattr(resp, "error", None)
    if error is not None and not getattr(resp, "status_code", 0):
        return type(error).__name__
    try:
        return (resp.text or "")[:120]
    except (UnicodeDecodeError, AttributeError, TypeError, ValueError):  # unreadable: absent
        return ""


_SIGNERS: dict[str, MerchantSigner] = {}


def _signer(cfg: RunConfig) -> MerchantSigner | None:
    """One signer per process and merchant.json (loading the key costs milliseconds)."""
    if not cfg.merchant_json:
        return None
    signer = _SIGNERS.get(cfg.merchant_json)
    if signer is None:
        signer = MerchantSigner.from_file(cfg.merchant_json)
        signer.sync_clock(cfg.sandbox_url)
        _SIGNERS[cfg.merchant_json] = signer
    return signer


class SandboxMerchantUser(_Base):
    """A merchant integration under load, talking to the sandbox directly."""

    def on_start(self) -> None:
        super().on_start()
        if self.signer is None:
            raise RuntimeError("the sandbox target needs a merchant.json")
        self.orders: list[str] = []

    @task(3)
    def rental(self) -> None:
        self.run_flow("sandbox", self._rental)

    def _rental(self, flow: FlowRecord) -> None:
        s = self.signer
        assert s is not None
        flow.out_order_no = flow.flow_id
        create = {"out_order_no": flow.flow_id, **s.ids(), "service_introduction": "充电宝租借",
                  "time_range": {"start_time": "OnAccept"},
                  "risk_fund": {"name": "ESTIMATE_ORDER_COST", "amount": self.cfg.deposit},
                  "notify_url": self.cfg.notify_url or "https://merchant.example/notify",
                  "need_user_confirm": True}
        reply = self.signed("create_service_order", "POST", ORDER, create, flow=flow)
        if not reply.ok:
            return self._resolve(flow, reply, {judge.PENDING_CONFIRM})
        flow.seen_states.append(judge.merchant_state_for(reply.data.get("state")))
        self.orders.append(flow.flow_id)
        del self.orders[:-200]
        base = f"/merchants/{s.mchid}/orders/{flow.flow_id}"
        reply = self.control("user_confirm", base + "/confirm", {"openid": flow.openid}, flow)
        confirmed_at = time.time()
        if not reply.ok and not self._resolve(flow, reply, {judge.IN_SERVICE}):
            return
        # end_time may not precede the confirmation's second: leave our clock error room.
        gap = 2 * s.clock_error_s - (time.time() - confirmed_at)
        if gap > 0:
            gevent.sleep(gap)
        reply = self._complete(flow)
        if not reply.ok and not self._resolve(flow, reply, {judge.AWAITING_PAYMENT}):
            return
        reply = self.deduct(flow)
        if reply.status != 200 and not self._resolve(flow, reply, {judge.PAID}):
            return
        self._query(flow.flow_id, flow)

    def _complete(self, flow: FlowRecord) -> Reply:
        """Complete with end_time in [the confirmation second, the call].

        Both bounds are whole seconds on the sandbox clock, which we know to within
        `clock_error_s`; should that estimate still be wrong, the definite PARAM_ERROR on
        end_time (nothing was committed) is retried once, in the next second.
        """
        reply = Reply(0, error="not sent")
        for _ in range(2):
            end = protocol.payscore_time(dt.datetime.fromtimestamp(
                self.signer.now_exact() - self.signer.clock_error_s, tz=dt.UTC))
            body = {**self.signer.ids(),
                    "post_payments": [{"name": "租借费用", "amount": flow.amount,
                                       "description": "充电宝租借", "count": 1}],
                    "total_amount": flow.amount, "time_range": {"end_time": end}}
            reply = self.signed("complete_service_order", "POST",
                                f"{ORDER}/{flow.flow_id}/complete", body, flow=flow)
            detail = (reply.data or {}).get("detail") if isinstance(reply.data, dict) else None
            if reply.ok or reply.code != "PARAM_ERROR" or not isinstance(detail, dict) \
                    or detail.get("field") != "/time_range/end_time":
                return reply
            gevent.sleep(1.0 - self.signer.now_exact() % 1.0 + 0.06)
        return reply

    def _query(self, out_order_no: str, flow: FlowRecord | None = None) -> Reply:
        reply = self.signed("query_service_order", "GET", ORDER,
                            query={"out_order_no": out_order_no, **self.signer.ids()},
                            flow=flow)
        if reply.ok and flow is not None:
            flow.seen_states.append(judge.merchant_state_for(
                reply.data.get("state"), reply.data.get("state_description"),
                (reply.data.get("collection") or {}).get("state")))
        return reply

    _PROGRESS = (judge.PENDING_CONFIRM, judge.IN_SERVICE, judge.AWAITING_PAYMENT, judge.PAID)

    def _resolve(self, flow: FlowRecord, failed: Reply, reached: set[str]) -> bool:
        """After a failed step, ask the provider whether the step happened anyway.

        True when the order is at or past the step (e.g. the world's own deduction got there
        first, or a reset hid a success); otherwise the failure is what the user saw.
        """
        query = self._query(flow.flow_id, flow)
        if query.ok:
            state = flow.seen_states[-1]
            target = min(self._PROGRESS.index(s) for s in reached)
            if state in self._PROGRESS and self._PROGRESS.index(state) >= target:
                return True
        flow.errors.append(failed.describe())
        return False

    @task(1)
    def query_only(self) -> None:
        if not self.orders:
            return self.rental()
        self._query(self.rng.choice(self.orders))


class DriverUser(_Base):
    """A customer renting from a merchant integration, end to end through its driver API."""

    @task
    def rental(self) -> None:
        self.run_flow("driver", self._rental)

    def driver(self, name: str, method: str, path: str, body: Any, flow: FlowRecord,
               expected: tuple[int, ...] = (200,)) -> Reply:
        # A driver call is the user's own tap: no retry, a failure is what the user sees.
        reply = self.plain(name, method, f"{self.cfg.driver_url}{path}", body, flow, expected)
        if not reply.ok:
            flow.errors.append(reply.describe())
        elif isinstance(reply.data, dict) and reply.data.get("merchant_state"):
            flow.seen_states.append(reply.data["merchant_state"])
        return reply

    def _rental(self, flow: FlowRecord) -> None:
        rent = {"openid": flow.openid, "mode": "need_confirm", "deposit": self.cfg.deposit}
        reply = self.driver("start_rental", "POST", "/rentals", rent, flow, (201, 200))
        if not reply.ok:
            return
        flow.rental_id = str(reply.data.get("rental_id"))
        flow.out_order_no = reply.data.get("out_order_no")
        if flow.out_order_no is None:
            return  # deposit fallback: the merchant decided; the judge checks it was right
        if self.cfg.mchid:
            # 400: the sandbox world's own simulated user confirmed first (it acts after its
            # confirm delay), which is the same tap; waiting for IN_SERVICE settles it.
            confirmed = self.plain("user_confirm", "POST",
                                   f"{self.cfg.sandbox_url}/sandbox/merchants/{self.cfg.mchid}"
                                   f"/orders/{flow.out_order_no}/confirm",
                                   {"openid": flow.openid}, flow, expected=(200, 400),
                                   retries=RETRIES)
            confirmed_at = time.time()
            if confirmed.status not in (200, 400):
                flow.errors.append(confirmed.describe())
                return
            self._await_state(flow, {judge.IN_SERVICE})
            # A rental lasts a moment at least (see gray_live.MIN_RENTAL_S).
            gevent.sleep(max(0.0, self.cfg.min_rental_s - (time.time() - confirmed_at)))
        reply = self.driver("finish_rental", "POST", f"/rentals/{flow.rental_id}/finish",
                            {"amount": flow.amount}, flow)
        if not reply.ok:
            return
        if self.cfg.mchid and reply.data.get("merchant_state") == judge.AWAITING_PAYMENT:
            # A 400 means the world's own deduction came first; settling tells either way.
            self.deduct(flow)
        self.driver("get_rental", "GET", f"/rentals/{flow.rental_id}", None, flow)

    def _await_state(self, flow: FlowRecord, wanted: set[str]) -> None:
        """Wait (bounded, wall time) for the merchant to see a callback's effect."""
        deadline = time.monotonic() + self.cfg.confirm_wait_s
        while time.monotonic() < deadline:
            reply = self.plain("get_rental", "GET",
                               f"{self.cfg.driver_url}/rentals/{flow.rental_id}", None, flow)
            if reply.ok and reply.data.get("merchant_state") in wanted:
                flow.seen_states.append(reply.data["merchant_state"])
                return
            gevent.sleep(0.1)
