"""Durable callback delivery (reference §6.1, §6.5): claim, build, POST, record, reschedule.

- Claims: due rows (PENDING, `next_attempt_us` <= now on the sandbox clock, no live lease) are
  leased in one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)` on PostgreSQL, the
  same UPDATE in a BEGIN IMMEDIATE transaction on SQLite: one dispatcher at a time per row,
  across threads, processes and hosts.
- Leases (`CALLBACK_LEASE_S`, default 60 s) run on the wall clock: they bound network work, like
  the deadline, not business time. A clock advance never steals an in-flight delivery; a frozen
  clock never keeps a dead process's lease alive. A crash between claim and record lets the
  lease expire: the notification goes out again, it is never lost.
- Schedule (outbox.after_attempt): retry k is due at first attempt + sum(gaps[:k]); after the
  last, FAILED. `CALLBACK_RETRY_SCHEDULE`: "generic" (default, 15 retries, 24 h 4 m), "payscore"
  (9 retries), or durations like [15, "3m"] or "15s,30s" (reference §6.5, outbox.SCHEDULES).
- Success is a 2xx answer within the deadline (`CALLBACK_TIMEOUT_S`, default 5 s, wall time).

Background (`start`, one per server process): a thread claims due rows for the POST workers
(`CALLBACK_WORKERS`, default 8), polling every `CALLBACK_POLL_S`; another records finished
attempts in group commits. `dispatch_due()` delivers everything due now and waits (the world
runner calls it after each clock step); `drain()` repeats it until nothing is due. Settings come
from the app config, else from `PAYSCORE_<KEY>` environment variables.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from sandbox import db, errors
from sandbox.callbacks import envelope, outbox
from sandbox.callbacks.delivery import Claimed, Delivery, Outcome, Posted
from sandbox.callbacks.envelope import Attempt

log = logging.getLogger("payscore.callbacks")

S = 1_000_000
RECORD_BATCH = 256
RECORD_LINGER_S = 0.005  # a commit costs more than waiting this long for company


@dataclass(frozen=True)
class Settings:
    schedule_us: tuple[int, ...]
    timeout_s: float = 5.0
    lease_s: float = 60.0
    poll_s: float = 0.2
    workers: int = 8

    @classmethod
    def from_config(cls, config) -> Settings:
        def get(key: str, default):
            return config[key] if key in config else os.environ.get(f"PAYSCORE_{key}", default)

        return cls(outbox.parse_schedule(get("CALLBACK_RETRY_SCHEDULE", None)),
                   float(get("CALLBACK_TIMEOUT_S", 5.0)), float(get("CALLBACK_LEASE_S", 60.0)),
                   float(get("CALLBACK_POLL_S", 0.2)), max(1, int(get("CALLBACK_WORKERS", 8))))


def _wall_us() -> int:
    return time.time_ns() // 1000


class Dispatcher:
    def __init__(self, sandbox, owner_id: str | None = None):
        self.sb = sandbox
        self.owner_id = (owner_id or
                         f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}")[:64]
        self.settings = Settings.from_config(sandbox.config)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._local = threading.local()
        self._stop = threading.Event()
        self._slots = threading.Condition()
        self._in_flight = 0
        self._threads: list[threading.Thread] = []
        self._finished: queue.Queue = queue.Queue()
        self._pin = outbox.pin_sqlite(sandbox.engine)

    # ------------------------------------------------------------ claiming

    def _lease_until(self) -> int:
        return _wall_us() + int(self.settings.lease_s * S)

    def claim(self, limit: int) -> list[Claimed]:
        """Lease up to `limit` due notifications to this dispatcher."""
        with self.sb.engine.connect() as conn:  # a cheap look first: idle polls take no lock
            if not outbox.any_due(conn, self.sb.clock.now_us(conn), _wall_us()):
                return []
        with db.write_tx(self.sb.engine) as conn:
            now_us = self.sb.clock.now_us(conn)
            rows = outbox.claim(conn, self.owner_id, limit, now_us, _wall_us(),
                                self._lease_until())
            merchants = outbox.merchants_for(conn, {r.mchid for r in rows})
        return [Claimed(r, merchants.get(r.mchid), now_us) for r in rows]

    # ------------------------------------------------------------ one attempt, no database

    def post(self, item: Claimed) -> Posted:
        """Build (with the build hooks), run the send hooks, POST the copies; never raises."""
        row = item.row
        resource = dict(row.resource or {})
        delivery = Delivery(
            notification_id=row.id, mchid=row.mchid, event_type=row.event_type,
            summary=row.summary, original_type=row.original_type, url=row.url,
            order_pk=row.order_pk, out_order_no=resource.get("out_order_no"),
            openid=resource.get("openid"), plaintext=resource, create_time_us=row.created_us,
            timestamp_s=item.now_us // S, attempt=row.attempts + 1, scenario_id=row.scenario_id)
        try:
            return Posted(item, delivery, self._send(item, delivery))
        except Exception as exc:  # a bug in a hook or here must not stop the dispatcher
            log.exception("building callback %s failed", row.id)
            return Posted(item, delivery,
                          [Attempt(error=f"sandbox error: {type(exc).__name__}: {exc}"[:255])])

    def _send(self, item: Claimed, delivery: Delivery) -> list[Attempt] | None:
        m = item.merchant
        if m is None:
            return [Attempt(error="merchant unknown: cannot encrypt the callback")]
        envelope.build(delivery, apiv3_key=m.apiv3_key.encode(), signing_mode=m.signing_mode,
                       migration_ratio=m.migration_ratio or 0.0, signer=self.sb.signer,
                       build_hooks=list(self.sb.hooks.build))
        for hook in list(self.sb.hooks.send):
            hook(delivery)
        if delivery.hold_us > 0:
            return None
        if delivery.copies <= 0:
            return [Attempt(error="dropped")]
        if delivery.copies > 1 and delivery.concurrent:
            with ThreadPoolExecutor(delivery.copies) as copies:
                return list(copies.map(lambda _: self._post(delivery), range(delivery.copies)))
        if delivery.copies > 1:  # sequential copies may outlast the lease: extend it
            until = self._lease_until() + int(delivery.copies * self.settings.timeout_s * S)
            with db.write_tx(self.sb.engine) as conn:
                outbox.extend_lease(conn, delivery.notification_id, self.owner_id, until)
        return [self._post(delivery) for _ in range(delivery.copies)]

    def _post(self, delivery: Delivery) -> Attempt:
        session = getattr(self._local, "session", None)  # one keep-alive session per thread
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # never route callbacks through an environment proxy
        return envelope.post(session, delivery, self.settings.timeout_s)

    # ------------------------------------------------------------ recording

    def record(self, posted: list[Posted]) -> list[Outcome]:
        """Write the attempts and the rows' next state, all in one transaction."""
        outcomes, work = [], []
        for p in posted:
            row, now_us, delivery = p.item.row, p.item.now_us, p.delivery
            attempts = p.attempts
            if attempts is None:  # held by a fault: the same attempt, later on the sandbox clock
                attempts = [Attempt(error=f"held for {delivery.hold_us / S:g} s")]
                values, status = {"next_attempt_us": now_us + delivery.hold_us}, "HELD"
            else:
                values = outbox.after_attempt(row, any(a.ok for a in attempts), p.item.one_shot,
                                              self.settings.schedule_us, now_us)
                status = values["status"]
            serial = delivery.headers.get("Wechatpay-Serial") or None
            fault = delivery.fault or ("drop" if delivery.copies <= 0 else None)
            records = [{"notification_id": row.id, "at_us": now_us, "status_code": a.status_code,
                        "latency_ms": a.latency_ms, "answer": a.answer, "error": a.error,
                        "fault": fault and fault[:64], "signature_serial": serial and serial[:64],
                        "scenario_id": delivery.scenario_id and delivery.scenario_id[:32]}
                       for a in attempts]
            work.append((row.id, values, records))
            outcomes.append(Outcome(row.id, status, records))
        with db.write_tx(self.sb.engine) as conn:
            outbox.finish_many(conn, self.owner_id, work)
        return outcomes

    def deliver(self, item: Claimed) -> Outcome:
        return self.record([self.post(item)])[0]

    # ------------------------------------------------------------ synchronous delivery

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.settings.workers,
                                                thread_name_prefix="callback-post")
            return self._pool

    def dispatch_due(self, limit: int = 100_000) -> list[Outcome]:
        """Deliver every notification due now on the sandbox clock; wait for the answers."""
        outcomes: list[Outcome] = []
        while len(outcomes) < limit:
            batch = self.claim(min(self.settings.workers * 4, limit - len(outcomes)))
            if not batch:
                break
            posted = [self.post(batch[0])] if len(batch) == 1 else \
                list(self._executor().map(self.post, batch))  # one alone needs no thread
            outcomes.extend(self.record(posted))
        return outcomes

    def drain(self, max_rounds: int = 20, wait_s: float | None = None) -> dict[str, int]:
        """dispatch_due until nothing is due, waiting (bounded) for rows in flight elsewhere."""
        counts: Counter = Counter()
        deadline = time.monotonic() + (self.settings.lease_s if wait_s is None else wait_s)
        rounds = 0
        while rounds < max_rounds:
            outcomes = self.dispatch_due()
            for outcome in outcomes:
                counts[outcome.status.lower()] += 1
                counts["attempts"] += len(outcome.attempts)
            if outcomes:
                rounds += 1
                continue
            with self.sb.engine.connect() as conn:
                busy = outbox.due_in_flight(conn, self.sb.clock.now_us(conn), _wall_us())
            if not busy or time.monotonic() > deadline:
                break
            time.sleep(0.02)  # another dispatcher is posting a due row: wait for its record
        with self.sb.engine.connect() as conn:
            counts["still_due"] = outbox.count_due(conn, self.sb.clock.now_us(conn))
        return {k: counts.get(k, 0) for k in
                ("attempts", "delivered", "pending", "failed", "held", "still_due")}

    # ------------------------------------------------------------ control operations

    def _lease_one(self, conn, notification_id: str, one_shot: bool = False) -> Claimed | None:
        now_us = self.sb.clock.now_us(conn)
        row = outbox.lease_one(conn, notification_id, self.owner_id, now_us, _wall_us(),
                               self._lease_until())
        if row is None:
            return None
        merchant = outbox.merchants_for(conn, {row.mchid}).get(row.mchid)
        return Claimed(row, merchant, now_us, one_shot)

    def redeliver(self, notification_id: str) -> Outcome:
        """Send one notification again now, whatever its status; it re-enters the schedule."""
        deadline = time.monotonic() + self.settings.timeout_s + 1
        while True:
            with db.write_tx(self.sb.engine) as conn:
                item = self._lease_one(conn, notification_id)
                if item is None and not outbox.exists(conn, notification_id):
                    raise errors.ResourceNotExists("通知不存在")
            if item is not None:
                return self.deliver(item)
            if time.monotonic() > deadline:  # in flight elsewhere: it answers within the deadline
                raise errors.InvalidRequest("该通知正在投递中，请稍后重试")
            time.sleep(0.05)

    def send_test(self, url: str, mchid: str, event_type: str) -> Outcome:
        """One signed, encrypted notification of `event_type` to any URL; no retries."""
        from sandbox import provision

        with db.write_tx(self.sb.engine) as conn:
            merchant = provision.merchant_row(conn, mchid)
            if merchant is None:
                raise errors.MchNotExists()
            now_us = self.sb.clock.now_us(conn)
            notification_id = outbox.enqueue(
                conn, mchid=mchid, event_type=event_type, url=url,
                resource=outbox.sample_resource(merchant, event_type, now_us), now_us=now_us)
            item = self._lease_one(conn, notification_id, one_shot=True)  # type: ignore[arg-type]
        return self.deliver(item)  # type: ignore[arg-type]

    # ------------------------------------------------------------ background operation

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._in_flight, self._finished = 0, queue.Queue()  # a restart forgets cancelled posts
        self._pin = self._pin or outbox.pin_sqlite(self.sb.engine)
        self._threads = [threading.Thread(target=target, daemon=True, name=f"callbacks-{name}")
                         for target, name in ((self._claim_loop, "claim"),
                                              (self._record_loop, "record"))]
        for thread in self._threads:
            thread.start()

    def _claim_loop(self) -> None:
        # Up to two rows per worker in flight: one posting, one queued behind it (well within
        # the lease); claiming only when a worker's worth is free keeps claims batched.
        capacity = 2 * self.settings.workers
        while not self._stop.is_set():
            with self._slots:
                free = capacity - self._in_flight
                if free < self.settings.workers and self._in_flight:
                    self._slots.wait(self.settings.poll_s)
                    continue
            try:
                batch = self.claim(free)
            except Exception:
                log.exception("claiming due callbacks failed")
                batch = []
            if not batch:
                self._stop.wait(self.settings.poll_s)
                continue
            with self._slots:
                self._in_flight += len(batch)
            for item in batch:
                self._executor().submit(lambda i=item: self._finished.put(self.post(i)))

    def _record_loop(self) -> None:
        while True:
            first = self._finished.get()
            if first is None:
                return
            batch = [first]
            linger = time.monotonic() + RECORD_LINGER_S
            while len(batch) < RECORD_BATCH:  # group commit: what finishes within the linger
                try:
                    more = self._finished.get(timeout=max(0.0, linger - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:
                    self._finished.put(None)
                    break
                batch.append(more)
            try:
                self.record(batch)
            except Exception:
                log.exception("recording %d callbacks failed; their leases will expire",
                              len(batch))
            with self._slots:
                self._in_flight -= len(batch)
                self._slots.notify_all()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; in-flight POSTs finish (each bounded by the deadline) and are recorded."""
        self._stop.set()
        with self._slots:
            self._slots.notify_all()
        if self._threads:
            self._threads[0].join(timeout)
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if self._threads:
            self._finished.put(None)
            self._threads[1].join(timeout)
            self._threads = []
        if self._pin is not None:
            self._pin.close()
            self._pin = None


def register_stop(sandbox, stop) -> None:
    """Add `stop` to extras["stop_callbacks"], which extras["stop_services"] runs (create_app
    installs that chain; a bare Sandbox gets one here)."""
    callbacks: list = sandbox.extras.setdefault("stop_callbacks", [])
    callbacks.append(stop)
    if "stop_services" not in sandbox.extras:
        def stop_services() -> None:
            for callback in list(callbacks):
                callback()

        sandbox.extras["stop_services"] = stop_services


def dispatcher_of(sandbox) -> Dispatcher:
    """The sandbox's dispatcher (one per app), created on first use; not started."""
    existing = sandbox.extras.get("dispatcher")
    if existing is None:
        candidate = Dispatcher(sandbox)
        existing = sandbox.extras.setdefault("dispatcher", candidate)
        if existing is candidate:
            register_stop(sandbox, candidate.stop)
        else:  # another thread won the race
            candidate.stop()
    return existing


def start_dispatcher(sandbox) -> Dispatcher:
    """Deliver callbacks in the background of this process (create_app, START_DISPATCHER)."""
    dispatcher = dispatcher_of(sandbox)
    dispatcher.start()
    return dispatcher
