"""Reconciliation: callbacks may be late or lost, so every open rental is checked by query.

For each rental with an open order, an unresolved outcome, a pending finish or an open refund:
query the order (a signed answer to our own request) and apply it; then finish what the truth
allows — re-send an unknown create/complete/cancel identically, complete a finish that was
waiting for the user's confirmation, ask WeChat to collect (pay) a deduction pending for too
long, and settle open refunds by query. Runs on `POST /driver/reconcile` and, every
`RECONCILE_INTERVAL` seconds, in a background thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from merchant_kit import ApiError, CreateRefundRequest, WechatPayError
from merchant_kit.reference import states, store
from merchant_kit.reference.apply import apply_refund, rental_view
from merchant_kit.reference.errors import StrictParsingError
from merchant_kit.reference.ops import NOT_FOUND, error_info, take
from merchant_kit.reference.provider import Tally
from merchant_kit.reference.rentals import Rentals

log = logging.getLogger(__name__)

BATCH = 1000  # rentals per run; the oldest-touched first, so a backlog drains over runs
# Compared before and after: a change in any of these is what `changed` counts.
_WATCHED = ("merchant_state", "charged", "refunded", "device_released", "finish_pending",
            "refunds")


class Reconciler:
    def __init__(self, rentals: Rentals, settings: Mapping[str, Any]):
        self.rentals = rentals
        self.bugs = rentals.bugs
        self.pay_after = float(settings.get("PAY_NUDGE_AFTER", 86400))
        self.pay_every = float(settings.get("PAY_NUDGE_INTERVAL", 86400))
        self.interval = float(settings.get("RECONCILE_INTERVAL", 60) or 0)
        self._run_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._followups = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rm-followup")
        self.runs = 0

    # ------------------------------------------------------------------ the job

    def reconcile(self) -> dict[str, int]:
        if "no_reconciliation" in self.bugs:
            return {"checked": 0, "changed": 0}
        with self._run_lock:  # the periodic job and the driver never run it twice at once
            self.rentals.clock.refresh()
            checked = changed = 0
            for rental_id in _due(self.rentals):
                checked += 1
                try:
                    changed += self.reconcile_rental(rental_id)
                except StrictParsingError:
                    raise  # the strict_parsing bug: the job crashes, as such a merchant's would
                except Exception:  # one rental's trouble must not stop the others
                    log.exception("reconciliation of rental %s failed", rental_id)
            self.runs += 1
            return {"checked": checked, "changed": changed}

    def reconcile_rental(self, rental_id: int) -> bool:
        r = self.rentals
        tally = Tally()
        with r.lock(rental_id):
            before = _watched(r, rental_id)
            rental = r.load(rental_id)
            skip_unpaid = "no_pay_sync_path" in self.bugs and rental.unknown_op is None \
                and rental.state == states.AWAITING_PAYMENT
            if rental.order_created and not skip_unpaid and (
                    rental.state in states.OPEN or rental.unknown_op):
                self._order(rental_id, tally)
            self._refunds(rental_id, tally)
            if tally.calls:
                r.write(rental_id, tally)
            return _watched(r, rental_id) != before

    def _order(self, rental_id: int, tally: Tally) -> None:
        r = self.rentals
        rental = r.load(rental_id)
        if rental.unknown_op == "create":
            r.resolve(rental_id, tally)  # query; not found: the identical create again
            return
        order = r.query(rental, tally)
        if order is NOT_FOUND:
            r.note(rental_id, "order_missing", out_order_no=rental.out_order_no)
            return
        if order is None:
            return
        r.apply(rental_id, order, "reconcile", tally)
        rental = r.load(rental_id)
        if rental.unknown_op == "complete" and rental.state == states.IN_SERVICE:
            r.complete(rental_id, tally)  # not completed after all: the same body again
        elif rental.unknown_op == "cancel" and rental.state not in states.FINAL:
            r.cancel(rental_id, tally)  # the same reason again
        elif rental.finish_pending and rental.state == states.IN_SERVICE \
                and rental.unknown_op is None:
            r.complete(rental_id, tally)  # the confirmation we waited for has happened
        elif rental.state == states.AWAITING_PAYMENT and rental.unknown_op is None:
            self._nudge(rental, tally)

    def _nudge(self, rental: Any, tally: Tally) -> None:
        """A deduction pending for long: ask WeChat to try collecting now (催收)."""
        r = self.rentals
        now = r.clock.now()
        since = rental.completed_at or rental.updated_at
        if now - since < self.pay_after:
            return
        if rental.last_pay_nudge_at is not None and now - rental.last_pay_nudge_at \
                < self.pay_every:
            return
        r.write(rental.id, tally, last_pay_nudge_at=now)
        try:
            r.provider.call(tally, lambda c: c.pay_service_order(rental.out_order_no))
        except WechatPayError as exc:
            r.write(rental.id, tally, last_error=error_info(exc))
            r.note(rental.id, "pay_requested", outcome=exc.code)
            return
        r.note(rental.id, "pay_requested", outcome="accepted")

    def _refunds(self, rental_id: int, tally: Tally) -> None:
        r = self.rentals
        with store.read_tx(r.engine) as conn:
            open_refunds = [x for x in store.refunds_of(conn, rental_id)
                            if x.status in store.OPEN_REFUNDS]
        for refund in open_refunds:
            try:
                found = r.provider.call(tally, lambda c, n=refund.out_refund_no:
                                        c.query_refund(n))
            except ApiError as exc:
                if exc.code == "RESOURCE_NOT_EXISTS" and refund.status == "UNKNOWN":
                    r.send_refund(rental_id, refund.out_refund_no,
                                  CreateRefundRequest.from_dict(refund.request), tally)
                continue
            except WechatPayError:
                continue
            now = r.clock.now()
            with store.write_tx(r.engine) as conn:
                row = store.get_refund(conn, refund.out_refund_no)
                apply_refund(conn, row, found.status, now, "reconcile")
                store.update_rental(conn, rental_id, now, calls=take(tally))

    # ------------------------------------------------------------------ after a callback

    def complete_soon(self, rental_id: int) -> None:
        """A confirmation arrived for a rental whose finish was waiting: complete it now."""
        self._followups.submit(self._complete_pending, rental_id)

    def _complete_pending(self, rental_id: int) -> None:
        r = self.rentals
        tally = Tally()
        try:
            with r.lock(rental_id):
                rental = r.load(rental_id)
                if rental.finish_pending and rental.state == states.IN_SERVICE \
                        and rental.unknown_op is None:
                    r.complete(rental_id, tally)
        except Exception:  # a background thread has nobody to raise to; reconcile retries
            log.exception("completing rental %s after its confirmation failed", rental_id)

    # ------------------------------------------------------------------ the periodic thread

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="rm-reconcile", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reconcile()
            except Exception:  # keep the job alive; the next run tries again
                log.exception("reconciliation run failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._followups.shutdown(wait=True, cancel_futures=False)

    def snapshot(self) -> dict[str, Any]:
        return {"interval_s": self.interval, "running": self._thread is not None
                and self._thread.is_alive(), "runs": self.runs,
                "enabled": "no_reconciliation" not in self.bugs}


def _due(rentals: Rentals) -> list[int]:
    with store.read_tx(rentals.engine) as conn:
        return store.rentals_to_reconcile(conn, BATCH)


def _watched(rentals: Rentals, rental_id: int) -> dict[str, Any]:
    with store.read_tx(rentals.engine) as conn:
        view = rental_view(conn, store.get_rental(conn, rental_id))
    return {k: view[k] for k in _WATCHED} | {"unknown": view["unknown_op"]}
