"""Request schemas of the fault control API (sandbox.views.control_faults)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

SCENARIO_ID = validate.Length(1, 32)


class ArmFaultRequest(Schema):
    effect = fields.String(required=True, metadata={"description": "an effect kind, see "
                                                                   "GET /sandbox/faults/kinds"})
    params = fields.Dict(keys=fields.String(), load_default=dict)
    scenario_id = fields.String(validate=SCENARIO_ID)
    mchid = fields.String(validate=validate.Length(1, 32))
    out_order_no = fields.String(validate=validate.Length(1, 32))
    openid = fields.String(validate=validate.Length(1, 128))
    operation = fields.String(validate=validate.Length(1, 48), metadata={
        "description": "an operationId of the /v3/ API, or a callback event type"})
    remaining = fields.Integer(validate=validate.Range(1, 10**9),
                               metadata={"description": "the next N matching calls"})
    probability = fields.Float(validate=validate.Range(0, 1, min_inclusive=False))
    seed = fields.Integer(validate=validate.Range(-(2**62), 2**62),
                          metadata={"description": "probability draws are reproducible: "
                                                   "default the fault id"})
    window_s = fields.Float(validate=validate.Range(0, 366 * 86400, min_inclusive=False),
                            metadata={"description": "active this long on the sandbox clock"})
    start_in_s = fields.Float(validate=validate.Range(0, 366 * 86400),
                              metadata={"description": "the window starts this much later"})


class ListFaultsQuery(Schema):
    scenario_id = fields.String(validate=SCENARIO_ID)
    active = fields.Boolean()
    limit = fields.Integer(load_default=200, validate=validate.Range(1, 1000))


class DisarmFaultsQuery(Schema):
    scenario_id = fields.String(validate=SCENARIO_ID)
    all = fields.Boolean(load_default=False,
                         metadata={"description": "without scenario_id: disarm every fault"})


class ListRequestsQuery(Schema):
    scenario_id = fields.String(validate=SCENARIO_ID)
    mchid = fields.String(validate=validate.Length(1, 32))
    out_order_no = fields.String(validate=validate.Length(1, 32))
    operation = fields.String(validate=validate.Length(1, 48))
    fault = fields.String(validate=validate.Length(1, 64),
                          metadata={"description": "only requests that took this effect"})
    faulted = fields.Boolean(metadata={"description": "only requests that took a fault"})
    since_id = fields.Integer(load_default=0, validate=validate.Range(0, 2**62),
                              metadata={"description": "only log rows after this id"})
    limit = fields.Integer(load_default=500, validate=validate.Range(1, 5000))


class RotateCertificateRequest(Schema):
    mchid = fields.String(validate=validate.Length(1, 32), metadata={
        "description": "rotate for this merchant only; omitted: for every merchant"})
    scenario_id = fields.String(validate=SCENARIO_ID)


class SigningModeRequest(Schema):
    mode = fields.String(required=True,
                         validate=validate.OneOf(["public_key", "migrating", "certificate"]))
    ratio = fields.Float(load_default=0.5, validate=validate.Range(0, 1))
    scenario_id = fields.String(validate=SCENARIO_ID)
