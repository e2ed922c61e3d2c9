"""/v3/payscore/serviceorder views: parse, one backend call, render.

The YAML in each docstring is the operation's contract entry (sandbox.openapi reads it); its
schemas are the marshmallow classes the view validates with, so there is one source of truth.
"""

from __future__ import annotations

from flask import Blueprint, g

from sandbox.schemas import common as c
from sandbox.schemas import orders as s
from sandbox.service import current
from sandbox.views.common import check_path, load_body, load_query, mchid, now_us, render

bp = Blueprint("serviceorders", __name__, url_prefix="/v3/payscore/serviceorder")


@bp.post("")
def create_service_order():
    """Create a service order.
    ---
    post:
      operationId: create_service_order
      tags: [serviceorder]
      requestBody:
        required: true
        content: {application/json: {schema: CreateServiceOrderRequest}}
      responses:
        "200": {description: "created, or the same order for an identical replay",
                content: {application/json: {schema: CreateServiceOrderResponse}}}
    """
    body = load_body(s.CreateServiceOrderRequest)
    return render(current().orders.create_service_order(mchid(), body, now_us(),
                                                        g.get("merchant_config")))


@bp.get("")
def query_service_order():
    """Query a service order by out_order_no or query_id.
    ---
    get:
      operationId: query_service_order
      description: "Exactly one of out_order_no and query_id; both or neither is PARAM_ERROR."
      tags: [serviceorder]
      parameters:
      - in: query
        schema: QueryServiceOrderQuery
      responses:
        "200": {description: the order, content: {application/json: {schema: ServiceOrderEntity}}}
    """
    query = load_query(s.QueryServiceOrderQuery)
    return render(current().orders.query_service_order(mchid(), query))


@bp.post("/<out_order_no>/cancel")
def cancel_service_order(out_order_no: str):
    """Cancel a service order.
    ---
    post:
      operationId: cancel_service_order
      tags: [serviceorder]
      parameters:
      - {in: path, name: out_order_no, required: true, schema: {type: string, maxLength: 32}}
      requestBody:
        required: true
        content: {application/json: {schema: CancelServiceOrderRequest}}
      responses:
        "200": {description: revoked, content: {application/json: {schema: OrderRef}}}
    """
    check_path(out_order_no, c.OUT_ORDER_NO, "out_order_no")
    body = load_body(s.CancelServiceOrderRequest, ("out_order_no",))
    return render(current().orders.cancel_service_order(mchid(), out_order_no, body, now_us()))


@bp.post("/<out_order_no>/complete")
def complete_service_order(out_order_no: str):
    """Complete a service order with the final amount.
    ---
    post:
      operationId: complete_service_order
      tags: [serviceorder]
      parameters:
      - {in: path, name: out_order_no, required: true, schema: {type: string, maxLength: 32}}
      requestBody:
        required: true
        content: {application/json: {schema: CompleteServiceOrderRequest}}
      responses:
        "200": {description: "completed (DOING/MCH_COMPLETE, or DONE for a total of 0)",
                content: {application/json: {schema: CompleteServiceOrderResponse}}}
    """
    check_path(out_order_no, c.OUT_ORDER_NO, "out_order_no")
    body = load_body(s.CompleteServiceOrderRequest, ("out_order_no",))
    return render(current().orders.complete_service_order(mchid(), out_order_no, body,
                                                          now_us()))


@bp.post("/<out_order_no>/modify")
def modify_service_order(out_order_no: str):
    """Lower the amount of a completed, still unpaid order.
    ---
    post:
      operationId: modify_service_order
      tags: [serviceorder]
      parameters:
      - {in: path, name: out_order_no, required: true, schema: {type: string, maxLength: 32}}
      requestBody:
        required: true
        content: {application/json: {schema: ModifyServiceOrderRequest}}
      responses:
        "200": {description: "the order with its new total",
                content: {application/json: {schema: ServiceOrderEntity}}}
    """
    check_path(out_order_no, c.OUT_ORDER_NO, "out_order_no")
    body = load_body(s.ModifyServiceOrderRequest, ("out_order_no",))
    return render(current().orders.modify_service_order(mchid(), out_order_no, body, now_us()))


@bp.post("/<out_order_no>/pay")
def pay_service_order(out_order_no: str):
    """Merchant-initiated collection (催收): WeChat tries to debit the user now.
    ---
    post:
      operationId: pay_service_order
      tags: [serviceorder]
      parameters:
      - {in: path, name: out_order_no, required: true, schema: {type: string, maxLength: 32}}
      requestBody:
        required: true
        content: {application/json: {schema: PayServiceOrderRequest}}
      responses:
        "200": {description: "a deduction attempt was started",
                content: {application/json: {schema: OrderRef}}}
    """
    check_path(out_order_no, c.OUT_ORDER_NO, "out_order_no")
    body = load_body(s.PayServiceOrderRequest, ("out_order_no",))
    return render(current().orders.pay_service_order(mchid(), out_order_no, body, now_us()))


@bp.post("/<out_order_no>/sync")
def sync_service_order(out_order_no: str):
    """Tell WeChat the user paid the merchant another way (type Order_Paid).
    ---
    post:
      operationId: sync_service_order
      tags: [serviceorder]
      parameters:
      - {in: path, name: out_order_no, required: true, schema: {type: string, maxLength: 32}}
      requestBody:
        required: true
        content: {application/json: {schema: SyncServiceOrderRequest}}
      responses:
        "200": {description: "the order, now DONE with a paid_type MCH collection",
                content: {application/json: {schema: ServiceOrderEntity}}}
    """
    check_path(out_order_no, c.OUT_ORDER_NO, "out_order_no")
    body = load_body(s.SyncServiceOrderRequest, ("out_order_no",))
    return render(current().orders.sync_service_order(mchid(), out_order_no, body, now_us()))


@bp.post("/direct-complete")
def direct_complete_service_order():
    """Create and complete an order in one call, for a pre-authorised user.
    ---
    post:
      operationId: direct_complete_service_order
      tags: [serviceorder]
      requestBody:
        required: true
        content: {application/json: {schema: DirectCompleteServiceOrderRequest}}
      responses:
        "200": {description: "DOING/MCH_COMPLETE (WeChat collects next), or DONE for 0",
                content: {application/json: {schema: DirectCompleteServiceOrderResponse}}}
    """
    body = load_body(s.DirectCompleteServiceOrderRequest)
    return render(current().orders.direct_complete_service_order(mchid(), body, now_us()))
