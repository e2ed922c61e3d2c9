"""The merchant driver API (test-only routes under /driver/, on when `ENABLE_DRIVER` is set).

Thin views: parse, call one `Rentals`/`Reconciler` method of the same name, render. Documented
in driver-openapi.yaml next to this file. Every rental answer is the full rental view: the
contract's fields plus documented extras.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from merchant_kit.driver_contract import DRIVER_VERSION
from merchant_kit.reference.errors import BadRequest, NotFound

MAX_FEN = 10**9

bp = Blueprint("driver", __name__, url_prefix="/driver")


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _fen(minimum: int, **kw: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=minimum, max=MAX_FEN), **kw)


class StartRentalRequest(_Strict):
    openid = fields.String(required=True, validate=validate.Length(min=1, max=128))
    mode = fields.String(load_default="need_confirm",
                         validate=validate.OneOf(("need_confirm", "pre_authorised")))
    deposit = _fen(1, required=True)
    service_id = fields.String(validate=validate.Length(min=1, max=32))
    notify_url = fields.Url(schemes={"http", "https"}, require_tld=False,
                            validate=validate.Length(max=255))


class FinishRentalRequest(_Strict):
    amount = _fen(0, required=True)


class CancelRentalRequest(_Strict):
    reason = fields.String(validate=validate.Length(min=1, max=30))


class RefundRentalRequest(_Strict):
    amount = _fen(1, required=True)
    reason = fields.String(validate=validate.Length(min=1, max=80))


def _merchant() -> Any:
    return current_app.extensions["reference_merchant"]


def _body(schema: type[Schema]) -> dict[str, Any]:
    raw = request.get_data(cache=True)
    if not raw.strip():
        data: Any = {}
    else:
        data = request.get_json(silent=True)
        if data is None:
            raise BadRequest("body is not valid JSON")
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    try:
        return schema().load(data)
    except ValidationError as exc:
        raise BadRequest(f"invalid body: {exc.messages}") from None


def _rental_id(rental_id: str) -> int:
    if not rental_id.isdigit() or len(rental_id) > 12:
        raise NotFound(f"no rental {rental_id}")
    return int(rental_id)


@bp.get("/health")
def get_health() -> ResponseReturnValue:
    return jsonify(_merchant().get_health(DRIVER_VERSION))


@bp.post("/rentals")
def start_rental() -> ResponseReturnValue:
    body = _body(StartRentalRequest)
    return jsonify(_merchant().rentals.start_rental(**body)), 201


@bp.get("/rentals/<rental_id>")
def get_rental(rental_id: str) -> ResponseReturnValue:
    return jsonify(_merchant().rentals.get_rental(_rental_id(rental_id)))


@bp.get("/rentals/<rental_id>/timeline")
def get_rental_timeline(rental_id: str) -> ResponseReturnValue:
    return jsonify(_merchant().rentals.get_rental_timeline(_rental_id(rental_id)))


@bp.post("/rentals/<rental_id>/finish")
def finish_rental(rental_id: str) -> ResponseReturnValue:
    body = _body(FinishRentalRequest)
    return jsonify(_merchant().rentals.finish_rental(_rental_id(rental_id), body["amount"]))


@bp.post("/rentals/<rental_id>/cancel")
def cancel_rental(rental_id: str) -> ResponseReturnValue:
    body = _body(CancelRentalRequest)
    return jsonify(_merchant().rentals.cancel_rental(_rental_id(rental_id), body.get("reason")))


@bp.post("/rentals/<rental_id>/refund")
def refund_rental(rental_id: str) -> ResponseReturnValue:
    body = _body(RefundRentalRequest)
    return jsonify(_merchant().rentals.refund_rental(_rental_id(rental_id), body["amount"],
                                                     body.get("reason")))


@bp.post("/reconcile")
def reconcile() -> ResponseReturnValue:
    return jsonify(_merchant().reconciler.reconcile())
