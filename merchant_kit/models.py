"""Typed request and response objects (reference §2, §6.4). Money is always int fen.

Requests serialise their fields in declaration order, omitting None (the API forbids null, §1.2).
Responses never fail on something new: unknown keys land in `extra`, unknown enum values are kept
as strings and reported by `unknown_values()` (and logged once when parsed).
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

log = logging.getLogger(__name__)

ORDER_STATES = frozenset({"CREATED", "DOING", "DONE", "REVOKED", "EXPIRED"})
ORDER_STATE_DESCRIPTIONS = frozenset({"USER_CONFIRM", "MCH_COMPLETE"})
COLLECTION_STATES = frozenset({"USER_PAYING", "USER_PAID"})
REFUND_STATUSES = frozenset({"SUCCESS", "CLOSED", "PROCESSING", "ABNORMAL"})
AUTHORIZATION_STATES = frozenset({"UNAVAILABLE", "AVAILABLE", "UNBINDUSER"})
SERVICE_STATES = frozenset({"AVAILABLE", "UNAVAILABLE"})


def _check_fen(owner: object, name: str) -> None:
    value = getattr(owner, name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{type(owner).__name__}.{name} must be int fen, got {value!r}")
    if value < 0:
        raise ValueError(f"{type(owner).__name__}.{name} must not be negative: {value}")


@dataclass(kw_only=True)
class Model:
    """Shared (de)serialisation. `extra`: unknown reply keys, or new request fields to send."""

    _enums: ClassVar[dict[str, frozenset[str]]] = {}
    # Checked when a request is serialised, never when a reply is parsed (replies must not crash).
    _fen_fields: ClassVar[tuple[str, ...]] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        for name in self._fen_fields:
            _check_fen(self, name)
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name != "extra" and value is not None:
                out[f.name] = _dump(value)
        out.update(getattr(self, "extra", None) or {})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> typing.Self:
        """Parse a reply object; never raises on unknown keys or values (they are flagged)."""
        obj = cls._build(data or {})
        unknown = obj.unknown_values()
        if unknown:
            log.warning("%s carries values this kit does not know: %s", cls.__name__, unknown)
        return obj

    @classmethod
    def _build(cls, data: dict[str, Any]) -> typing.Self:
        hints = _hints(cls)
        known = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}  # type: ignore[arg-type]
        kwargs = {k: _load(hints[k], v) for k, v in data.items() if k in known}
        return cls(**kwargs, extra={k: v for k, v in data.items() if k not in known})

    def unknown_values(self) -> dict[str, str]:
        """Enum fields (nested too) whose value is not in the reference's list."""
        found: dict[str, str] = {}
        for name, allowed in self._enums.items():
            value = getattr(self, name, None)
            if value is not None and value not in allowed:
                found[name] = value
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            child = getattr(self, f.name)
            if isinstance(child, Model):
                found.update({f"{f.name}.{k}": v for k, v in child.unknown_values().items()})
        return found


def _dump(value: Any) -> Any:
    if isinstance(value, Model):
        return value.to_dict()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _load(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _load(inner[0], value) if len(inner) == 1 else value
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(tp)
        return [_load(item, v) for v in value]
    if isinstance(tp, type) and issubclass(tp, Model) and isinstance(value, dict):
        return tp._build(value)
    return value


# ---------------------------------------------------------------------- shared objects (§2.1)


@dataclass(kw_only=True)
class _Charge(Model):
    """The name/amount/description head that payments and the risk fund share, in wire order."""

    _fen_fields: ClassVar[tuple[str, ...]] = ("amount",)
    name: str | None = None
    amount: int | None = None
    description: str | None = None


@dataclass(kw_only=True)
class Payment(_Charge):
    count: int | None = None


@dataclass(kw_only=True)
class Discount(Model):
    _fen_fields: ClassVar[tuple[str, ...]] = ("amount",)
    name: str | None = None
    description: str | None = None
    amount: int | None = None
    count: int | None = None


@dataclass(kw_only=True)
class TimeRange(Model):
    start_time: str | None = None
    start_time_remark: str | None = None
    end_time: str | None = None
    end_time_remark: str | None = None


@dataclass(kw_only=True)
class Location(Model):
    start_location: str | None = None
    end_location: str | None = None


@dataclass(kw_only=True)
class RiskFund(_Charge):
    pass


@dataclass(kw_only=True)
class Device(Model):
    start_device_id: str | None = None
    end_device_id: str | None = None
    materiel_no: str | None = None


@dataclass(kw_only=True)
class CollectionDetail(Model):
    seq: int | None = None
    amount: int | None = None
    paid_type: str | None = None
    paid_time: str | None = None
    transaction_id: str | None = None
    promotion_detail: list[dict[str, Any]] | None = None


@dataclass(kw_only=True)
class Collection(Model):
    _enums: ClassVar[dict[str, frozenset[str]]] = {"state": COLLECTION_STATES}
    state: str | None = None
    total_amount: int | None = None
    paying_amount: int | None = None
    paid_amount: int | None = None
    details: list[CollectionDetail] | None = None
    bank_type: str | None = None


# ---------------------------------------------------------------------- requests


@dataclass(kw_only=True)
class CreateServiceOrderRequest(Model):
    """§2.2. appid/service_id default to the config. Field order = wire order."""

    out_order_no: str
    appid: str | None = None
    service_id: str | None = None
    service_introduction: str
    post_payments: list[Payment] | None = None
    post_discounts: list[Discount] | None = None
    time_range: TimeRange
    location: Location | None = None
    risk_fund: RiskFund
    attach: str | None = None
    notify_url: str | None = None
    openid: str | None = None
    need_user_confirm: bool | None = None
    device: Device | None = None


@dataclass(kw_only=True)
class _NewAmount(Model):
    """The head of complete and modify: the order's new payments and total (§2.5, §2.6)."""

    _fen_fields: ClassVar[tuple[str, ...]] = ("total_amount",)
    appid: str | None = None
    service_id: str | None = None
    post_payments: list[Payment]
    post_discounts: list[Discount] | None = None
    total_amount: int


@dataclass(kw_only=True)
class CompleteServiceOrderRequest(_NewAmount):
    """§2.5. out_order_no is a path parameter and is never put in the body (§1.2)."""

    time_range: TimeRange | None = None
    location: Location | None = None
    profit_sharing: bool | None = None
    goods_tag: str | None = None
    device: Device | None = None


@dataclass(kw_only=True)
class ModifyServiceOrderRequest(_NewAmount):
    """§2.6; total_amount may only go down."""

    reason: str
    device: Device | None = None


@dataclass(kw_only=True)
class DirectCompleteRequest(Model):
    """§2.9: create + complete in one call, for a pre-authorised user."""

    _fen_fields: ClassVar[tuple[str, ...]] = ("total_amount",)
    appid: str | None = None
    out_order_no: str
    service_id: str | None = None
    openid: str
    service_introduction: str | None = None
    post_payments: list[Payment] | None = None
    post_discounts: list[Discount] | None = None
    time_range: TimeRange
    location: Location | None = None
    total_amount: int | None = None
    profit_sharing: bool | None = None
    goods_tag: str | None = None
    attach: str | None = None
    notify_url: str | None = None


@dataclass(kw_only=True)
class RefundAmount(Model):
    """Request: refund/total/currency (a `from` list goes in `extra`); replies add the rest."""

    _fen_fields: ClassVar[tuple[str, ...]] = ("refund", "total")
    refund: int | None = None
    total: int | None = None
    currency: str | None = "CNY"
    payer_total: int | None = None
    payer_refund: int | None = None
    settlement_refund: int | None = None
    settlement_total: int | None = None
    discount_refund: int | None = None
    refund_fee: int | None = None


@dataclass(kw_only=True)
class CreateRefundRequest(Model):
    """§2.11. Use the collection's transaction_id; out_refund_no is the idempotency key."""

    transaction_id: str | None = None
    out_trade_no: str | None = None
    out_refund_no: str
    reason: str | None = None
    notify_url: str | None = None
    funds_account: str | None = None
    amount: RefundAmount
    goods_detail: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if (self.transaction_id is None) == (self.out_trade_no is None):
            raise ValueError("give exactly one of transaction_id or out_trade_no")
        if not self.amount.refund or not self.amount.total:
            raise ValueError("amount.refund and amount.total are required (positive fen)")


# ---------------------------------------------------------------------- responses


@dataclass(kw_only=True)
class _OrderIdentity(Model):
    """The fields every service order reply starts with, in wire order."""

    appid: str | None = None
    mchid: str | None = None
    out_order_no: str | None = None
    service_id: str | None = None


@dataclass(kw_only=True)
class ServiceOrder(_OrderIdentity):
    """ServiceOrderEntity (§2.1): create, query, modify, complete, sync, direct-complete."""

    _enums: ClassVar[dict[str, frozenset[str]]] = {"state": ORDER_STATES, "state_description": ORDER_STATE_DESCRIPTIONS}
    service_introduction: str | None = None
    state: str | None = None
    state_description: str | None = None
    post_payments: list[Payment] | None = None
    post_discounts: list[Discount] | None = None
    risk_fund: RiskFund | None = None
    total_amount: int | None = None
    need_collection: bool | None = None
    collection: Collection | None = None
    time_range: TimeRange | None = None
    location: Location | None = None
    attach: str | None = None
    notify_url: str | None = None
    openid: str | None = None
    order_id: str | None = None
    package: str | None = None

    @property
    def has_unknown_state(self) -> bool:
        return bool(self.unknown_values())


@dataclass(kw_only=True)
class ServiceOrderAck(_OrderIdentity):
    """cancel and pay answer only the order's identity."""

    order_id: str | None = None


@dataclass(kw_only=True)
class PermissionToken(Model):
    apply_permissions_token: str | None = None


@dataclass(kw_only=True)
class Permission(Model):
    _enums: ClassVar[dict[str, frozenset[str]]] = {"authorization_state": AUTHORIZATION_STATES}
    service_id: str | None = None
    appid: str | None = None
    mchid: str | None = None
    openid: str | None = None
    authorization_code: str | None = None
    authorization_state: str | None = None
    notify_url: str | None = None
    cancel_authorization_time: str | None = None
    authorization_success_time: str | None = None
    user_risk_level: int | None = None
    risk_level_version: int | None = None


@dataclass(kw_only=True)
class UserServiceState(Model):
    _enums: ClassVar[dict[str, frozenset[str]]] = {"use_service_state": SERVICE_STATES}
    appid: str | None = None
    service_id: str | None = None
    openid: str | None = None
    use_service_state: str | None = None


@dataclass(kw_only=True)
class Refund(Model):
    """The Refund object (§2.11) returned by create_refund and query_refund."""

    _enums: ClassVar[dict[str, frozenset[str]]] = {"status": REFUND_STATUSES}
    refund_id: str | None = None
    out_refund_no: str | None = None
    transaction_id: str | None = None
    out_trade_no: str | None = None
    channel: str | None = None
    user_received_account: str | None = None
    success_time: str | None = None
    create_time: str | None = None
    status: str | None = None
    funds_account: str | None = None
    amount: RefundAmount | None = None
    promotion_detail: list[dict[str, Any]] | None = None
