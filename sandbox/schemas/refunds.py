"""Domestic refund request and response schemas (reference §2.11, §2.12, §6.4)."""

from __future__ import annotations

from typing import ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from sandbox.schemas.common import OUT_REFUND_NO, Strict, fen, notify_url, pattern, text

REFUND_STATUSES = ["SUCCESS", "CLOSED", "PROCESSING", "ABNORMAL"]


class FundsFrom(Strict):
    account = fields.String(required=True, validate=validate.OneOf(["AVAILABLE", "UNAVAILABLE"]))
    amount = fen(required=True)


class RefundAmountRequest(Strict):
    refund = fen(required=True, minimum=1)
    total = fen(required=True, minimum=1)
    currency = fields.String(required=True, validate=validate.OneOf(["CNY"]))
    # `from` is a Python keyword: the field keeps its JSON name through data_key
    from_ = fields.List(fields.Nested(FundsFrom), data_key="from")


class RefundGoodsDetail(Strict):
    merchant_goods_id = text(32, required=True)
    wechatpay_goods_id = text(32)
    goods_name = text(256)
    unit_price = fen(required=True)
    refund_amount = fen(required=True)
    refund_quantity = fields.Integer(required=True, strict=True,
                                     validate=validate.Range(min=1, max=10**6))


class CreateRefundRequest(Strict):
    transaction_id = text(32)
    out_trade_no = text(32)
    out_refund_no = pattern(OUT_REFUND_NO, 64, required=True)
    reason = text(80)
    notify_url = notify_url(max_len=256)
    funds_account = fields.String(validate=validate.OneOf(["AVAILABLE", "UNSETTLED"]))
    amount = fields.Nested(RefundAmountRequest, required=True)
    goods_detail = fields.List(fields.Nested(RefundGoodsDetail))

    OPENAPI_EXTRA: ClassVar[dict] = {"anyOf": [{"required": ["transaction_id"]}, {"required": ["out_trade_no"]}]}

    @validates_schema
    def _one_order_key(self, data, **kw):
        if "transaction_id" not in data and "out_trade_no" not in data:
            raise ValidationError("one of transaction_id and out_trade_no is required",
                                  "transaction_id")


class RefundAmount(Schema):
    total = fields.Integer(required=True)
    refund = fields.Integer(required=True)
    from_ = fields.List(fields.Nested(FundsFrom), data_key="from")
    payer_total = fields.Integer(required=True)
    payer_refund = fields.Integer(required=True)
    settlement_refund = fields.Integer(required=True)
    settlement_total = fields.Integer(required=True)
    discount_refund = fields.Integer(required=True)
    currency = fields.String(required=True)
    refund_fee = fields.Integer()


class Refund(Schema):
    """The Refund object of create and query (§2.11)."""

    refund_id = fields.String(required=True, metadata={"maxLength": 32})
    out_refund_no = fields.String(required=True, metadata={"maxLength": 64})
    transaction_id = fields.String(required=True, metadata={"maxLength": 32})
    out_trade_no = fields.String(required=True, metadata={"maxLength": 32})
    channel = fields.String(required=True, validate=validate.OneOf(
        ["ORIGINAL", "BALANCE", "OTHER_BALANCE", "OTHER_BANKCARD"]))
    user_received_account = fields.String(required=True, metadata={"maxLength": 64})
    success_time = fields.String(metadata={"format": "date-time"})
    create_time = fields.String(required=True, metadata={"format": "date-time"})
    status = fields.String(required=True, validate=validate.OneOf(REFUND_STATUSES))
    funds_account = fields.String(validate=validate.OneOf(
        ["UNSETTLED", "AVAILABLE", "UNAVAILABLE", "OPERATION", "BASIC", "ECNY_BASIC"]))
    amount = fields.Nested(RefundAmount, required=True)
    promotion_detail = fields.List(fields.Dict())


class SettleRefundRequest(Strict):
    """Control API: force a refund's outcome now."""

    status = fields.String(required=True,
                           validate=validate.OneOf(["SUCCESS", "ABNORMAL", "CLOSED"]))
