"""The control API for callbacks (/sandbox/notifications): inspect, re-send, drain, probe.

Test-only like the rest of /sandbox/: unsigned, never under /v3/. Each view parses, makes one
dispatcher or outbox call, and renders.
"""

from __future__ import annotations

from flask import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from sandbox import db, errors
from sandbox.callbacks import outbox
from sandbox.callbacks.dispatcher import Outcome, dispatcher_of
from sandbox.service import current
from sandbox.views.common import load_body, load_query, render

bp = Blueprint("control_callbacks", __name__, url_prefix="/sandbox")

STATUSES = ("PENDING", "DELIVERED", "FAILED")


class ListNotificationsQuery(Schema):
    class Meta:
        unknown = RAISE

    mchid = fields.String(validate=validate.Length(max=32))
    order = fields.String(validate=validate.Length(max=32),
                          metadata={"description": "out_order_no"})
    status = fields.String(validate=validate.OneOf(STATUSES))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10**9))


class SendTestNotificationRequest(Schema):
    class Meta:
        unknown = RAISE

    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False,
                     validate=validate.Length(max=255))
    mchid = fields.String(required=True, validate=validate.Length(min=1, max=32))
    event_type = fields.String(load_default="PAYSCORE.USER_PAID",
                               validate=validate.OneOf(sorted(outbox.SUMMARIES)))


def _outcome(outcome: Outcome) -> dict:
    return {"id": outcome.notification_id, "status": outcome.status,
            "attempts": [outbox.attempt_view(a) for a in outcome.attempts]}


@bp.get("/notifications")
def list_notifications():
    """Callbacks in the outbox, newest first, with attempt counts and the next attempt time.
    ---
    get:
      operationId: list_notifications
      tags: [sandbox]
      parameters:
      - in: query
        schema: ListNotificationsQuery
      responses:
        "200": {description: "{total, limit, offset, data: [notification]}"}
    """
    query = load_query(ListNotificationsQuery)
    with db.read_tx(current().engine) as conn:
        return render(outbox.list_notifications(
            conn, mchid=query.get("mchid"), out_order_no=query.get("order"),
            status=query.get("status"), limit=query["limit"], offset=query["offset"]))


@bp.get("/notifications/<notification_id>")
def get_notification(notification_id: str):
    """One callback: its decrypted payload and every delivery attempt.
    ---
    get:
      operationId: get_notification
      tags: [sandbox]
      parameters:
      - {in: path, name: notification_id, required: true, schema: {type: string}}
      responses:
        "200": {description: the notification with its attempt log}
    """
    with db.read_tx(current().engine) as conn:
        found = outbox.get_notification(conn, notification_id[:36])
    if found is None:
        raise errors.ResourceNotExists("通知不存在")
    return render(found)


@bp.post("/notifications/<notification_id>/redeliver")
def redeliver_notification(notification_id: str):
    """Send a callback again now, whatever its status (a delivered one gets a new attempt).
    ---
    post:
      operationId: redeliver_notification
      tags: [sandbox]
      parameters:
      - {in: path, name: notification_id, required: true, schema: {type: string}}
      responses:
        "200": {description: "{id, status, attempts}: the attempt just made"}
    """
    return render(_outcome(dispatcher_of(current()).redeliver(notification_id[:36])))


@bp.post("/notifications/drain")
def drain_notifications():
    """Deliver every callback due now on the sandbox clock, synchronously.
    ---
    post:
      operationId: drain_notifications
      tags: [sandbox]
      responses:
        "200": {description: "counts: attempts, delivered, pending, failed, held, still_due"}
    """
    return render(dispatcher_of(current()).drain())


@bp.post("/notifications/test")
def send_test_notification():
    """Send one signed, encrypted sample callback to any URL (no retries); returns the attempt.
    ---
    post:
      operationId: send_test_notification
      tags: [sandbox]
      requestBody:
        required: true
        content: {application/json: {schema: SendTestNotificationRequest}}
      responses:
        "200": {description: "{id, status, attempts}"}
    """
    body = load_body(SendTestNotificationRequest)
    return render(_outcome(dispatcher_of(current()).send_test(
        body["url"], body["mchid"], body["event_type"])))
