"""The evidence of one scenario run: plain data, so judges stay pure and tests can handcraft it.

Where each part comes from (all over HTTP, collected by the runner):

- `requests`: the sandbox's request log for the merchant during the run (`GET /sandbox/requests
  ?mchid=&since_id=`): operation, out_order_no, status, code, the fault taken, `at_us` on the
  sandbox clock. Each step also keeps the rows that arrived while it ran.
- `orders`: the scenario user's provider orders (`GET /sandbox/api/orders?openid=` and
  `/sandbox/api/orders/{pk}`): state, description, collection state, amounts, and every
  callback with its delivery attempts, i.e. the merchant's answers (`attempt_log`).
- `rentals` / `StepRecord.view`: the merchant's own view (`GET {driver}/rentals/{id}`).
- `faults`: the scenario's faults as the sandbox reports them (`taken` counts, state).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Provider order (state, state_description, collection_state) -> the merchant state mirroring it.
_MIRROR = {
    ("CREATED", None): "PENDING_CONFIRM",
    ("DOING", "USER_CONFIRM"): "IN_SERVICE",
    ("DOING", "MCH_COMPLETE"): "AWAITING_PAYMENT",
    ("DONE", None): "PAID",
    ("REVOKED", None): "CANCELLED",
    ("EXPIRED", None): "EXPIRED",
}
DEFINITE = frozenset({"PENDING_CONFIRM", "IN_SERVICE", "AWAITING_PAYMENT", "PAID", "CANCELLED",
                      "EXPIRED"})
DRIVER_STEPS = frozenset({"rent", "finish", "cancel", "refund", "reconcile", "rent_burst",
                          "await_recovery"})


def mirror(order: dict[str, Any] | None) -> str | None:
    """The merchant state a correct merchant shows for this provider order."""
    if not order:
        return None
    state = order.get("state")
    description = None if state in ("CREATED", "DONE", "REVOKED", "EXPIRED") else \
        order.get("state_description")
    return _MIRROR.get((state, description))


def ok(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


@dataclass
class StepRecord:
    index: int
    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    status: int | None = None  # the HTTP status of the step's main call; None: no answer
    answer: Any = None
    error: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    view: dict[str, Any] | None = None  # the merchant's view of the current rental afterwards
    order: dict[str, Any] | None = None  # the provider order of that rental afterwards
    seconds: float = 0.0

    @property
    def calls_driver(self) -> bool:
        return self.kind in DRIVER_STEPS

    @property
    def label(self) -> str:
        return f"#{self.index} {self.kind}" + (f" {self.args.get('label')}"
                                               if self.kind == "snapshot" else "")


@dataclass
class Evidence:
    scenario: int
    tag: str  # the sandbox scenario_id of this run
    mchid: str
    openid: str
    steps: list[StepRecord] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    rentals: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    hints: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ the merchant

    @property
    def rental(self) -> dict[str, Any] | None:
        return self.rentals[-1] if self.rentals else None

    def snapshot(self, label: str) -> StepRecord | None:
        for step in self.steps:
            if step.kind == "snapshot" and step.args.get("label") == label:
                return step
        return None

    def steps_of(self, kind: str) -> list[StepRecord]:
        return [s for s in self.steps if s.kind == kind]

    # ------------------------------------------------------------ the provider

    def order(self, out_order_no: str | None = None) -> dict[str, Any] | None:
        """The provider order with that number, else the rental's, else the newest."""
        wanted = out_order_no or (self.rental or {}).get("out_order_no")
        for item in self.orders:
            if wanted and item["order"].get("out_order_no") == wanted:
                return item["order"]
        return self.orders[0]["order"] if self.orders and not wanted else None

    def requests_of(self, operation: str, out_order_no: str | None = None,
                    rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        return [r for r in (self.requests if rows is None else rows)
                if r.get("operation") == operation
                and (out_order_no is None or r.get("out_order_no") == out_order_no)]

    def faulted(self, effect: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if effect in (r.get("fault") or "").split(",")]

    def notifications(self, event_type: str | None = None) -> list[dict[str, Any]]:
        found = [n for item in self.orders for n in item.get("notifications", [])]
        return [n for n in found if event_type is None or n.get("event_type") == event_type]

    def attempts(self, event_type: str | None = None,
                 effect: str | None = None) -> list[dict[str, Any]]:
        """Delivery attempts (the merchant's answers), each with its notification's event."""
        out = []
        for n in self.notifications(event_type):
            for attempt in n.get("attempt_log") or []:
                if effect is None or effect in (attempt.get("fault") or "").split(","):
                    out.append({**attempt, "event_type": n.get("event_type"),
                                "notification_id": n.get("id")})
        return out

    def fault_state(self, effect: str) -> dict[str, Any]:
        for fault in self.faults:
            if fault.get("effect") == effect:
                return fault.get("state") or {}
        return {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(ev: Evidence) -> dict[str, Any]:
    """A few lines a person reads first: what happened, in counts."""
    ops: dict[str, int] = {}
    for r in ev.requests:
        ops[r.get("operation") or "?"] = ops.get(r.get("operation") or "?", 0) + 1
    rental = ev.rental or {}
    order = ev.order()
    return {
        "user": ev.openid,
        "requests": ops,
        "faults_taken": [f"{f['effect']} ×{f.get('taken', 0)}" for f in ev.faults],
        "orders": [o["order"].get("out_order_no") for o in ev.orders],
        "provider": None if order is None else "/".join(
            str(order.get(k)) for k in ("state", "state_description", "collection_state")
            if order.get(k)),
        "merchant": rental.get("merchant_state"),
        "charged": rental.get("charged"),
        "callbacks": [{"event": a["event_type"], "answer": a.get("status_code"),
                       "fault": a.get("fault")} for a in ev.attempts()],
    }
