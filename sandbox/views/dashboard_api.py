"""/sandbox/api/: the dashboard's read endpoints (JSON), thin views over sandbox.backend.inspect.

Test-only like the rest of /sandbox/ (unsigned, served on the sandbox's loopback address).
Lists are keyset-paginated: pass a page's `next_before` as `before` to get the next one.
"""

from __future__ import annotations

from flask import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from sandbox import errors
from sandbox.backend.inspect import MAX_LIMIT, Inspector, decode_cursor
from sandbox.clock import parse_duration
from sandbox.service import current
from sandbox.views.common import load_query, render

bp = Blueprint("dashboard_api", __name__, url_prefix="/sandbox/api")

def _limit() -> fields.Integer:
    return fields.Integer(load_default=50, validate=validate.Range(1, MAX_LIMIT))


def _cursor(numeric: bool = False) -> fields.String:
    def check(value: str) -> None:
        try:
            decode_cursor(value, numeric)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    return fields.String(validate=check,
                         metadata={"description": "next_before of the previous page"})


class InspectOrdersQuery(Schema):
    mchid = fields.String(validate=validate.Length(max=32))
    state = fields.String(validate=validate.OneOf(["CREATED", "DOING", "DONE", "REVOKED",
                                                   "EXPIRED"]))
    openid = fields.String(validate=validate.Length(max=128))
    since = fields.String(metadata={"description": "only orders created at most this long ago "
                                                   "on the sandbox clock, e.g. 2h, 7d"})
    before = _cursor(numeric=True)
    limit = _limit()


class InspectRequestsQuery(Schema):
    mchid = fields.String(validate=validate.Length(max=32))
    out_order_no = fields.String(validate=validate.Length(max=32))
    failed = fields.Boolean(load_default=False)
    before = fields.Integer(validate=validate.Range(1, 2**62))
    limit = _limit()


class InspectNotificationsQuery(Schema):
    status = fields.String(validate=validate.OneOf(["PENDING", "DELIVERED", "FAILED"]))
    failing = fields.Boolean(load_default=False,
                             metadata={"description": "answered non-2xx at least once and not "
                                                      "delivered since"})
    before = _cursor()
    limit = _limit()


class InspectUsersQuery(Schema):
    prefix = fields.String(load_default="", validate=validate.Length(max=128))
    limit = _limit()


class InspectFaultsQuery(Schema):
    active = fields.Boolean(load_default=False)


def _inspector() -> Inspector:
    sb = current()
    inspector = sb.extras.get("inspector")
    if inspector is None:
        inspector = sb.extras["inspector"] = Inspector(sb.engine)
    return inspector  # type: ignore[return-value]


@bp.get("/overview")
def inspect_overview():
    """The merchants (for the filters) and the sandbox clock.
    ---
    get:
      operationId: inspect_overview
      tags: [sandbox]
      responses:
        "200": {description: "merchants, clock"}
    """
    return render({**_inspector().inspect_overview(), "clock": current().clock.state()})


@bp.get("/orders")
def inspect_orders():
    """Orders, newest first, filtered by merchant, state, user and age; a capped count.
    ---
    get:
      operationId: inspect_orders
      tags: [sandbox]
      parameters:
      - in: query
        schema: InspectOrdersQuery
      responses:
        "200": {description: "orders, count (at most 1000; count_capped), next_before"}
    """
    query = load_query(InspectOrdersQuery)
    since = query.pop("since", None)
    if since:
        try:
            query["since_us"] = max(current().clock.now_us() - parse_duration(since), 0)
        except ValueError as exc:
            raise errors.param_error("since", str(exc), location="query") from None
    return render(_inspector().inspect_orders(**query))


@bp.get("/orders/<int:pk>")
def inspect_order(pk: int):
    """One order and its timeline: requests with verdicts, state changes, callbacks.
    ---
    get:
      operationId: inspect_order
      tags: [sandbox]
      parameters:
      - {in: path, name: pk, required: true, schema: {type: integer}}
      responses:
        "200": {description: "order, timeline (kind: request | state | notification)"}
    """
    found = _inspector().inspect_order(pk)
    if found is None:
        raise errors.OrderNotExist("订单不存在")
    return render(found)


@bp.get("/requests")
def inspect_requests():
    """The request log, newest first; failed signature checks explained.
    ---
    get:
      operationId: inspect_requests
      tags: [sandbox]
      parameters:
      - in: query
        schema: InspectRequestsQuery
      responses:
        "200": {description: "requests (with explanation), next_before"}
    """
    return render(_inspector().inspect_requests(**load_query(InspectRequestsQuery)))


@bp.get("/notifications")
def inspect_notifications():
    """Callbacks (the outbox), newest first, with each one's last delivery attempt.
    ---
    get:
      operationId: inspect_notifications
      tags: [sandbox]
      parameters:
      - in: query
        schema: InspectNotificationsQuery
      responses:
        "200": {description: "notifications, next_before"}
    """
    return render(_inspector().inspect_notifications(**load_query(InspectNotificationsQuery)))


@bp.get("/users")
def inspect_users():
    """Simulated users by openid prefix.
    ---
    get:
      operationId: inspect_users
      tags: [sandbox]
      parameters:
      - in: query
        schema: InspectUsersQuery
      responses:
        "200": {description: users}
    """
    return render(_inspector().inspect_users(**load_query(InspectUsersQuery)))


@bp.get("/users/<openid>")
def inspect_user(openid: str):
    """One simulated user: score history, eligibility, risk tier, defaults, recent orders.
    ---
    get:
      operationId: inspect_user
      tags: [sandbox]
      parameters:
      - {in: path, name: openid, required: true, schema: {type: string, maxLength: 128}}
      responses:
        "200": {description: "user, eligible, risk_tier, score_history, orders"}
    """
    found = _inspector().inspect_user(openid[:128], current().clock.now_us())
    if found is None:
        raise errors.ResourceNotExists("用户不存在")
    return render(found)


@bp.get("/faults")
def inspect_faults():
    """Faults, newest first, with their scope, trigger and how often they were taken.
    ---
    get:
      operationId: inspect_faults
      tags: [sandbox]
      parameters:
      - in: query
        schema: InspectFaultsQuery
      responses:
        "200": {description: "faults, catalogue"}
    """
    query = load_query(InspectFaultsQuery)
    return render({**_inspector().inspect_faults(active_only=query["active"]),
                   "catalogue": fault_catalogue()})


def fault_catalogue() -> list[dict]:
    """The effect kinds a fault can have (sandbox.faults' closed set), for the arm form."""
    try:
        from sandbox.faults import catalogue
    except ModuleNotFoundError:  # a build without the faults package: list and disarm only
        return []
    return catalogue.entries()
