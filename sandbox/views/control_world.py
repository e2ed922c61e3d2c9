"""The control API for the simulated world under /sandbox/: users, their actions, jobs, timelines.

Not part of WeChat's API (unsigned, loopback only), like sandbox.views.control. Moving the
clock is there (`POST /sandbox/clock/advance` runs the jobs that fall due).
"""

from __future__ import annotations

import json

from flask import Blueprint, request
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from sandbox import errors
from sandbox.service import current
from sandbox.views.common import render
from sandbox.world.behaviour import World

bp = Blueprint("control_world", __name__, url_prefix="/sandbox")

ACTIONS = ("confirm", "decline", "pay", "fail_next_deduction", "default", "complain",
           "flag_malicious")


class _Strict(Schema):
    class Meta:
        unknown = "raise"


class SeedUsersRequest(_Strict):
    count = fields.Integer(required=True, strict=True,
                           validate=validate.Range(min=0, max=1_000_000))
    seed = fields.Integer(load_default=42, strict=True)


class ActAsUserRequest(_Strict):
    action = fields.String(required=True, validate=validate.OneOf(ACTIONS))
    mchid = fields.String(validate=validate.Length(min=1, max=32))
    out_order_no = fields.String(validate=validate.Length(min=1, max=32))
    amount = fields.Integer(strict=True, validate=validate.Range(min=1, max=10**12),
                            metadata={"description": "fen, for `default` without an order"})
    count = fields.Integer(strict=True, validate=validate.Range(min=1, max=100),
                           metadata={"description": "how many deductions fail"})

    @validates_schema
    def _order_or_amount(self, data, **kw):
        if data["action"] == "default" and "amount" not in data and "out_order_no" not in data:
            raise ValidationError("default needs an order (mchid, out_order_no) or an amount",
                                  "amount")


class ListJobsQuery(_Strict):
    due_before = fields.Integer(validate=validate.Range(min=0))
    kind = fields.String(validate=validate.Length(max=32))
    ref = fields.String(validate=validate.Length(max=128))
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))


def _load(schema: type[Schema], data: object, location: str = "body") -> dict:
    if not isinstance(data, dict):
        raise errors.param_error("/", "body must be a JSON object", location=location)
    try:
        return schema().load(data)
    except ValidationError as exc:
        field, issue = next(iter(exc.messages.items()))  # type: ignore[union-attr]
        raise errors.param_error(field, json.dumps(issue, ensure_ascii=False),
                                 location=location) from None


def _body() -> object:
    raw = request.get_data(cache=True)
    if not raw:
        return {}
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise errors.param_error("/", "body is not valid UTF-8 JSON") from None


def _openid(openid: str) -> str:
    if not 1 <= len(openid) <= 128:
        raise errors.param_error("openid", "1 to 128 characters", location="path")
    return openid


def _world() -> World:
    return World(current())


@bp.get("/users/<openid>")
def get_user(openid: str):
    """A simulated user: profile, eligibility (with reason), risk tier, score history.
    ---
    get:
      operationId: get_user
      tags: [sandbox]
      parameters:
      - {in: path, name: openid, required: true, schema: {type: string, maxLength: 128}}
      responses:
        "200": {description: "the user; an unseeded openid becomes its deterministic user"}
    """
    sb = current()
    return render(_world().get_user(_openid(openid), sb.clock.now_us()))


@bp.post("/users/seed")
def seed_users():
    """Seed a reproducible population (`{"count": 50000, "seed": 42}`); existing users stay.
    ---
    post:
      operationId: seed_users
      tags: [sandbox]
      requestBody:
        required: true
        content: {application/json: {schema: SeedUsersRequest}}
      responses:
        "200": {description: how many users were inserted}
    """
    body = _load(SeedUsersRequest, _body())
    return render(_world().seed_users(body["count"], body["seed"], current().clock.now_us()))


@bp.post("/users/<openid>/act")
def act_as_user(openid: str):
    """Make the user act now: confirm, decline, pay, fail_next_deduction, default, complain,
    flag_malicious (`mchid` and `out_order_no` name the order where one is involved).
    ---
    post:
      operationId: act_as_user
      tags: [sandbox]
      parameters:
      - {in: path, name: openid, required: true, schema: {type: string, maxLength: 128}}
      requestBody:
        required: true
        content: {application/json: {schema: ActAsUserRequest}}
      responses:
        "200": {description: the user's profile after the action, and the order if any}
    """
    body = _load(ActAsUserRequest, _body())
    return render(_world().act_as_user(_openid(openid), body, current().clock.now_us()))


@bp.get("/jobs")
def list_jobs():
    """Pending timed jobs in the order they will run (`?due_before=<µs>&kind=&ref=&limit=`).
    ---
    get:
      operationId: list_jobs
      tags: [sandbox]
      parameters:
      - in: query
        schema: ListJobsQuery
      responses:
        "200": {description: pending jobs, earliest first}
    """
    query = _load(ListJobsQuery, request.args.to_dict(), location="query")
    return render(_world().list_jobs(**query))


@bp.get("/orders/<mchid>/<out_order_no>/timeline")
def get_order_timeline(mchid: str, out_order_no: str):
    """An order's timeline: every transition and note (overdue stages, ...) in order.
    ---
    get:
      operationId: get_order_timeline
      tags: [sandbox]
      parameters:
      - {in: path, name: mchid, required: true, schema: {type: string}}
      - {in: path, name: out_order_no, required: true, schema: {type: string}}
      responses:
        "200": {description: the order's events, oldest first}
    """
    return render(_world().get_order_timeline(mchid, out_order_no))
