"""Shared marshmallow building blocks for the contract (reference §1.2, §2.1).

These schemas are the single source of the contract: request validation uses them and
`openapi.yaml` is generated from them (sandbox.openapi).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from merchant_kit.protocol import CST

OUT_ORDER_NO = re.compile(r"^[0-9A-Za-z_\-|*]{1,32}$")
OUT_REFUND_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
AUTH_CODE = re.compile(r"^[0-9A-Za-z_\-|*]{1,32}$")
# yyyyMMdd or yyyyMMddHHmmss with plausible fields; RealTime below rejects 20240230 as well
_DATE = r"[12]\d{3}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])"
_CLOCK = r"([01]\d|2[0-3])[0-5]\d[0-5]\d"
PAYSCORE_TIME = re.compile(rf"^{_DATE}({_CLOCK})?$")
START_TIME = re.compile(rf"^(OnAccept|{_DATE}({_CLOCK})?)$")
OPENID = re.compile(r"^[0-9A-Za-z_\-]{1,128}$")
NOTIFY_URL = re.compile(
    r"^https?://[0-9A-Za-z.\-]{1,200}(:[0-9]{1,5})?(/[0-9A-Za-z._~%!$&'()*+,;=:@/\-]*)?$")


class FullMatch(validate.Regexp):
    """The whole value must match. Python's `$` also matches before a final newline, which
    ECMA-262 (the contract's regex dialect) does not: "A1\n" is not an out_order_no."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


class NoAstral(validate.Validator):
    """Only characters of 1-3 UTF-8 bytes (§1.2). Not a Regexp on purpose: a pattern with
    astral code points means different things to Python and to ECMA-262 (JSON Schema), so the
    rule lives in the field description instead of a misleading `pattern`."""

    error = "only characters of 1-3 UTF-8 bytes are allowed"

    def __call__(self, value: str) -> str:
        if not value.isascii() and _ASTRAL.search(value):
            raise ValidationError(self.error)
        return value


def text(max_len: int, required: bool = False, **kw) -> fields.String:
    """A string of at most `max_len` characters (CJK counts as one, §1.2); no 4-byte chars."""
    validators = [validate.Length(min=1 if required else 0, max=max_len), NoAstral()]
    return fields.String(required=required, validate=validators,
                         metadata={"description": "1-3 byte UTF-8 characters only"}, **kw)


def pattern(regex: re.Pattern, max_len: int, required: bool = False, **kw) -> fields.String:
    return fields.String(required=required, validate=FullMatch(regex),
                         metadata={"maxLength": max_len}, **kw)


def notify_url(required: bool = False, max_len: int = 255) -> fields.String:
    """A callback URL: http(s), a host, an optional port and path; no query or fragment (§2.2)."""
    return fields.String(required=required,
                         validate=[validate.Length(max=max_len), FullMatch(NOTIFY_URL)],
                         metadata={"maxLength": max_len})


def fen(required: bool = False, minimum: int = 0, **kw) -> fields.Integer:
    """Money in fen: an integer, never a float or a string."""
    return fields.Integer(required=required, strict=True,
                          validate=validate.Range(min=minimum, max=10**12), **kw)


class StrictBool(fields.Boolean):
    """JSON true/false only; marshmallow's Boolean would also take "yes" or 1."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class Strict(Schema):
    """Unknown keys are refused: the real API maps every body key to a field (§1.2)."""

    class Meta:
        unknown = RAISE
        ordered = True


class Payment(Strict):
    name = text(20, required=True)
    amount = fen()
    description = text(30)
    count = fields.Integer(strict=True, validate=validate.Range(min=1, max=100))

    OPENAPI_EXTRA: ClassVar[dict] = {"anyOf": [{"required": ["amount"]}, {"required": ["description"]}]}

    @validates_schema
    def _amount_or_description(self, data, **kw):
        if "amount" not in data and "description" not in data:
            raise ValidationError("amount or description is required", "amount")


class Discount(Strict):
    name = text(20, required=True)
    description = text(30)
    amount = fen()
    count = fields.Integer(strict=True, validate=validate.Range(min=1, max=100))


class RealTime(validate.Validator):
    """yyyyMMdd or yyyyMMddHHmmss that names a real calendar instant (not 20240231)."""

    error = "not a real date/time (yyyyMMdd or yyyyMMddHHmmss)"

    def __call__(self, value: str) -> str:
        if value != "OnAccept" and parse_payscore_time(value) is None:
            raise ValidationError(self.error)
        return value


def parse_payscore_time(value: str) -> dt.datetime | None:
    """China Standard Time (§1.2); None when the digits are not a real date or time."""
    fmt = {8: "%Y%m%d", 14: "%Y%m%d%H%M%S"}.get(len(value))
    if fmt is None or not value.isdigit():
        return None
    try:
        return dt.datetime.strptime(value, fmt).replace(tzinfo=CST)
    except ValueError:
        return None


def payscore_time_field(required: bool = False, with_on_accept: bool = False,
                        max_len: int = 14) -> fields.String:
    regex = START_TIME.pattern if with_on_accept else PAYSCORE_TIME.pattern
    return fields.String(required=required, validate=[FullMatch(regex), RealTime()],
                         metadata={"maxLength": max_len})


class TimeRange(Strict):
    start_time = payscore_time_field(with_on_accept=True)
    start_time_remark = text(20)
    end_time = payscore_time_field()
    end_time_remark = text(20)


class CreateTimeRange(TimeRange):
    """At create the start is required (§2.1)."""

    start_time = payscore_time_field(required=True, with_on_accept=True)


class ServedTimeRange(TimeRange):
    """Direct-complete: the service is over, so both ends are real times (no OnAccept)."""

    start_time = payscore_time_field(required=True)
    end_time = payscore_time_field(required=True)


class Location(Strict):
    start_location = text(50)
    end_location = text(50)


class EndLocation(Strict):
    end_location = text(50)


class RiskFund(Strict):
    name = fields.String(required=True, validate=validate.OneOf(
        ["DEPOSIT", "ADVANCE", "CASH_DEPOSIT", "ESTIMATE_ORDER_COST"]))
    amount = fen(required=True, minimum=1)
    description = text(30)


class Device(Strict):
    start_device_id = text(32)
    end_device_id = text(32)
    materiel_no = text(32)


class PromotionDetail(Schema):
    coupon_id = fields.String(required=True)
    name = fields.String()
    scope = fields.String(validate=validate.OneOf(["SINGLE", "GLOBAL"]))
    type = fields.String(validate=validate.OneOf(["CASH", "NOCASH"]))
    amount = fields.Integer(required=True)
    stock_id = fields.String()
    wechatpay_contribute = fields.Integer()
    merchant_contribute = fields.Integer()
    other_contribute = fields.Integer()
    currency = fields.String()


class CollectionDetail(Schema):
    seq = fields.Integer(required=True)
    amount = fields.Integer(required=True)
    paid_type = fields.String(required=True, validate=validate.OneOf(["NEWTON", "MCH"]))
    paid_time = fields.String(required=True, metadata={"maxLength": 14})
    transaction_id = fields.String(required=True, metadata={"maxLength": 32})
    promotion_detail = fields.List(fields.Nested(PromotionDetail))


class Collection(Schema):
    state = fields.String(required=True, validate=validate.OneOf(["USER_PAYING", "USER_PAID"]))
    total_amount = fields.Integer(required=True)
    paying_amount = fields.Integer(required=True)
    paid_amount = fields.Integer(required=True)
    details = fields.List(fields.Nested(CollectionDetail))
    bank_type = fields.String()


class ErrorBody(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    detail = fields.Dict()


def unique_names(items: list[dict], field: str, allow_repeat: tuple[str, ...] = ()) -> None:
    seen: set[str] = set()
    for index, item in enumerate(items):
        name = item.get("name")
        if name in seen and name not in allow_repeat:
            raise ValidationError({str(index): {"name": ["names must be unique"]}}, field)
        seen.add(name)
