"""What the merchant does with a verified callback, and the careless handler of the bug switches.

The correct path is the kit's `CallbackHandler` (signature, serial, timestamp, decryption,
durable dedupe) calling `Callbacks.on_event` inside the dedupe transaction.

A validly signed callback that does not match the merchant's own order (unknown out_order_no,
another service_id or openid, a total that is not what we completed with, a paid amount above
the total) is NOT applied: it is written to the audit log as `callback_ignored` and answered
2xx. Decision: the signature proves WeChat sent it, so re-sending the same bytes cannot change
the verdict; a non-2xx would only buy ten retries over three hours of the same mismatch. Every
such rental is still open, so reconciliation re-reads the order by query (a signed answer to our
own request) and applies the truth from there. (Misrouted callbacks, another mchid or appid,
are refused with 400 by the kit itself before this code runs.)
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection, Engine, Row

from merchant_kit import (
    Event,
    MerchantConfig,
    NotificationStore,
    PermissionEvent,
    PlatformKeys,
    RefundEvent,
    ServiceOrder,
    ServiceOrderEvent,
    protocol,
)
from merchant_kit.notify import fail_body, typed_event
from merchant_kit.reference import states, store
from merchant_kit.reference.apply import apply_order, apply_refund
from merchant_kit.reference.clock import MerchantClock
from merchant_kit.reference.errors import strict_check

log = logging.getLogger(__name__)


class Callbacks:
    def __init__(self, config: MerchantConfig, clock: MerchantClock, bugs: frozenset[str]):
        self.config, self.clock, self.bugs = config, clock, bugs
        self._local = threading.local()

    # Rentals whose pending finish can go ahead once the callback's transaction has committed.
    def take_followups(self) -> list[int]:
        found = getattr(self._local, "followups", [])
        self._local.followups = []
        return found

    def on_event(self, event: Event, conn: Connection) -> None:
        now = self.clock.now()
        if isinstance(event, ServiceOrderEvent):
            self._order_event(event, conn, now)
        elif isinstance(event, RefundEvent):
            self._refund_event(event, conn, now)
        elif isinstance(event, PermissionEvent):
            p = event.permission
            store.note(conn, None, now, "permission_changed", openid=p.openid,
                       status=p.user_service_status, notification_id=event.id)
        else:
            store.note(conn, None, now, "callback_unhandled", event_type=event.event_type,
                       notification_id=event.id)

    def _order_event(self, event: ServiceOrderEvent, conn: Connection, now: float) -> None:
        order = event.order
        if "strict_parsing" in self.bugs:
            strict_check(order, f"callback {event.id}")
        rental = store.rental_by_order(conn, order.out_order_no) if order.out_order_no else None
        why = self._mismatch(rental, order)
        if why is not None and "ignore_amount_mismatch" not in self.bugs:
            store.note(conn, rental.id if rental is not None else None, now, "callback_ignored",
                       event_type=event.event_type, notification_id=event.id, reason=why,
                       out_order_no=order.out_order_no)
            log.warning("callback %s ignored: %s", event.id, why)
            return
        if rental is None:
            return  # ignore_amount_mismatch: nothing of ours to apply it to
        applied = apply_order(conn, rental, order, now, "callback", self.bugs,
                              callbacks=rental.callbacks + 1)
        store.note(conn, rental.id, now, "callback_applied", event_type=event.event_type,
                   notification_id=event.id, state=applied.state)
        if applied.complete_now:
            self._local.followups = [*getattr(self._local, "followups", []), rental.id]

    def _mismatch(self, rental: Row | None, order: ServiceOrder) -> str | None:
        if rental is None:
            return f"unknown out_order_no {order.out_order_no!r}"
        if not rental.order_created:
            return "no order was created for this rental"
        for name, mine in (("mchid", self.config.mchid), ("appid", self.config.appid),
                           ("service_id", rental.service_id), ("openid", rental.openid)):
            theirs = getattr(order, name)
            if theirs is not None and theirs != mine:
                return f"{name} {theirs!r} is not ours ({mine!r})"
        if states.from_order(order) in (states.AWAITING_PAYMENT, states.PAID):
            if rental.finish_amount is None:
                return "a completed/paid order for a rental that was never finished"
            if order.total_amount is not None and order.total_amount != rental.finish_amount:
                return (f"total_amount {order.total_amount} is not the "
                        f"{rental.finish_amount} fen we completed with")
            paid = order.collection.paid_amount if order.collection is not None else None
            if isinstance(paid, int) and paid > rental.finish_amount:
                return f"paid_amount {paid} exceeds the {rental.finish_amount} fen owed"
        return None

    def _refund_event(self, event: RefundEvent, conn: Connection, now: float) -> None:
        notice = event.refund
        refund = store.get_refund(conn, notice.out_refund_no) if notice.out_refund_no else None
        why = None
        if refund is None:
            why = f"unknown out_refund_no {notice.out_refund_no!r}"
        elif notice.transaction_id and notice.transaction_id != refund.transaction_id:
            why = f"transaction_id {notice.transaction_id!r} is not the refunded one"
        elif notice.amount is not None and notice.amount.refund not in (None, refund.amount):
            why = f"refund amount {notice.amount.refund} is not {refund.amount}"
        if why is not None and "ignore_amount_mismatch" not in self.bugs:
            store.note(conn, refund.rental_id if refund is not None else None, now,
                       "callback_ignored", event_type=event.event_type,
                       notification_id=event.id, reason=why)
            return
        if refund is None:
            return
        apply_refund(conn, refund, notice.refund_status, now, "callback")
        rental = store.get_rental(conn, refund.rental_id)
        store.update_rental(conn, rental.id, now, callbacks=rental.callbacks + 1)
        store.note(conn, rental.id, now, "callback_applied", event_type=event.event_type,
                   notification_id=event.id, out_refund_no=refund.out_refund_no)


# ---------------------------------------------------------------------- the careless handler

class NaiveCallbackHandler:
    """Hand-written instead of the kit's CallbackHandler, one step left out per bug switch:
    the signature, the timestamp window, the owner check, the durable dedupe key, or the error
    answer to a callback it cannot read."""

    def __init__(self, config: MerchantConfig, keys: PlatformKeys, notifications: NotificationStore,
                 engine: Engine, clock: MerchantClock, bugs: frozenset[str],
                 on_event: Callable[[Event, Connection], None]):
        self.config, self.keys, self.notifications = config, keys, notifications
        self.engine, self.clock, self.bugs, self.on_event = engine, clock, bugs, on_event
        self._seen: set[str] = set()

    def handle(self, headers: Any, body: bytes) -> tuple[int, bytes]:
        try:
            self._verify(headers, body)
            event = self._event(headers, body)
            if "ignore_amount_mismatch" not in self.bugs:
                payload = event.payload
                if payload.get("mchid") != self.config.mchid or (
                        event.event_type.startswith("PAYSCORE.")
                        and payload.get("appid") != self.config.appid):
                    return 400, fail_body("notification is for another merchant")
            self._process(event)
            return 204, b""
        except protocol.SignatureRejected as exc:
            return 401, fail_body(f"signature rejected: {exc.reason}")
        except (ValueError, KeyError, TypeError):
            if "ack_unprocessable_callbacks" in self.bugs:
                log.warning("unreadable callback acknowledged anyway")
                return 204, b""
            return 400, fail_body("malformed notification")
        except Exception:  # the merchant's own code broke: WeChat retries
            log.exception("callback handling failed")
            if "ack_unprocessable_callbacks" in self.bugs:
                return 204, b""
            return 500, fail_body("handler error")

    def _verify(self, headers: Any, body: bytes) -> None:
        if "no_callback_signature_check" in self.bugs:
            return
        if "no_callback_timestamp_check" in self.bugs:
            # Current keys, but the window is measured against the sender's own timestamp.
            self.keys.lookup(headers.get("Wechatpay-Serial"))  # refresh on an unknown serial
            stamp = str(headers.get("Wechatpay-Timestamp") or "")
            protocol.check_signed_message(headers, body, self.keys.snapshot(),
                                          int(stamp) if stamp.isdigit() else 0)
            return
        self.keys.verify(headers, body, now=self.clock.now())

    def _event(self, headers: Any, body: bytes) -> Event:
        envelope = json.loads(body)
        payload = json.loads(protocol.decrypt_resource(self.config.apiv3_key,
                                                       envelope["resource"]))
        if not isinstance(payload, dict):
            raise TypeError("resource is not an object")
        return typed_event(str(envelope["id"]), str(envelope["event_type"]), envelope, payload,
                           headers.get("Request-ID"))

    def _process(self, event: Event) -> None:
        def apply(conn: Connection) -> None:
            self.on_event(event, conn)

        if "no_dedupe" in self.bugs:
            with store.write_tx(self.engine) as conn:
                apply(conn)
        elif "in_memory_dedupe" in self.bugs:
            if event.id in self._seen:
                return
            with store.write_tx(self.engine) as conn:
                apply(conn)
            self._seen.add(event.id)  # after the work: two copies at once both get through
        else:
            self.notifications.process(event.id, event.event_type, apply)
