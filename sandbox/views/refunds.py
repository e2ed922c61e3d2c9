"""/v3/refund/domestic/refunds (reference §2.11, §2.12), and the control API that forces a
refund's outcome (under /sandbox/, unsigned like the rest of the control API)."""

from __future__ import annotations

from flask import Blueprint

from sandbox.schemas import common as c
from sandbox.schemas import refunds as s
from sandbox.service import current
from sandbox.views.common import check_path, load_body, now_us, render
from sandbox.views.common import mchid as caller_mchid

bp = Blueprint("refunds", __name__, url_prefix="/v3/refund/domestic/refunds")
control_bp = Blueprint("control_refunds", __name__, url_prefix="/sandbox")


@bp.post("")
def create_refund():
    """Refund (part of) a collection's transaction; PROCESSING until the outcome is known.
    ---
    post:
      operationId: create_refund
      tags: [refunds]
      requestBody:
        required: true
        content: {application/json: {schema: CreateRefundRequest}}
      responses:
        "200": {description: "accepted (or the same refund again)",
                content: {application/json: {schema: Refund}}}
    """
    body = load_body(s.CreateRefundRequest)
    return render(current().refunds.create_refund(caller_mchid(), body, now_us()))


@bp.get("/<out_refund_no>")
def query_refund(out_refund_no: str):
    """One refund by the merchant's refund number.
    ---
    get:
      operationId: query_refund
      tags: [refunds]
      parameters:
      - {in: path, name: out_refund_no, required: true, schema: {type: string, maxLength: 64}}
      responses:
        "200": {description: the refund, content: {application/json: {schema: Refund}}}
    """
    check_path(out_refund_no, c.OUT_REFUND_NO, "out_refund_no")
    return render(current().refunds.query_refund(caller_mchid(), out_refund_no))


@control_bp.post("/merchants/<mchid>/refunds/<out_refund_no>/settle")
def settle_refund(mchid: str, out_refund_no: str):
    """Force a refund's outcome now (REFUND.SUCCESS / REFUND.ABNORMAL / REFUND.CLOSED follows).
    ---
    post:
      operationId: settle_refund
      tags: [sandbox]
      parameters:
      - {in: path, name: mchid, required: true, schema: {type: string}}
      - {in: path, name: out_refund_no, required: true, schema: {type: string}}
      requestBody:
        required: true
        content: {application/json: {schema: SettleRefundRequest}}
      responses:
        "200": {description: the refund, content: {application/json: {schema: Refund}}}
    """
    sb = current()
    body = load_body(s.SettleRefundRequest)
    return render(sb.refunds.settle_refund(mchid, out_refund_no, body, sb.clock.now_us()))
