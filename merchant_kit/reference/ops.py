"""What every rental operation shares: the rental's lock, reading it, writing to it, applying
the provider's answers, asking the provider for the truth, and the small helpers around them.

`Rentals` (rentals.py: start, finish, cancel) and `Refunds` (refunds.py) build on `RentalBase`.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.engine import Engine, Row

from merchant_kit import ApiError, Collection, MerchantConfig, ServiceOrder, WechatPayError
from merchant_kit.reference import store
from merchant_kit.reference.apply import apply_order, release_device, rental_view
from merchant_kit.reference.clock import MerchantClock
from merchant_kit.reference.errors import NotFound, strict_check
from merchant_kit.reference.provider import Provider, Tally

CST = dt.timezone(dt.timedelta(hours=8))
# Messages WeChat gives when the *user* may not use Pay Score (reference §3.3): offer a deposit.
INELIGIBLE_MESSAGES = ("综合评估未通过", "存在待处理的超时未支付订单")
BLIND_RETRIES = 3  # blind_retry_new_order_no
COMPLETE_LOOP = 20  # complete_retry_loop
EXTRA_MINUTE_FEE = 100  # recomplete_on_lost_reply: the "recomputed" bill is a minute longer
NOT_FOUND = object()  # the provider says the order does not exist


def payscore_time(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, CST).strftime("%Y%m%d%H%M%S")


def is_ineligible(exc: WechatPayError) -> bool:
    if exc.outcome_unknown or not isinstance(exc, ApiError):
        return False
    if exc.code == "NO_AUTH":
        return True
    return exc.code == "INVALID_REQUEST" and any(m in (exc.message or "")
                                                 for m in INELIGIBLE_MESSAGES)


def error_info(exc: WechatPayError) -> dict[str, Any]:
    return {"code": exc.code, "status": exc.status, "message": exc.message,
            "operation": exc.operation, "request_id": exc.request_id,
            "outcome_unknown": exc.outcome_unknown}


class RentalBase:
    def __init__(self, engine: Engine, provider: Provider, clock: MerchantClock,
                 config: MerchantConfig, bugs: frozenset[str], settings: Mapping[str, Any],
                 notify_url: Callable[[], str]):
        self.engine, self.provider, self.clock = engine, provider, clock
        self.config, self.bugs, self.settings = config, bugs, settings
        self.notify_url = notify_url
        self._locks = [threading.RLock() for _ in range(64)]

    def lock(self, rental_id: int) -> threading.RLock:
        return self._locks[rental_id % len(self._locks)]

    # ------------------------------------------------------------------ reading

    def load(self, rental_id: int) -> Row:
        with store.read_tx(self.engine) as conn:
            row = store.get_rental(conn, rental_id)
        if row is None:
            raise NotFound(f"no rental {rental_id}")
        return row

    def get_rental(self, rental_id: int) -> dict[str, Any]:
        with store.read_tx(self.engine) as conn:
            row = store.get_rental(conn, rental_id)
            if row is None:
                raise NotFound(f"no rental {rental_id}")
            return rental_view(conn, row)

    def get_rental_timeline(self, rental_id: int) -> dict[str, Any]:
        with store.read_tx(self.engine) as conn:
            if store.get_rental(conn, rental_id) is None:
                raise NotFound(f"no rental {rental_id}")
            return {"rental_id": str(rental_id), "events": store.timeline(conn, rental_id)}

    def check(self, order: ServiceOrder) -> ServiceOrder:
        """strict_parsing: what a merchant with a closed-world parser would crash on."""
        if "strict_parsing" in self.bugs:
            strict_check(order, f"order {order.out_order_no}")
        return order

    def write(self, rental_id: int, tally: Tally, **values: Any) -> None:
        with store.write_tx(self.engine) as conn:
            store.update_rental(conn, rental_id, self.clock.now(), calls=take(tally),
                                **values)

    def apply(self, rental_id: int, order: ServiceOrder, source: str, tally: Tally,
              **extra: Any) -> str:
        with store.write_tx(self.engine) as conn:
            rental = store.get_rental(conn, rental_id, for_update=True)
            applied = apply_order(conn, rental, self.check(order), self.clock.now(), source,
                                  self.bugs, calls=take(tally), **extra)
        return applied.state

    def note(self, rental_id: int | None, kind: str, **detail: Any) -> None:
        with store.write_tx(self.engine) as conn:
            store.note(conn, rental_id, self.clock.now(), kind, **detail)

    def end_without_order(self, rental_id: int, tally: Tally, state: str,
                          reason: dict[str, Any]) -> None:
        now = self.clock.now()
        with store.write_tx(self.engine) as conn:
            rental = store.get_rental(conn, rental_id, for_update=True)
            values: dict[str, Any] = {}
            release_device(conn, rental, now, values, reason=state)
            store.update_rental(conn, rental_id, now, calls=take(tally), state=state,
                                order_created=False, unknown_op=None, finish_pending=False,
                                last_error=reason, **values)
            store.note(conn, rental_id, now, "state", from_state=rental.state, to_state=state,
                       source="create_refused", reason=reason)

    # ------------------------------------------------------------------ the truth, by query

    def query(self, rental: Row, tally: Tally) -> Any:
        """The provider's order, NOT_FOUND, or None when the provider could not be asked."""
        try:
            return self.check(self.provider.call(
                tally, lambda c: c.query_service_order(rental.out_order_no)))
        except ApiError as exc:
            if exc.code == "ORDER_NOT_EXIST":
                return NOT_FOUND
            self.write(rental.id, tally, last_error=error_info(exc))
        except WechatPayError as exc:
            self.write(rental.id, tally, last_error=error_info(exc))
        return None

    def refresh(self, rental_id: int, tally: Tally, source: str) -> str | None:
        order = self.query(self.load(rental_id), tally)
        if isinstance(order, ServiceOrder):
            return self.apply(rental_id, order, source, tally)
        return None


def take(tally: Tally) -> int:
    calls, tally.calls = tally.calls, 0
    return calls


def order_no(rental_id: int) -> str:
    return f"PB{rental_id:08d}{secrets.token_hex(5).upper()}"


def assumed(out_order_no: str | None, state: str, description: str | None = None,
            collection: str | None = None) -> ServiceOrder:
    """What a merchant that trusts any 2xx believes happened."""
    return ServiceOrder(out_order_no=out_order_no, state=state, state_description=description,
                        collection=Collection(state=collection) if collection else None)
