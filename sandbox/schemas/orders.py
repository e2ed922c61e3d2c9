"""Service-order request and response schemas (reference §2.2-§2.9)."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from sandbox.schemas.common import (
    OUT_ORDER_NO,
    Collection,
    CreateTimeRange,
    Device,
    Discount,
    EndLocation,
    Location,
    Payment,
    RiskFund,
    ServedTimeRange,
    Strict,
    StrictBool,
    TimeRange,
    fen,
    notify_url,
    pattern,
    payscore_time_field,
    text,
    unique_names,
)


def _unique_line_names(data: dict) -> None:
    # Several 商品信息 payment lines are normal (one per item); any other name must be unique.
    unique_names(data.get("post_payments", []), "post_payments", allow_repeat=("商品信息",))
    unique_names(data.get("post_discounts", []), "post_discounts")


class CreateServiceOrderRequest(Strict):
    out_order_no = pattern(OUT_ORDER_NO, 32, required=True)
    appid = text(32, required=True)
    service_id = text(32, required=True)
    service_introduction = text(20, required=True)
    post_payments = fields.List(fields.Nested(Payment), validate=validate.Length(max=100))
    post_discounts = fields.List(fields.Nested(Discount), validate=validate.Length(max=30))
    time_range = fields.Nested(CreateTimeRange, required=True)
    location = fields.Nested(Location)
    risk_fund = fields.Nested(RiskFund, required=True)
    attach = text(256)
    notify_url = notify_url(required=True)
    openid = text(128)
    need_user_confirm = StrictBool(load_default=True)
    device = fields.Nested(Device)

    @validates_schema
    def _rules(self, data, **kw):
        if data.get("need_user_confirm") is False and not data.get("openid"):
            raise ValidationError("openid is required when need_user_confirm is false", "openid")
        location = data.get("location") or {}
        if location.get("end_location") and not location.get("start_location"):
            raise ValidationError("end_location requires start_location", "location")
        _unique_line_names(data)


class QueryServiceOrderQuery(Strict):
    service_id = text(32, required=True)
    appid = text(32, required=True)
    out_order_no = pattern(OUT_ORDER_NO, 32)
    query_id = text(512)

    @validates_schema
    def _exactly_one(self, data, **kw):
        if ("out_order_no" in data) == ("query_id" in data):
            raise ValidationError("exactly one of out_order_no and query_id is required",
                                  "out_order_no")


class _ForService(Strict):
    """The head of every body that acts on an existing order: whose service it belongs to."""

    appid = text(32, required=True)
    service_id = text(32, required=True)


class CancelServiceOrderRequest(_ForService):
    reason = text(30, required=True)


class _Amounts(_ForService):
    post_payments = fields.List(fields.Nested(Payment), required=True,
                                validate=validate.Length(min=1, max=100))
    post_discounts = fields.List(fields.Nested(Discount), validate=validate.Length(max=30))
    total_amount = fen(required=True)

    @validates_schema
    def _names(self, data, **kw):
        _unique_line_names(data)


class CompleteServiceOrderRequest(_Amounts):
    time_range = fields.Nested(TimeRange)
    location = fields.Nested(EndLocation)
    profit_sharing = StrictBool()
    goods_tag = text(32)
    device = fields.Nested(Device)


class ModifyServiceOrderRequest(_Amounts):
    reason = text(50, required=True)
    device = fields.Nested(Device)


class PayServiceOrderRequest(_ForService):
    """pay: the body names nothing but the order's service."""


class SyncDetail(Strict):
    paid_time = payscore_time_field(required=True, max_len=64)


class SyncServiceOrderRequest(_ForService):
    type = fields.String(required=True, validate=validate.OneOf(["Order_Paid"]))
    detail = fields.Nested(SyncDetail, required=True)


class DirectCompleteServiceOrderRequest(Strict):
    appid = text(32, required=True)
    out_order_no = pattern(OUT_ORDER_NO, 32, required=True)
    service_id = text(32, required=True)
    openid = text(128, required=True)
    service_introduction = text(20)
    post_payments = fields.List(fields.Nested(Payment), validate=validate.Length(max=100))
    post_discounts = fields.List(fields.Nested(Discount), validate=validate.Length(max=30))
    time_range = fields.Nested(ServedTimeRange, required=True)
    location = fields.Nested(Location)
    total_amount = fen()
    profit_sharing = StrictBool()
    goods_tag = text(32)
    attach = text(256)
    notify_url = notify_url()

    @validates_schema
    def _rules(self, data, **kw):
        _unique_line_names(data)


class _OrderHead(Schema):
    """The fields every service-order answer starts with, in the reference's order (§2.1).

    Answers that can only be in some states narrow `state` and `state_description`; a field
    redeclared in a subclass keeps its place here.
    """

    out_order_no = fields.String(required=True)
    service_id = fields.String(required=True)
    appid = fields.String(required=True)
    mchid = fields.String(required=True)
    service_introduction = fields.String()
    state = fields.String(required=True, validate=validate.OneOf(
        ["CREATED", "DOING", "DONE", "REVOKED", "EXPIRED"]))
    state_description = fields.String(validate=validate.OneOf(["USER_CONFIRM", "MCH_COMPLETE"]))


class ServiceOrderEntity(_OrderHead):
    """What query, modify, sync and the USER_CONFIRM / USER_PAID callbacks carry (§2.1)."""

    post_payments = fields.List(fields.Nested(Payment))
    post_discounts = fields.List(fields.Nested(Discount))
    risk_fund = fields.Nested(RiskFund)
    total_amount = fields.Integer()
    need_collection = fields.Boolean()
    collection = fields.Nested(Collection)
    time_range = fields.Nested(TimeRange)
    location = fields.Nested(Location)
    attach = fields.String()
    notify_url = fields.String()
    openid = fields.String()
    order_id = fields.String(required=True)


class CreateServiceOrderResponse(_OrderHead):
    """§2.2: the entity without collection data, plus the `package` for the mini-program."""

    state = fields.String(required=True, validate=validate.OneOf(["CREATED", "DOING"]))
    state_description = fields.String(validate=validate.OneOf(["USER_CONFIRM"]))
    post_payments = fields.List(fields.Nested(Payment))
    post_discounts = fields.List(fields.Nested(Discount))
    risk_fund = fields.Nested(RiskFund)
    time_range = fields.Nested(TimeRange)
    location = fields.Nested(Location)
    attach = fields.String()
    notify_url = fields.String()
    order_id = fields.String(required=True)
    package = fields.String(required=True, metadata={"maxLength": 300})


class _CompletedHead(_OrderHead):
    """The merchant completed the order: it is being collected, or already paid."""

    state = fields.String(required=True, validate=validate.OneOf(["DOING", "DONE"]))
    state_description = fields.String(validate=validate.OneOf(["MCH_COMPLETE"]))


class CompleteServiceOrderResponse(_CompletedHead):
    """§2.5."""

    total_amount = fields.Integer(required=True)
    post_payments = fields.List(fields.Nested(Payment))
    post_discounts = fields.List(fields.Nested(Discount))
    risk_fund = fields.Nested(RiskFund)
    time_range = fields.Nested(TimeRange)
    location = fields.Nested(Location)
    order_id = fields.String(required=True)
    need_collection = fields.Boolean(required=True)


class DirectCompleteServiceOrderResponse(_CompletedHead):
    """§2.9."""

    post_payments = fields.List(fields.Nested(Payment))
    post_discounts = fields.List(fields.Nested(Discount))
    time_range = fields.Nested(TimeRange)
    location = fields.Nested(Location)
    attach = fields.String()
    notify_url = fields.String()
    total_amount = fields.Integer(required=True)
    order_id = fields.String(required=True)


class OrderRef(Schema):
    """The short answer of cancel and pay."""

    appid = fields.String(required=True)
    mchid = fields.String(required=True)
    out_order_no = fields.String(required=True)
    service_id = fields.String(required=True)
    order_id = fields.String(required=True)
