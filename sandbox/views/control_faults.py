"""The fault control API under /sandbox/: arm, list and disarm faults, and read the evidence.

Test-only like the rest of /sandbox/ (unsigned, loopback). The scenario runner arms faults
here, drives the merchant, then judges from GET /sandbox/requests (every fault taken is in the
request log with its scenario id) and the callbacks' delivery attempts.
"""

from __future__ import annotations

import json

from flask import Blueprint, current_app, request
from marshmallow import Schema, ValidationError

from sandbox import errors
from sandbox.faults import catalogue, schemas
from sandbox.faults.backend import Faults, first_error
from sandbox.service import current
from sandbox.views.common import load_query, render

bp = Blueprint("control_faults", __name__, url_prefix="/sandbox")


def _faults() -> Faults:
    return current().extras["fault_control"]  # type: ignore[return-value]


def _body(schema: type[Schema]) -> dict:
    """The JSON body (optional, nulls ignored) validated against `schema`; PARAM_ERROR else."""
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise errors.param_error("/", "body is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise errors.param_error("/", "body must be a JSON object")
    try:
        return schema().load({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        raise errors.param_error(*first_error(exc.messages, "")) from None


def operations() -> set[str]:
    """The operationIds of the /v3/ API: the view names of its routes."""
    return {rule.endpoint.rsplit(".", 1)[-1] for rule in current_app.url_map.iter_rules()
            if rule.rule.startswith("/v3/")}


@bp.get("/faults")
def list_faults():
    """Faults, newest first (filter by scenario or active).
    ---
    get:
      operationId: list_faults
      tags: [sandbox]
      parameters:
      - in: query
        schema: ListFaultsQuery
      responses:
        "200": {description: "faults: scope, trigger, taken, status"}
    """
    return render(_faults().list_faults(**load_query(schemas.ListFaultsQuery)))


@bp.post("/faults")
def arm_fault():
    """Arm a fault: an effect kind, its params, a scope and a trigger.
    ---
    post:
      operationId: arm_fault
      tags: [sandbox]
      requestBody:
        required: true
        content: {application/json: {schema: ArmFaultRequest}}
      responses:
        "201": {description: the armed fault}
    """
    return render(_faults().arm_fault(_body(schemas.ArmFaultRequest), operations()), 201)


@bp.get("/faults/kinds")
def list_fault_kinds():
    """The closed set of effect kinds, the /v3/ operations and the callback events.
    ---
    get:
      operationId: list_fault_kinds
      tags: [sandbox]
      responses:
        "200": {description: "effects (with params), operations, events"}
    """
    from sandbox.faults.params import EVENTS

    return render({"effects": catalogue.entries(), "operations": sorted(operations()),
                   "events": list(EVENTS)})


@bp.get("/faults/<int:fault_id>")
def get_fault(fault_id: int):
    """One fault.
    ---
    get:
      operationId: get_fault
      tags: [sandbox]
      parameters:
      - {in: path, name: fault_id, required: true, schema: {type: integer}}
      responses:
        "200": {description: the fault}
    """
    return render(_faults().get_fault(fault_id))


@bp.delete("/faults/<int:fault_id>")
def disarm_fault(fault_id: int):
    """Disarm a fault (a one-shot action is undone).
    ---
    delete:
      operationId: disarm_fault
      tags: [sandbox]
      parameters:
      - {in: path, name: fault_id, required: true, schema: {type: integer}}
      responses:
        "200": {description: the disarmed fault}
    """
    return render(_faults().disarm_fault(fault_id))


@bp.delete("/faults")
def disarm_faults():
    """Disarm a scenario's faults (or, with all=true, every fault).
    ---
    delete:
      operationId: disarm_faults
      tags: [sandbox]
      parameters:
      - in: query
        schema: DisarmFaultsQuery
      responses:
        "200": {description: the ids disarmed}
    """
    query = load_query(schemas.DisarmFaultsQuery)
    if query.get("scenario_id") is None and not query["all"]:
        raise errors.param_error("scenario_id", "name the scenario, or pass all=true",
                                 location="query")
    return render(_faults().disarm_faults(query.get("scenario_id")))


@bp.post("/faults/rotate-certificate")
def rotate_certificate():
    """Rotate the platform certificate: a new one signs (for `mchid` only, if given).
    ---
    post:
      operationId: rotate_certificate
      tags: [sandbox]
      requestBody:
        content: {application/json: {schema: RotateCertificateRequest}}
      responses:
        "201": {description: "the rotated_serial fault; state.serial is the new certificate"}
    """
    return render(_faults().rotate_certificate(**_body(schemas.RotateCertificateRequest)), 201)


@bp.post("/merchants/<mchid>/signing-mode")
def set_signing_mode(mchid: str):
    """Switch which platform key signs a merchant's answers and callbacks (§5.3-§5.4).
    ---
    post:
      operationId: set_signing_mode
      tags: [sandbox]
      parameters:
      - {in: path, name: mchid, required: true, schema: {type: string}}
      requestBody:
        required: true
        content: {application/json: {schema: SigningModeRequest}}
      responses:
        "201": {description: "the public_key_signing fault; disarm it to switch back"}
    """
    return render(_faults().set_signing_mode(mchid[:32], **_body(schemas.SigningModeRequest)),
                  201)


@bp.get("/requests")
def list_requests():
    """The request log in order, for judges: status, code, signature verdict, fault, scenario.
    ---
    get:
      operationId: list_requests
      tags: [sandbox]
      parameters:
      - in: query
        schema: ListRequestsQuery
      responses:
        "200": {description: "requests, last_id (pass it as since_id to read on)"}
    """
    return render(_faults().list_requests(**load_query(schemas.ListRequestsQuery)))
