"""The parameters of each effect kind, as marshmallow schemas (defaults are the catalogue's).

Unknown keys are refused, so a typo in a scenario fails when the fault is armed, not silently.
"""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from sandbox import errors

MAX_DELAY_S = 30.0
CODE = validate.Regexp(r"^[A-Z][A-Z0-9_]{1,47}$", error="an upper-case WeChat error code")
EVENTS = ("PAYSCORE.USER_CONFIRM", "PAYSCORE.USER_PAID", "PAYSCORE.USER_OPEN_SERVICE",
          "PAYSCORE.USER_CLOSE_SERVICE", "REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED")


def _phase(default: str) -> fields.String:
    return fields.String(load_default=default, validate=validate.OneOf(["before", "after"]),
                         metadata={"description": "before: nothing is processed; after: the "
                                                  "operation commits, then the answer is bent"})


def _signed() -> fields.String:
    return fields.String(load_default="delivered", validate=validate.OneOf(["delivered", "none"]),
                         metadata={"description": "delivered: a valid signature over the bytes "
                                                  "sent; none: no Wechatpay-* headers"})


class NoParams(Schema):
    pass


class HttpErrorParams(Schema):
    code = fields.String(load_default="SYSTEM_ERROR", validate=CODE)
    status = fields.Integer(load_default=None, validate=validate.Range(400, 599))
    message = fields.String(load_default=None, validate=validate.Length(1, 256))
    phase = _phase("before")

    @validates_schema
    def _status_known(self, data: dict, **_: object) -> None:
        if data.get("status") is None and data["code"] not in errors.BY_CODE:
            raise ValidationError("a code WeChat's error table does not have needs a status",
                                  "status")


class DelayParams(Schema):
    seconds = fields.Float(load_default=10.0,
                           validate=validate.Range(0, MAX_DELAY_S, min_inclusive=False))
    phase = _phase("after")


class TruncatedBodyParams(Schema):
    keep = fields.Float(load_default=0.5, validate=validate.Range(0, 1, min_inclusive=False,
                                                                  max_inclusive=False),
                        metadata={"description": "share of the body that is sent"})
    signed = _signed()


class GarbageBodyParams(Schema):
    body = fields.String(load_default=None, validate=validate.Length(1, 4096))
    signed = _signed()


class HtmlGatewayParams(Schema):
    status = fields.Integer(load_default=502, validate=validate.OneOf([502, 503, 504]))
    phase = _phase("before")


class BadSignatureParams(Schema):
    claim_paid = fields.Boolean(load_default=False,
                                metadata={"description": "rewrite the body to claim "
                                                         "DONE / USER_PAID"})


class PublicKeySigningParams(Schema):
    mode = fields.String(load_default="public_key",
                         validate=validate.OneOf(["public_key", "migrating", "certificate"]))
    ratio = fields.Float(load_default=0.5, validate=validate.Range(0, 1),
                         metadata={"description": "migrating: share of callbacks signed with "
                                                  "the public key"})


class CopiesParams(Schema):
    copies = fields.Integer(load_default=2, validate=validate.Range(2, 10))


class ConcurrentCopiesParams(Schema):
    copies = fields.Integer(load_default=5, validate=validate.Range(2, 20))


class ReorderParams(Schema):
    hold_event = fields.String(load_default="PAYSCORE.USER_CONFIRM",
                               validate=validate.OneOf(EVENTS))
    until_event = fields.String(load_default="PAYSCORE.USER_PAID",
                                validate=validate.OneOf(EVENTS))
    max_hold_s = fields.Integer(load_default=86400, validate=validate.Range(1, 30 * 86400),
                                metadata={"description": "released after this long anyway "
                                                         "(sandbox clock)"})
    release_after_s = fields.Integer(load_default=5, validate=validate.Range(1, 3600),
                                     metadata={"description": "the held callback falls due "
                                                              "this long after until_event is "
                                                              "sent (its answer is in by then)"})


class CallbackDelayParams(Schema):
    hold_s = fields.Integer(load_default=3 * 3600, validate=validate.Range(1, 30 * 86400),
                            metadata={"description": "on the sandbox clock"})


class TamperParams(Schema):
    target = fields.String(load_default="ciphertext",
                           validate=validate.OneOf(["ciphertext", "tag"]))


class StaleTimestampParams(Schema):
    age_s = fields.Integer(load_default=600, validate=validate.Range(301, 30 * 86400))


class ReplayParams(Schema):
    after_s = fields.Integer(load_default=600, validate=validate.Range(0, 30 * 86400),
                             metadata={"description": "replay once a later callback of the "
                                                      "scope is sent at least this long after "
                                                      "the recorded one (sandbox clock)"})


class MismatchParams(Schema):
    field = fields.String(load_default="amount", validate=validate.OneOf(
        ["amount", "mchid", "appid", "service_id", "out_order_no", "openid"]))
    value = fields.Raw(load_default=None, metadata={"description": "default: amount + 1 fen, "
                                                                   "or another id"})


class OutageParams(Schema):
    status = fields.Integer(load_default=503, validate=validate.OneOf([500, 502, 503]))
    hold_callbacks = fields.Boolean(load_default=True)
    hold_step_s = fields.Integer(load_default=3600, validate=validate.Range(1, 86400),
                                 metadata={"description": "hold per callback attempt when the "
                                                          "outage has no end (disarming it "
                                                          "releases them)"})
