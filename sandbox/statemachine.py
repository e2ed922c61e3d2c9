"""The one transition table for service orders (reference §3.2, §3.3).

Nothing sets an order's state except `apply` below: a backend operation names the event, the
table says whether it is legal from the current state and what the next state is, or which
WeChat error the caller gets.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox import errors

# A state is the unambiguous triple (state, state_description, collection_state).
State = tuple[str, str | None, str | None]

CREATED: State = ("CREATED", None, None)
CONFIRMED: State = ("DOING", "USER_CONFIRM", None)
COMPLETED: State = ("DOING", "MCH_COMPLETE", "USER_PAYING")
PAID: State = ("DONE", None, "USER_PAID")
DONE_FREE: State = ("DONE", None, None)  # completed with total 0: nothing to collect
REVOKED: State = ("REVOKED", None, None)
EXPIRED: State = ("EXPIRED", None, None)

ALL_STATES = (CREATED, CONFIRMED, COMPLETED, PAID, DONE_FREE, REVOKED, EXPIRED)


def name(state: State) -> str:
    return "/".join(part for part in state if part)


@dataclass(frozen=True)
class Rule:
    target: State | None  # None: legal, state unchanged (e.g. modify, pay)
    note: str = ""


# (event, from-state) -> Rule. Missing pairs are illegal; ILLEGAL says which error.
TABLE: dict[tuple[str, State], Rule] = {
    ("create_confirmed", None): Rule(CONFIRMED, "no-confirm create for an authorised user"),  # type: ignore[dict-item]
    ("create", None): Rule(CREATED, "need-confirm create"),  # type: ignore[dict-item]
    ("direct_complete", None): Rule(COMPLETED, "create+complete, something to collect"),  # type: ignore[dict-item]
    ("direct_complete_free", None): Rule(DONE_FREE, "create+complete with total 0"),  # type: ignore[dict-item]
    ("user_confirm", CREATED): Rule(CONFIRMED),
    ("user_decline", CREATED): Rule(REVOKED, "user declined on the confirm page"),
    ("expire", CREATED): Rule(EXPIRED, "30 days untouched"),
    ("cancel", CREATED): Rule(REVOKED),
    ("cancel", CONFIRMED): Rule(REVOKED),
    ("complete", CONFIRMED): Rule(COMPLETED),
    ("complete_free", CONFIRMED): Rule(DONE_FREE),
    ("complete_reentry", COMPLETED): Rule(None, "identical re-entry"),
    ("modify", COMPLETED): Rule(None, "amount lowered"),
    ("pay", COMPLETED): Rule(None, "merchant-initiated collection attempt"),
    ("deduction_succeeded", COMPLETED): Rule(PAID),
    ("deduction_failed", COMPLETED): Rule(None, "WeChat keeps retrying"),
    ("sync_paid", COMPLETED): Rule(PAID, "paid outside Pay Score"),
}

_CANCEL_AFTER_COMPLETE = ("PARAM_ERROR", "当前订单状态不满足撤销条件", "271316592")


def _illegal(event: str, current: State) -> errors.PayScoreError:
    """The error WeChat gives for `event` in `current` (reference §3.3 footnotes a-f)."""
    state = current[0]
    if state == "REVOKED":
        return errors.OrderCanceled("单据已取消", internal_code="271302333")
    if state == "DONE" and event in ("cancel", "complete", "complete_free"):
        return errors.OrderDone("订单已完成")
    if event == "cancel" and current == COMPLETED:
        _code, message, internal = _CANCEL_AFTER_COMPLETE
        return errors.ParamError(message, internal_code=internal)
    if event in ("modify", "pay", "sync_paid"):
        return errors.InvalidRequest("仅服务订单支付状态为待支付时，才可使用此能力",
                                     internal_code="271316657")
    if event in ("complete", "complete_free") and current == CREATED:
        return errors.InvalidRequest("当前订单状态不合法（确认状态）", internal_code="271302332")
    return errors.InvalidRequest("当前订单状态不合法", internal_code="271302262")


def next_state(event: str, current: State) -> State:
    """The state after `event`, or raise the WeChat error for an illegal operation."""
    rule = TABLE.get((event, current))
    if rule is None:
        raise _illegal(event, current)
    return current if rule.target is None else rule.target


def is_legal(event: str, current: State) -> bool:
    return (event, current) in TABLE


def state_of(row) -> State:
    return (row.state, row.state_description, row.collection_state)
