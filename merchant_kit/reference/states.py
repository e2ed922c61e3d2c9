"""The merchant's own view of a rental (the driver API's `merchant_state`, whose vocabulary is
`merchant_kit.driver_contract`) and how the provider's order maps onto it.

States only move forward: a late or out-of-order callback (USER_CONFIRM after USER_PAID) or a
stale query can never take a rental back. UNKNOWN is not stored as a state: it is shown while
an operation's outcome is unresolved (`unknown_op`), on top of the last state the merchant knew.
"""

from __future__ import annotations

from merchant_kit import ServiceOrder
from merchant_kit.driver_contract import (
    AWAITING_PAYMENT,
    CANCELLED,
    DEPOSIT_FALLBACK,
    EXPIRED,
    FAILED,
    IN_SERVICE,
    MERCHANT_STATES,
    PAID,
    PENDING_CONFIRM,
    UNKNOWN,
)
from merchant_kit.driver_contract import FINAL_STATES as FINAL

# The vocabulary is re-exported: the reference merchant's modules all say `states.PAID`.
__all__ = ["AWAITING_PAYMENT", "CANCELLED", "DEPOSIT_FALLBACK", "EXPIRED", "FAILED", "FINAL",
           "HOLDS_DEVICE", "IN_SERVICE", "MERCHANT_STATES", "OPEN", "PAID", "PENDING_CONFIRM",
           "UNKNOWN", "from_order", "merge", "rank", "settles"]

# Orders still moving at the provider: reconciliation queries these.
OPEN = (PENDING_CONFIRM, IN_SERVICE, AWAITING_PAYMENT)

_RANK = {PENDING_CONFIRM: 1, IN_SERVICE: 2, AWAITING_PAYMENT: 3}
_FINAL_RANK = 4

# The device is with the user (or reserved for them) only while the service runs.
HOLDS_DEVICE = frozenset({PENDING_CONFIRM, IN_SERVICE})


def rank(state: str) -> int:
    return _FINAL_RANK if state in FINAL else _RANK.get(state, 0)


def merge(current: str, truth: str) -> str:
    """The state after learning `truth`: forward only, and a final state is kept for good."""
    if current in FINAL:
        return current
    return truth if rank(truth) > rank(current) else current


def from_order(order: ServiceOrder) -> str | None:
    """The merchant state mirroring a provider order; None when the order says nothing usable.

    Tolerant on purpose: an unknown state_description is judged by the collection (WeChat may
    add descriptions), and an unknown state is ignored rather than guessed.
    """
    state, description = order.state, order.state_description
    collection = order.collection.state if order.collection is not None else None
    if state == "CREATED":
        return PENDING_CONFIRM
    if state == "DONE":
        return PAID
    if state == "REVOKED":
        return CANCELLED
    if state == "EXPIRED":
        return EXPIRED
    if state == "DOING":
        if description == "MCH_COMPLETE" or collection == "USER_PAYING":
            return AWAITING_PAYMENT
        if collection == "USER_PAID":
            return PAID
        if description == "USER_CONFIRM":
            return IN_SERVICE
    return None


def settles(unknown_op: str | None, truth: str) -> bool:
    """Whether knowing the order is in `truth` answers the open question of `unknown_op`."""
    if unknown_op == "create":
        return True  # the order exists: create happened
    if unknown_op == "complete":
        return truth in (AWAITING_PAYMENT, PAID, CANCELLED, EXPIRED)
    if unknown_op == "cancel":
        return truth in FINAL
    return unknown_op is None
