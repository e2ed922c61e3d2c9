"""The merchant driver API contract: its version and the `merchant_state` vocabulary.

The driver API (design.md, "The merchant driver API") is how the scenario runner, the load tests
and the gray release drive any merchant integration over HTTP, in any language. Every rental
answer carries a `merchant_state`: the merchant's own view of the rental, not the provider's
order state. The reference merchant speaks this vocabulary and the load-test judge reads it back
from whichever merchant it drives, so both take it from here: a state added or renamed on one
side cannot silently go unrecognised on the other.
"""

from __future__ import annotations

__all__ = [
    "AWAITING_PAYMENT",
    "CANCELLED",
    "DEPOSIT_FALLBACK",
    "DRIVER_VERSION",
    "EXPIRED",
    "FAILED",
    "FINAL_STATES",
    "IN_SERVICE",
    "MERCHANT_STATES",
    "PAID",
    "PENDING_CONFIRM",
    "UNKNOWN",
]

# Answered by GET {driver}/health; bumped when a call or a field changes incompatibly.
DRIVER_VERSION = "1"

# The order exists at the provider; the user has not confirmed it yet.
PENDING_CONFIRM = "PENDING_CONFIRM"
# The user confirmed (or was pre-authorised): the rental is running.
IN_SERVICE = "IN_SERVICE"
# The merchant completed the order; the provider is still collecting the amount.
AWAITING_PAYMENT = "AWAITING_PAYMENT"
PAID = "PAID"
# Cancelled by the merchant, or declined/ignored by the user.
CANCELLED = "CANCELLED"
# The provider expired the order before it was completed.
EXPIRED = "EXPIRED"
# No Pay Score order: the provider found the user ineligible, so a deposit was taken.
DEPOSIT_FALLBACK = "DEPOSIT_FALLBACK"
# The rental ended without an order: creating one failed for good.
FAILED = "FAILED"
# An operation's outcome is not known yet; the merchant is finding out.
UNKNOWN = "UNKNOWN"

MERCHANT_STATES = (PENDING_CONFIRM, IN_SERVICE, AWAITING_PAYMENT, PAID, CANCELLED, EXPIRED,
                   DEPOSIT_FALLBACK, FAILED, UNKNOWN)
# Nothing moves a rental out of these: no later callback, query or retry changes them.
FINAL_STATES = frozenset({PAID, CANCELLED, EXPIRED, DEPOSIT_FALLBACK, FAILED})
