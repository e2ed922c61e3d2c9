"""Rentals: start, finish, cancel — each a write-ahead record, one provider call, and the answer
applied through `apply.apply_order`.

Write-ahead: before a call whose outcome could be lost, the rental records what it is about to
do (`unknown_op`, the exact request). If the reply never comes, the rental shows UNKNOWN and
reconciliation resolves it by query and, if needed, an identical re-send: never a second order
number, never a different complete body. Calls for one rental are serialised by a lock; a
callback may land in between, which is fine because applying is forward-only.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Row

from merchant_kit import (
    ApiError,
    CompleteServiceOrderRequest,
    CreateServiceOrderRequest,
    Device,
    Payment,
    RiskFund,
    ServiceOrder,
    TimeRange,
    UntrustedResponse,
    WechatPayError,
)
from merchant_kit.reference import states, store
from merchant_kit.reference.errors import BadRequest, Conflict
from merchant_kit.reference.ops import (
    BLIND_RETRIES,
    COMPLETE_LOOP,
    EXTRA_MINUTE_FEE,
    NOT_FOUND,
    assumed,
    error_info,
    is_ineligible,
    order_no,
    payscore_time,
)
from merchant_kit.reference.provider import Tally
from merchant_kit.reference.refunds import Refunds

log = logging.getLogger(__name__)


class Rentals(Refunds):
    # ------------------------------------------------------------------ start

    def start_rental(self, openid: str, mode: str, deposit: int, service_id: str | None = None,
                     notify_url: str | None = None) -> dict[str, Any]:
        if service_id and service_id != self.config.service_id:
            raise BadRequest(f"this merchant runs service {self.config.service_id}")
        now = self.clock.now()
        with store.write_tx(self.engine) as conn:
            rental_id = conn.execute(store.rentals.insert().values(
                openid=openid, mode=mode, deposit=deposit, service_id=self.config.service_id,
                order_created=True, state=states.PENDING_CONFIRM, unknown_op="create",
                created_at=now, updated_at=now)).inserted_primary_key[0]
            device_id = store.reserve_device(conn, rental_id, now)
            store.update_rental(conn, rental_id, now, out_order_no=order_no(rental_id),
                                device_id=device_id)
            store.note(conn, rental_id, now, "rental_started", openid=openid, mode=mode,
                       deposit=deposit, device_id=device_id)
        tally = Tally()
        with self.lock(rental_id):
            if mode == "pre_authorised" and self._authorised(openid, tally) is False:
                self._refused(rental_id, tally, {"code": "UNAVAILABLE", "message":
                                                 "user has not authorised the service"})
            else:
                rental = self.load(rental_id)
                request = self._create_request(rental, notify_url or self.notify_url())
                self.write(rental_id, tally, create_request=request.to_dict())
                self._create(rental_id, request, tally, blind=True)
        return self.get_rental(rental_id)

    def _authorised(self, openid: str, tally: Tally) -> bool | None:
        """Pre-authorised mode needs an AVAILABLE user; None = could not tell (create decides)."""
        try:
            answer = self.provider.call(tally, lambda c: c.query_user_service_state(openid))
        except WechatPayError as exc:
            log.info("user-service-state unknown (%s); create will tell", exc)
            return None
        return answer.use_service_state == "AVAILABLE"

    def _create_request(self, rental: Row, notify_url: str) -> CreateServiceOrderRequest:
        pre_authorised = rental.mode == "pre_authorised"
        return CreateServiceOrderRequest(
            out_order_no=rental.out_order_no,
            service_introduction=self.settings.get("SERVICE_INTRODUCTION", "充电宝租借"),
            post_payments=[Payment(name="充电宝租借费", description="每小时1元，不足1小时按1小时计")],
            time_range=TimeRange(start_time="OnAccept"),
            risk_fund=RiskFund(name=self.settings.get("RISK_FUND_NAME", "ESTIMATE_ORDER_COST"),
                               amount=rental.deposit),
            attach=f"rental={rental.id}",
            notify_url=notify_url,
            openid=rental.openid,
            need_user_confirm=False if pre_authorised else None,
            device=Device(start_device_id=rental.device_id))

    def _create(self, rental_id: int, request: CreateServiceOrderRequest, tally: Tally,
                blind: bool = False) -> None:
        numbers_left = BLIND_RETRIES if blind and "blind_retry_new_order_no" in self.bugs else 0
        while True:  # bounded by numbers_left
            try:
                order = self.provider.call(tally, lambda c, r=request: c.create_service_order(r))
            except UntrustedResponse as exc:
                if "trust_unsigned_replies" not in self.bugs:
                    return self._create_failed(rental_id, exc, tally)
                confirmed = request.need_user_confirm is False
                order = assumed(request.out_order_no, "DOING" if confirmed else "CREATED",
                                "USER_CONFIRM" if confirmed else None)
            except WechatPayError as exc:
                if numbers_left:
                    numbers_left -= 1
                    request = self._renumber(rental_id, request, exc, tally)
                    continue
                return self._create_failed(rental_id, exc, tally)
            self.apply(rental_id, order, "create_reply", tally, last_error=None)
            return None

    def _renumber(self, rental_id: int, request: CreateServiceOrderRequest,
                  exc: WechatPayError, tally: Tally) -> CreateServiceOrderRequest:
        number = order_no(rental_id)
        self.note(rental_id, "create_renumbered", old=request.out_order_no, new=number)
        request.out_order_no = number
        self.write(rental_id, tally, out_order_no=number, create_request=request.to_dict(),
                   last_error=error_info(exc))
        return request

    def _create_failed(self, rental_id: int, exc: WechatPayError, tally: Tally) -> None:
        if exc.outcome_unknown:
            self.write(rental_id, tally, unknown_op="create", last_error=error_info(exc))
            self.note(rental_id, "outcome_unknown", operation="create_service_order")
        elif is_ineligible(exc):
            self._refused(rental_id, tally, error_info(exc))
        else:
            self.end_without_order(rental_id, tally, states.FAILED, error_info(exc))

    def _refused(self, rental_id: int, tally: Tally, reason: dict[str, Any]) -> None:
        state = states.FAILED if "no_deposit_fallback" in self.bugs else states.DEPOSIT_FALLBACK
        self.end_without_order(rental_id, tally, state, reason)

    # ------------------------------------------------------------------ finish

    def finish_rental(self, rental_id: int, amount: int) -> dict[str, Any]:
        tally = Tally()
        with self.lock(rental_id):
            rental = self.load(rental_id)
            if rental.unknown_op == "complete" or rental.state in (states.AWAITING_PAYMENT,
                                                                    states.PAID):
                if rental.finish_amount == amount:
                    return self.get_rental(rental_id)  # the same finish again
                raise Conflict(f"already finished with {rental.finish_amount} fen",
                               "ALREADY_FINISHED")
            if rental.state in states.FINAL:
                raise Conflict(f"rental is {rental.state}", "NOT_IN_SERVICE")
            if rental.finish_pending and rental.finish_amount != amount:
                raise Conflict(f"a finish for {rental.finish_amount} fen is pending",
                               "FINISH_PENDING")
            self.write(rental_id, tally, finish_amount=amount, finish_pending=True)
            self.note(rental_id, "finish_requested", amount=amount)
            if rental.unknown_op is None:
                self.complete(rental_id, tally)
        return self.get_rental(rental_id)

    def complete(self, rental_id: int, tally: Tally) -> None:
        """Complete with the recorded finish amount; the caller holds the rental's lock."""
        rental = self.load(rental_id)
        if rental.complete_request is not None:
            request = CompleteServiceOrderRequest.from_dict(rental.complete_request)
        else:
            request = self._complete_request(rental.finish_amount or 0)
        self.write(rental_id, tally, complete_request=request.to_dict(), unknown_op="complete")
        try:
            order = self.provider.call(tally, lambda c: c.complete_service_order(
                rental.out_order_no, request))
        except UntrustedResponse as exc:
            if "trust_unsigned_replies" not in self.bugs:
                return self._complete_failed(rental, request, exc, tally)
            order = assumed(rental.out_order_no, "DOING", "MCH_COMPLETE", "USER_PAYING")
        except WechatPayError as exc:
            return self._complete_failed(rental, request, exc, tally)
        self.apply(rental_id, order, "complete_reply", tally, last_error=None)
        return None

    def _complete_request(self, amount: int) -> CompleteServiceOrderRequest:
        # The power bank is back now. WeChat wants start (the confirmation) <= end <= the call;
        # the body is built only once the order is confirmed, and the clock never runs ahead.
        end = payscore_time(self.clock.now())
        return CompleteServiceOrderRequest(
            post_payments=[Payment(name="充电宝租借费", amount=amount, description="按小时计费")],
            total_amount=amount, time_range=TimeRange(end_time=end))

    def _complete_failed(self, rental: Row, request: CompleteServiceOrderRequest,
                         exc: WechatPayError, tally: Tally) -> None:
        rental_id = rental.id
        if exc.outcome_unknown:
            self.write(rental_id, tally, last_error=error_info(exc))
            self.note(rental_id, "outcome_unknown", operation="complete_service_order")
            if "recomplete_on_lost_reply" in self.bugs:
                self._recomplete(rental, request, tally)
            return
        definite = isinstance(exc, ApiError) and exc.status is not None \
            and 400 <= exc.status < 500 and exc.status != 429
        # Not applied either way: a refused body is rebuilt when the order is ready for it.
        self.write(rental_id, tally, unknown_op=None, complete_request=None,
                   last_error=error_info(exc))
        if not definite:  # not sent (breaker open) or rate limited: reconciliation retries
            self.note(rental_id, "finish_deferred", reason=exc.code)
            return
        state = self.refresh(rental_id, tally, "complete_refused")
        if state == states.PENDING_CONFIRM:
            self.note(rental_id, "finish_pending", reason="user has not confirmed yet")
            if "complete_retry_loop" in self.bugs:
                self._complete_loop(rental, request, tally)
        elif state == states.IN_SERVICE:  # refused for a business reason: nothing pending
            self.write(rental_id, tally, finish_pending=False, finish_amount=None)
            self.note(rental_id, "finish_refused", code=exc.code, message=exc.message)

    def _complete_loop(self, rental: Row, request: CompleteServiceOrderRequest,
                       tally: Tally) -> None:
        for _ in range(COMPLETE_LOOP):
            try:
                order = self.provider.call(tally, lambda c: c.complete_service_order(
                    rental.out_order_no, request))
            except WechatPayError:
                continue
            self.apply(rental.id, order, "complete_reply", tally)
            return
        self.write(rental.id, tally)

    def _recomplete(self, rental: Row, request: CompleteServiceOrderRequest,
                    tally: Tally) -> None:
        amount = request.total_amount + EXTRA_MINUTE_FEE
        again = self._complete_request(amount)
        self.write(rental.id, tally, finish_amount=amount, complete_request=again.to_dict())
        self.note(rental.id, "complete_resent", amount=amount)
        try:
            order = self.provider.call(tally, lambda c: c.complete_service_order(
                rental.out_order_no, again))
        except WechatPayError as exc:
            self.write(rental.id, tally, last_error=error_info(exc))
            return
        self.apply(rental.id, order, "complete_reply", tally, last_error=None)

    # ------------------------------------------------------------------ cancel

    def cancel_rental(self, rental_id: int, reason: str | None = None) -> dict[str, Any]:
        tally = Tally()
        with self.lock(rental_id):
            rental = self.load(rental_id)
            if rental.unknown_op in ("create", "complete"):
                self.resolve(rental_id, tally, resend_create=False)
                rental = self.load(rental_id)
            if rental.state == states.CANCELLED and not rental.unknown_op:
                return self.get_rental(rental_id)
            if rental.state in states.FINAL or rental.state == states.AWAITING_PAYMENT:
                raise Conflict(f"rental is {rental.state}; it can no longer be cancelled",
                               "CANNOT_CANCEL")
            if rental.cancel_reason is None:  # a re-send must repeat the same reason
                self.write(rental_id, tally, cancel_reason=(reason or "用户取消租借")[:30])
            self.cancel(rental_id, tally)
        return self.get_rental(rental_id)

    def cancel(self, rental_id: int, tally: Tally) -> None:
        rental = self.load(rental_id)
        reason = rental.cancel_reason or "用户取消租借"
        self.write(rental_id, tally, unknown_op="cancel", finish_pending=False)
        try:
            self.provider.call(tally, lambda c: c.cancel_service_order(rental.out_order_no,
                                                                       reason))
        except UntrustedResponse as exc:
            if "trust_unsigned_replies" not in self.bugs:
                return self._cancel_failed(rental_id, exc, tally)
        except WechatPayError as exc:
            return self._cancel_failed(rental_id, exc, tally)
        self.apply(rental_id, assumed(rental.out_order_no, "REVOKED"), "cancel_reply", tally,
                   last_error=None)
        return None

    def _cancel_failed(self, rental_id: int, exc: WechatPayError, tally: Tally) -> None:
        if exc.outcome_unknown:
            self.write(rental_id, tally, last_error=error_info(exc))
            self.note(rental_id, "outcome_unknown", operation="cancel_service_order")
            return
        self.write(rental_id, tally, unknown_op=None, last_error=error_info(exc))
        if isinstance(exc, ApiError) and exc.status is not None and 400 <= exc.status < 500:
            self.refresh(rental_id, tally, "cancel_refused")  # e.g. already DONE or EXPIRED

    def resolve(self, rental_id: int, tally: Tally, resend_create: bool = True) -> None:
        """Settle an unknown create/complete by query (caller holds the lock)."""
        rental = self.load(rental_id)
        order = self.query(rental, tally)
        if order is NOT_FOUND and rental.unknown_op == "create":
            if resend_create and rental.create_request:
                self.note(rental_id, "create_resent", out_order_no=rental.out_order_no)
                self._create(rental_id, CreateServiceOrderRequest.from_dict(
                    rental.create_request), tally)
            elif not resend_create:
                self.end_without_order(rental_id, tally, states.CANCELLED,
                                        {"code": "ORDER_NOT_EXIST", "message": "never created"})
        elif isinstance(order, ServiceOrder):
            self.apply(rental_id, order, "reconcile", tally)
