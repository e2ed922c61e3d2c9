"""Shared marshmallow building blocks for the contract (reference §1.2, §2.1).

These schemas are the single source of the contract: request validation uses them and
`openapi.yaml` is generated from them (sandbox.openapi).
"""

from __future__ import annotations

import re

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

OUT_ORDER_NO = re.compile(r"^[0-9A-Za-z_\-|*]{1,32}$")
OUT_REFUND_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
AUTH_CODE = re.compile(r"^[0-9A-Za-z_\-|*]{1,32}$")
PAYSCORE_TIME = re.compile(r"^(\d{8}|\d{14})$")


def text(max_len: int, required: bool = False, **kw) -> fields.String:
    """A string of at most `max_len` characters (CJK counts as one, §1.2); no 4-byte chars."""
    validators = [validate.Length(min=1 if required else 0, max=max_len),
                  validate.Regexp(r"^[^\U00010000-\U0010FFFF]*$",
                                  error="only characters of 1-3 UTF-8 bytes are allowed")]
    return fields.String(required=required, validate=validators,
                         metadata={"maxLength": max_len}, **kw)


def pattern(regex: re.Pattern, max_len: int, required: bool = False, **kw) -> fields.String:
    return fields.String(required=required, validate=validate.Regexp(regex),
                         metadata={"maxLength": max_len, "pattern": regex.pattern}, **kw)


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

    @validates_schema
    def _amount_or_description(self, data, **kw):
        if "amount" not in data and "description" not in data:
            raise ValidationError("amount or description is required", "amount")


class Discount(Strict):
    name = text(20, required=True)
    description = text(30)
    amount = fen()
    count = fields.Integer(strict=True, validate=validate.Range(min=1, max=100))


class TimeRange(Strict):
    start_time = fields.String(validate=validate.Regexp(r"^(OnAccept|\d{8}|\d{14})$"),
                               metadata={"maxLength": 14})
    start_time_remark = text(20)
    end_time = pattern(PAYSCORE_TIME, 14)
    end_time_remark = text(20)


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


class Collection(Schema):
    class Detail(Schema):
        seq = fields.Integer()
        amount = fields.Integer()
        paid_type = fields.String(validate=validate.OneOf(["NEWTON", "MCH"]))
        paid_time = fields.String()
        transaction_id = fields.String()

    state = fields.String(validate=validate.OneOf(["USER_PAYING", "USER_PAID"]))
    total_amount = fields.Integer()
    paying_amount = fields.Integer()
    paid_amount = fields.Integer()
    details = fields.List(fields.Nested(Detail))


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
