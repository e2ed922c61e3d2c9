"""The test-only control API under /sandbox/ (never /v3/): act as WeChat users, move time.

Like moto's control endpoints: not part of WeChat's API, unsigned, loopback only.
"""

from __future__ import annotations

from flask import Blueprint, request

from sandbox import errors
from sandbox.clock import parse_duration
from sandbox.service import current
from sandbox.views.common import render

bp = Blueprint("control", __name__, url_prefix="/sandbox")


def _json() -> dict:
    data = request.get_json(silent=True)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise errors.param_error("/", "body must be a JSON object")
    return data


@bp.get("/health")
def health():
    """Liveness and the sandbox clock.
    ---
    get:
      operationId: sandbox_health
      tags: [sandbox]
      responses:
        "200": {description: ok}
    """
    return render({"status": "ok", "clock": current().clock.state()})


@bp.post("/merchants/<mchid>/orders/<out_order_no>/confirm")
def user_confirm(mchid: str, out_order_no: str):
    """Make the simulated user confirm the order (PAYSCORE.USER_CONFIRM follows).
    ---
    post:
      operationId: user_confirm
      tags: [sandbox]
      parameters:
      - {in: path, name: mchid, required: true, schema: {type: string}}
      - {in: path, name: out_order_no, required: true, schema: {type: string}}
      responses:
        "200": {description: the confirmed order}
    """
    sb = current()
    return render(sb.orders.user_confirm(mchid, out_order_no, sb.clock.now_us(),
                                         _json().get("openid")))


@bp.post("/merchants/<mchid>/orders/<out_order_no>/decline")
def user_decline(mchid: str, out_order_no: str):
    """Make the simulated user decline the order on the confirm page.
    ---
    post:
      operationId: user_decline
      tags: [sandbox]
      parameters:
      - {in: path, name: mchid, required: true, schema: {type: string}}
      - {in: path, name: out_order_no, required: true, schema: {type: string}}
      responses:
        "200": {description: the revoked order}
    """
    sb = current()
    return render(sb.orders.user_decline(mchid, out_order_no, sb.clock.now_us()))


@bp.post("/merchants/<mchid>/orders/<out_order_no>/deduction")
def deduction_succeeded(mchid: str, out_order_no: str):
    """Make WeChat's deduction for a completed order succeed now (USER_PAID follows).
    ---
    post:
      operationId: deduction_succeeded
      tags: [sandbox]
      parameters:
      - {in: path, name: mchid, required: true, schema: {type: string}}
      - {in: path, name: out_order_no, required: true, schema: {type: string}}
      responses:
        "200": {description: the paid order}
    """
    from sandbox.backend.orders import lock_order
    from sandbox.db import read_tx

    sb = current()
    with read_tx(sb.engine) as conn:
        order = lock_order(conn, mchid, out_order_no)
    return render(sb.orders.deduction_succeeded(order.pk, sb.clock.now_us()))


@bp.get("/clock")
def clock_state():
    """The sandbox clock.
    ---
    get:
      operationId: get_clock
      tags: [sandbox]
      responses:
        "200": {description: "now, frozen or not"}
    """
    return render(current().clock.state())


@bp.post("/clock/freeze")
def clock_freeze():
    """Freeze the sandbox clock (optionally at `at_us`).
    ---
    post:
      operationId: freeze_clock
      tags: [sandbox]
      responses:
        "200": {description: the clock}
    """
    sb = current()
    sb.clock.freeze(_json().get("at_us"))
    return render(sb.clock.state())


@bp.post("/clock/advance")
def clock_advance():
    """Advance the clock by `by` (e.g. "7d") and run every timed job that falls due.
    ---
    post:
      operationId: advance_clock
      tags: [sandbox]
      responses:
        "200": {description: the clock and how many jobs ran}
    """
    sb = current()
    try:
        delta = parse_duration(str(_json().get("by", "0")))
    except ValueError as exc:
        raise errors.param_error("by", str(exc)) from None
    ran = sb.advance(delta)
    return render({**sb.clock.state(), "jobs_run": ran})


@bp.post("/clock/reset")
def clock_reset():
    """Back to wall time, unfrozen.
    ---
    post:
      operationId: reset_clock
      tags: [sandbox]
      responses:
        "200": {description: the clock}
    """
    sb = current()
    sb.clock.reset()
    return render(sb.clock.state())


@bp.get("/openapi.yaml")
def get_openapi_yaml():
    """The contract (the same text as the committed openapi.yaml).
    ---
    get:
      operationId: get_openapi_yaml
      tags: [sandbox]
      responses:
        "200": {description: OpenAPI 3.0 YAML, content: {application/yaml: {}}}
    """
    from flask import Response

    from sandbox.openapi import spec_yaml

    text = current().extras.get("openapi_yaml")
    if text is None:  # built once per app: the views and schemas do not change at runtime
        text = current().extras["openapi_yaml"] = spec_yaml()
    return Response(text, content_type="application/yaml; charset=utf-8")


@bp.get("/openapi.json")
def get_openapi_json():
    """The contract as JSON (what schemathesis and other tools load).
    ---
    get:
      operationId: get_openapi_json
      tags: [sandbox]
      responses:
        "200": {description: OpenAPI 3.0 JSON, content: {application/json: {}}}
    """
    from sandbox.openapi import spec_dict

    spec = current().extras.get("openapi_dict")
    if spec is None:
        spec = current().extras["openapi_dict"] = spec_dict()
    return render(spec)  # type: ignore[arg-type]
