"""Refunds of a paid rental: against the collection's transaction_id, with a stable
out_refund_no (`<out_order_no>R<n>`) so any re-send is the same refund, never a second one.
"""

from __future__ import annotations

from typing import Any

from merchant_kit import CreateRefundRequest, RefundAmount, UntrustedResponse, WechatPayError
from merchant_kit.reference import states, store
from merchant_kit.reference.apply import apply_refund
from merchant_kit.reference.errors import BadRequest, Conflict
from merchant_kit.reference.ops import RentalBase, error_info, take
from merchant_kit.reference.provider import Tally


class Refunds(RentalBase):
    def refund_rental(self, rental_id: int, amount: int,
                      reason: str | None = None) -> dict[str, Any]:
        tally = Tally()
        with self.lock(rental_id):
            rental = self.load(rental_id)
            if rental.state == states.PAID and not rental.transaction_id:
                self.refresh(rental_id, tally, "refund_lookup")
                rental = self.load(rental_id)
            if rental.state != states.PAID or rental.unknown_op:
                raise Conflict(f"rental is {rental.state}; only a paid rental is refunded",
                               "NOT_PAID")
            with store.read_tx(self.engine) as conn:
                done = store.refunds_of(conn, rental_id)
            committed = sum(r.amount for r in done if r.status not in ("CLOSED", "FAILED"))
            if amount > rental.charged - committed:
                raise BadRequest(f"at most {rental.charged - committed} fen can be refunded",
                                 "AMOUNT_EXCEEDS_CHARGED")
            if not rental.transaction_id:
                raise Conflict("the payment's transaction is not known yet", "NO_TRANSACTION")
            number = f"{rental.out_order_no}R{len(done) + 1}"
            request = CreateRefundRequest(
                transaction_id=rental.transaction_id, out_refund_no=number,
                reason=(reason or "充电宝租借退款")[:80], notify_url=self.notify_url(),
                amount=RefundAmount(refund=amount, total=rental.transaction_amount or
                                    rental.charged))
            now = self.clock.now()
            with store.write_tx(self.engine) as conn:
                conn.execute(store.refunds.insert().values(
                    out_refund_no=number, rental_id=rental_id,
                    transaction_id=rental.transaction_id, amount=amount,
                    total=request.amount.total, status="UNKNOWN", request=request.to_dict(),
                    created_at=now, updated_at=now))
                store.note(conn, rental_id, now, "refund_requested", out_refund_no=number,
                           amount=amount)
            self.send_refund(rental_id, number, request, tally)
        return self.get_rental(rental_id)

    def send_refund(self, rental_id: int, number: str, request: CreateRefundRequest,
                    tally: Tally) -> None:
        try:
            status = self.provider.call(tally, lambda c: c.create_refund(request)).status
        except UntrustedResponse as exc:
            if "trust_unsigned_replies" not in self.bugs:
                return self._refund_outcome(rental_id, number, None, tally, exc)
            status = "PROCESSING"
        except WechatPayError as exc:
            return self._refund_outcome(rental_id, number, None, tally, exc)
        return self._refund_outcome(rental_id, number, status, tally)

    def _refund_outcome(self, rental_id: int, number: str, status: str | None, tally: Tally,
                        exc: WechatPayError | None = None) -> None:
        now = self.clock.now()
        with store.write_tx(self.engine) as conn:
            refund = store.get_refund(conn, number)
            if exc is not None and not exc.outcome_unknown:
                apply_refund(conn, refund, "FAILED", now, "refund_refused")
            elif status is not None:
                apply_refund(conn, refund, status, now, "refund_reply")
            store.update_rental(conn, rental_id, now, calls=take(tally),
                                last_error=error_info(exc) if exc else None)
