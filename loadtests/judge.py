"""What "a failed flow" means, as pure functions over the evidence of one flow.

The same definitions serve a Locust run, the gray release in live mode and the gates report
(design.md: "a failed flow means the same thing in a scenario, a Locust run and the gates
report"). A flow is one user's rental (or, against the sandbox directly, one service order's
life) from the first call to the settled end state. It fails when, once the run has settled
(callbacks drained, reconciliation run):

* ``error``        the user saw an error (a driver 4xx/5xx, or an unrecoverable API error);
* ``lost``         the merchant handed out an order number the provider does not know;
* ``duplicated``   more than one provider order exists for the one rental;
* ``billed_twice`` the user paid more than once, or more than the amount owed;
* ``wrong_state``  the final state differs from what the user's behaviour implies, or the
                   merchant's view contradicts the provider's (e.g. PAID vs. still paying);
* ``stuck``        the merchant's view is still non-final (UNKNOWN, PENDING_CONFIRM, ...).

HTTP-level failures (a 500 the merchant retried through, a reset) are counted on the flow but
are not flow failures: surviving them is the point. The vocabulary is the driver API's
`merchant_state` (design.md, "The merchant driver API"), from `merchant_kit.driver_contract`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from merchant_kit.driver_contract import (
    AWAITING_PAYMENT,
    CANCELLED,
    DEPOSIT_FALLBACK,
    EXPIRED,
    FINAL_STATES,
    IN_SERVICE,
    MERCHANT_STATES,
    PAID,
    PENDING_CONFIRM,
    UNKNOWN,
)

# A user who cannot pay leaves the order awaiting payment for good: WeChat keeps collecting
# (reference §2.5), so that state is a legitimate settled end for such a user.
SETTLED_STATES = FINAL_STATES | {AWAITING_PAYMENT}

CATEGORIES = ("error", "lost", "duplicated", "billed_twice", "wrong_state", "stuck")

# Provider (sandbox) order triple -> the merchant state a correct merchant shows for it.
_PROVIDER_TO_MERCHANT = {
    ("CREATED", None, None): PENDING_CONFIRM,
    ("DOING", "USER_CONFIRM", None): IN_SERVICE,
    ("DOING", "MCH_COMPLETE", "USER_PAYING"): AWAITING_PAYMENT,
    ("DONE", None, "USER_PAID"): PAID,
    ("DONE", None, None): PAID,  # completed at 0 fen: nothing to collect
    ("REVOKED", None, None): CANCELLED,
    ("EXPIRED", None, None): EXPIRED,
}


def merchant_state_for(state: str | None, state_description: str | None = None,
                       collection_state: str | None = None) -> str:
    """The merchant state that mirrors a provider order; UNKNOWN for anything unexpected."""
    if state == "DONE":
        state_description = None  # WeChat may still echo the last description on DONE
    return _PROVIDER_TO_MERCHANT.get((state, state_description, collection_state), UNKNOWN)


@dataclass
class FlowRecord:
    """What one simulated user did and saw; written by the Locust users and the gray driver."""

    flow_id: str
    target: str  # sandbox | driver
    openid: str | None = None
    mode: str = "need_confirm"  # need_confirm | pre_authorised
    intent: str = "pay"  # pay | decline | ignore | cannot_pay | pay_late | cancel
    amount: int = 0  # the finish amount in fen (what the user owes)
    expected: tuple[str, ...] = (PAID,)  # acceptable settled merchant states
    rental_id: str | None = None
    out_order_no: str | None = None
    seen_states: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # what the user saw go wrong
    http_failures: int = 0  # failed HTTP calls along the way (retried or not)
    started: float = 0.0  # wall seconds
    ended: float = 0.0
    interrupted: bool = False  # stopped by the end of the run before it finished

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["expected"] = list(self.expected)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FlowRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["expected"] = tuple(known.get("expected") or (PAID,))
        return cls(**known)


@dataclass(frozen=True)
class ProviderOrder:
    """One provider order as the sandbox holds it after the run settled."""

    out_order_no: str
    state: str
    state_description: str | None = None
    collection_state: str | None = None
    total_amount: int | None = None
    paid_amount: int = 0
    payments: int = 0  # collection details (successful deductions / syncs)
    refunded: int = 0

    @property
    def merchant_state(self) -> str:
        return merchant_state_for(self.state, self.state_description, self.collection_state)


@dataclass(frozen=True)
class MerchantView:
    """GET {driver}/rentals/{id} after settling."""

    merchant_state: str
    out_order_no: str | None = None
    charged: int = 0
    refunded: int = 0
    device_released: bool | None = None


@dataclass(frozen=True)
class FlowEvidence:
    merchant: MerchantView | None  # None against the sandbox directly (no merchant)
    orders: tuple[ProviderOrder, ...] = ()  # every provider order belonging to the flow
    missing_order: bool = False  # the flow's out_order_no is unknown to the provider
    callbacks: frozenset[str] | None = None  # event types a callback sink received, if watched


@dataclass(frozen=True)
class FlowVerdict:
    flow_id: str
    ok: bool
    category: str | None  # first failure category, None when ok
    reasons: tuple[str, ...]
    final_state: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge_flow(flow: FlowRecord, evidence: FlowEvidence) -> FlowVerdict:
    """Judge one settled flow; reasons are listed in CATEGORIES order."""
    found: list[tuple[str, str]] = []
    if flow.errors:
        found.append(("error", "; ".join(flow.errors[:3])))
    if evidence.missing_order:
        found.append(("lost", f"order {flow.out_order_no} unknown to the provider"))
    if len(evidence.orders) > 1:
        numbers = ", ".join(o.out_order_no for o in evidence.orders)
        found.append(("duplicated", f"{len(evidence.orders)} provider orders: {numbers}"))
    paid_total = sum(o.paid_amount for o in evidence.orders)
    payments = sum(o.payments for o in evidence.orders)
    if payments > 1 or (flow.amount and paid_total > flow.amount):
        found.append(("billed_twice", (f"{payments} payments totalling {paid_total} fen "
                                      f"for {flow.amount} fen owed")))
    final = _final_state(evidence)
    if evidence.merchant is not None:
        found.extend(_merchant_vs_provider(flow, evidence.merchant, evidence.orders))
    if final not in SETTLED_STATES or (final == AWAITING_PAYMENT
                                       and final not in flow.expected):
        found.append(("stuck", f"still {final} after settling"))
    elif final not in flow.expected:
        found.append(("wrong_state", f"ended {final}, expected {'/'.join(flow.expected)}"))
    if (evidence.callbacks is not None and final == PAID and flow.amount > 0
            and "PAYSCORE.USER_PAID" not in evidence.callbacks):
        found.append(("wrong_state", "paid, but no USER_PAID callback reached the merchant"))
    found.sort(key=lambda item: CATEGORIES.index(item[0]))
    return FlowVerdict(flow.flow_id, not found, found[0][0] if found else None,
                       tuple(f"{cat}: {text}" for cat, text in found), final)


def _final_state(evidence: FlowEvidence) -> str:
    if evidence.merchant is not None:
        return evidence.merchant.merchant_state
    if len(evidence.orders) == 1:
        return evidence.orders[0].merchant_state
    return UNKNOWN


def _merchant_vs_provider(flow: FlowRecord, view: MerchantView,
                          orders: tuple[ProviderOrder, ...]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if view.merchant_state not in MERCHANT_STATES:
        out.append(("wrong_state", (f"merchant_state {view.merchant_state!r} is not in the "
                                   "driver vocabulary")))
    mine = [o for o in orders if o.out_order_no == view.out_order_no]
    if view.out_order_no and mine:
        provider = mine[0].merchant_state
        if provider != view.merchant_state and view.merchant_state in MERCHANT_STATES:
            out.append(("wrong_state", (f"merchant says {view.merchant_state}, provider order "
                                       f"is {provider}")))
        if view.charged != mine[0].paid_amount:
            out.append(("wrong_state", (f"merchant charged {view.charged} fen, provider "
                                       f"collected {mine[0].paid_amount} fen")))
    elif view.out_order_no is None and orders and view.merchant_state == DEPOSIT_FALLBACK:
        # A fallback rental must not leave a live Pay Score order behind.
        live = [o for o in orders if o.merchant_state in (PENDING_CONFIRM, IN_SERVICE,
                                                           AWAITING_PAYMENT)]
        if live:
            out.append(("wrong_state", (f"deposit fallback, but order {live[0].out_order_no} "
                                       "is still open")))
    if view.merchant_state in (CANCELLED, EXPIRED) and view.device_released is False:
        out.append(("wrong_state", f"{view.merchant_state} but the device was never released"))
    return out


@dataclass
class RunTally:
    """Flow verdicts of a run, summed."""

    flows: int = 0
    failed: int = 0
    interrupted: int = 0
    http_failures: int = 0
    by_category: Counter = field(default_factory=Counter)
    final_states: Counter = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"flows": self.flows, "failed": self.failed, "interrupted": self.interrupted,
                "http_failures": self.http_failures, "by_category": dict(self.by_category),
                "final_states": dict(self.final_states), "examples": self.examples}


def tally(flows: Iterable[FlowRecord], verdicts: Mapping[str, FlowVerdict],
          max_examples: int = 20) -> RunTally:
    """Sum verdicts; interrupted flows are counted apart, never as passes or failures."""
    out = RunTally()
    for flow in flows:
        out.http_failures += flow.http_failures
        if flow.interrupted:
            out.interrupted += 1
            continue
        verdict = verdicts[flow.flow_id]
        out.flows += 1
        out.final_states[verdict.final_state] += 1
        if not verdict.ok:
            out.failed += 1
            out.by_category[verdict.category] += 1
            if len(out.examples) < max_examples:
                out.examples.append({"flow_id": flow.flow_id, "rental_id": flow.rental_id,
                                     "out_order_no": flow.out_order_no,
                                     "reasons": list(verdict.reasons)})
    return out


def orphan_orders(known_out_order_nos: Iterable[str],
                  created_out_order_nos: Iterable[str]) -> list[str]:
    """Provider orders the merchant created that no flow knows of (duplicates or leaks).

    Each one is at least one failed flow even when it cannot be attributed to a user.
    """
    known = set(known_out_order_nos)
    return sorted(set(created_out_order_nos) - known)
