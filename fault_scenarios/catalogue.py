"""The scenario catalogue (catalogue.yaml), loaded and validated at import.

A typo must fail at once, with the scenario and the field named, never halfway through a run:
an unknown effect kind or effect parameter, an unknown operation, an unknown step or judge, a
judge parameter the judge does not take, a duplicate id, or not exactly 30 scenarios.

The effect kinds, their parameters and the operations are the sandbox's (sandbox.faults and the
/v3/ operationIds). They are written out here rather than imported, because the scenarios reach
the sandbox over HTTP only: `tests/test_scenarios_catalogue.py` checks these lists against the
sandbox's registry, and the runner checks them against the live sandbox's
`GET /sandbox/faults/kinds` before it arms anything.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from fault_scenarios.judges import JUDGES

CATALOGUE_FILE = Path(__file__).with_name("catalogue.yaml")
SIZE = 30
CATEGORIES = ("transport", "protocol", "crypto", "callbacks", "state", "business", "go-live")

# effect kind -> its parameters (sandbox/faults/params.py)
EFFECTS: dict[str, frozenset[str]] = {
    "http_error": frozenset({"code", "status", "message", "phase"}),
    "delay": frozenset({"seconds", "phase"}),
    "reset_before_commit": frozenset(),
    "reset_after_commit": frozenset(),
    "truncated_body": frozenset({"keep", "signed"}),
    "garbage_body": frozenset({"body", "signed"}),
    "html_gateway": frozenset({"status", "phase"}),
    "bad_signature": frozenset({"claim_paid"}),
    "probe_signature": frozenset(),
    "unsigned": frozenset(),
    "rotated_serial": frozenset(),
    "public_key_signing": frozenset({"mode", "ratio"}),
    "callback_duplicate": frozenset({"copies"}),
    "callback_concurrent_duplicates": frozenset({"copies"}),
    "callback_reorder": frozenset({"hold_event", "until_event", "max_hold_s", "release_after_s"}),
    "callback_delay": frozenset({"hold_s"}),
    "callback_drop": frozenset(),
    "callback_tamper": frozenset({"target"}),
    "callback_stale_timestamp": frozenset({"age_s"}),
    "callback_probe_signature": frozenset(),
    "callback_mismatched_content": frozenset({"field", "value"}),
    "callback_replay": frozenset({"after_s"}),
    "outage": frozenset({"status", "hold_callbacks", "hold_step_s"}),
}
# One-shot actions: scoped to the merchant only, no trigger.
ACTIONS = frozenset({"rotated_serial", "public_key_signing"})
# Effects that bend callbacks (outage also fails API calls); the others bend API answers.
CALLBACK_EFFECTS = frozenset({e for e in EFFECTS if e.startswith("callback_")} | {"outage"})
OPERATIONS = frozenset({
    "create_service_order", "query_service_order", "cancel_service_order",
    "modify_service_order", "complete_service_order", "pay_service_order", "sync_service_order",
    "direct_complete_service_order", "create_permission", "query_permission_by_code",
    "terminate_permission_by_code", "query_permission_by_openid",
    "terminate_permission_by_openid", "query_user_service_state", "create_refund",
    "query_refund", "download_certificates"})
EVENTS = frozenset({"PAYSCORE.USER_CONFIRM", "PAYSCORE.USER_PAID", "PAYSCORE.USER_OPEN_SERVICE",
                    "PAYSCORE.USER_CLOSE_SERVICE", "REFUND.SUCCESS", "REFUND.ABNORMAL",
                    "REFUND.CLOSED"})
SCOPES = ("user", "order", "merchant")
# Parameter values the runner fills in per run (see runner.Run.render).
PLACEHOLDERS = frozenset({"$past_read_timeout", "$order_reply"})
MERCHANT_STATES = ("PENDING_CONFIRM", "IN_SERVICE", "AWAITING_PAYMENT", "PAID", "CANCELLED",
                   "EXPIRED", "DEPOSIT_FALLBACK", "FAILED", "UNKNOWN")
ORDER_STATES = ("CREATED", "DOING", "DONE", "REVOKED", "EXPIRED")


class CatalogueError(ValueError):
    """The catalogue is malformed; the message names the scenario and the field."""


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class FaultSchema(_Strict):
    effect = fields.String(required=True, validate=validate.OneOf(sorted(EFFECTS)))
    params = fields.Dict(keys=fields.String(), load_default=dict)
    operation = fields.String(validate=validate.OneOf(sorted(OPERATIONS | EVENTS)))
    scope = fields.String(load_default="user", validate=validate.OneOf(SCOPES))
    remaining = fields.Integer(validate=validate.Range(1, 1000))
    probability = fields.Float(validate=validate.Range(0, 1, min_inclusive=False))
    window_s = fields.Float(validate=validate.Range(0, 366 * 86400, min_inclusive=False))
    required = fields.Boolean(load_default=True, metadata={
        "description": "the scenario proves nothing unless this fault was taken"})

    @validates_schema
    def _coherent(self, data: dict, **_: Any) -> None:
        effect = data["effect"]
        unknown = sorted(set(data["params"]) - EFFECTS[effect])
        if unknown:
            raise ValidationError(f"{effect} has no parameter {unknown[0]!r}; it takes "
                                  f"{sorted(EFFECTS[effect]) or 'none'}", "params")
        for name, value in data["params"].items():
            if isinstance(value, str) and value.startswith("$") and value not in PLACEHOLDERS:
                raise ValidationError(f"unknown placeholder {value!r}", f"params.{name}")
        if effect in ACTIONS:
            extra = [k for k in ("operation", "remaining", "probability", "window_s")
                     if k in data]
            if extra or data["scope"] != "merchant":
                raise ValidationError(f"{effect} is a one-shot action: scope merchant, no "
                                      "operation and no trigger", extra[0] if extra else "scope")
        elif data.get("operation") in EVENTS and effect not in CALLBACK_EFFECTS:
            raise ValidationError(f"{effect} bends API answers, not callbacks", "operation")
        elif data.get("operation") in OPERATIONS and effect in CALLBACK_EFFECTS - {"outage"}:
            raise ValidationError(f"{effect} bends callbacks, not API answers", "operation")


def _one_of(*names: str) -> validate.OneOf:
    return validate.OneOf(names)


class RentArgs(_Strict):
    mode = fields.String(load_default="need_confirm", validate=_one_of("need_confirm",
                                                                       "pre_authorised"))
    deposit = fields.Integer(load_default=9900, validate=validate.Range(1, 10**7))


class AmountArgs(_Strict):
    amount = fields.Integer(required=True, validate=validate.Range(0, 10**7))


class UserArgs(_Strict):
    action = fields.String(required=True, validate=_one_of(
        "fail_next_deduction", "flag_malicious", "pay", "decline"))
    count = fields.Integer(validate=validate.Range(1, 100))


class AdvanceArgs(_Strict):
    by = fields.String(required=True, validate=validate.Regexp(r"^(\d+[smhdw])+$"))


class SettleArgs(_Strict):
    order = fields.String(validate=validate.OneOf(ORDER_STATES), metadata={
        "description": "wait (bounded) until the provider order is in this state first"})


class WaitArgs(_Strict):
    states = fields.List(fields.String(validate=validate.OneOf(MERCHANT_STATES)), required=True)


class LabelArgs(_Strict):
    label = fields.String(required=True, validate=validate.Length(1, 40))


class CountArgs(_Strict):
    count = fields.Integer(required=True, validate=validate.Range(1, 50))


class RecoveryArgs(_Strict):
    max_wait_s = fields.Float(validate=validate.Range(1, 600))
    interval_s = fields.Float(load_default=0.5, validate=validate.Range(0.05, 30))


class NoArgs(_Strict):
    pass


class CancelArgs(_Strict):
    reason = fields.String(validate=validate.Length(1, 30))


# step kind -> how its arguments are validated; the runner (steps.py) implements each.
STEPS: dict[str, type[Schema]] = {
    "authorize": NoArgs, "user": UserArgs, "rent": RentArgs, "rent_burst": CountArgs,
    "confirm": NoArgs, "finish": AmountArgs, "cancel": CancelArgs, "refund": AmountArgs,
    "reconcile": NoArgs, "advance": AdvanceArgs, "drain": NoArgs, "settle": SettleArgs,
    "wait_rental": WaitArgs, "snapshot": LabelArgs, "arm": FaultSchema, "disarm": NoArgs,
    "await_recovery": RecoveryArgs,
}
# A scalar step argument stands for this field: `advance: 25h`, `snapshot: before`.
SCALAR_ARG = {"advance": "by", "snapshot": "label", "finish": "amount", "refund": "amount",
              "rent_burst": "count", "wait_rental": "states"}


@dataclass(frozen=True)
class Step:
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    id: int
    slug: str
    title: str
    category: str
    sandbox: str  # what the sandbox does
    merchant: str  # what a correct merchant must do
    remedy: str  # printed when the scenario fails
    faults: tuple[dict[str, Any], ...]
    steps: tuple[Step, ...]
    judge: str
    judge_params: dict[str, Any]

    @property
    def needs_idle_user(self) -> bool:
        """A need-confirm rental: the user must not confirm or decline on their own."""
        return any(step.kind in ("rent_burst", "await_recovery") or (
            step.kind == "rent" and step.args.get("mode") == "need_confirm")
            for step in self.steps)

    @property
    def moves_clock(self) -> bool:
        return any(step.kind == "advance" for step in self.steps)

    @property
    def effects(self) -> list[str]:
        armed = list(self.faults) + [s.args for s in self.steps if s.kind == "arm"]
        return sorted({f["effect"] for f in armed})

    @property
    def verdict(self) -> str:
        """How the verdict is reached: the judge's first doc line and its parameters."""
        doc = (inspect.getdoc(JUDGES[self.judge]) or "").splitlines()[0]
        params = ", ".join(f"{k}={v}" for k, v in sorted(self.judge_params.items()))
        return f"{self.judge}({params}): {doc}"


class JudgeSchema(_Strict):
    name = fields.String(required=True, validate=validate.OneOf(sorted(JUDGES)))
    params = fields.Dict(keys=fields.String(), load_default=dict)

    @validates_schema
    def _params_known(self, data: dict, **_: Any) -> None:
        signature = inspect.signature(JUDGES[data["name"]])
        accepted = {n for n, p in signature.parameters.items()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY}
        unknown = sorted(set(data["params"]) - accepted)
        if unknown:
            raise ValidationError(f"judge {data['name']} takes no parameter {unknown[0]!r}; "
                                  f"it takes {sorted(accepted) or 'none'}", "params")


class ScenarioSchema(_Strict):
    id = fields.Integer(required=True, validate=validate.Range(1, SIZE))
    slug = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]{2,40}$"))
    title = fields.String(required=True, validate=validate.Length(5, 100))
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    sandbox = fields.String(required=True, validate=validate.Length(10, 600))
    merchant = fields.String(required=True, validate=validate.Length(10, 600))
    remedy = fields.String(required=True, validate=validate.Length(10, 600))
    faults = fields.List(fields.Nested(FaultSchema), load_default=list)
    steps = fields.List(fields.Raw(), required=True, validate=validate.Length(1, 40))
    judge = fields.Nested(JudgeSchema, required=True)


def _step(raw: Any, where: str) -> Step:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise CatalogueError(f"{where}: a step is a one-key mapping, e.g. `- finish: 350`")
    kind, args = next(iter(raw.items()))
    if kind not in STEPS:
        raise CatalogueError(f"{where}: unknown step {kind!r}; known: {', '.join(sorted(STEPS))}")
    if args is None:
        args = {}
    elif not isinstance(args, dict):
        if kind not in SCALAR_ARG:
            raise CatalogueError(f"{where}: step {kind} takes a mapping of arguments")
        args = {SCALAR_ARG[kind]: args}
    try:
        loaded = STEPS[kind]().load(args)
    except ValidationError as exc:
        raise CatalogueError(f"{where} ({kind}): {exc.messages}") from None
    return Step(kind, loaded)


def _scenario(raw: Any, index: int) -> Scenario:
    label = f"scenario #{index + 1}"
    if isinstance(raw, dict):
        label = f"scenario {raw.get('id', '?')} ({raw.get('slug', '?')})"
    try:
        data = ScenarioSchema().load(raw)
    except ValidationError as exc:
        raise CatalogueError(f"{label}: {exc.messages}") from None
    steps = tuple(_step(s, f"{label}: steps[{i}]") for i, s in enumerate(data["steps"]))
    for fault in data["faults"]:
        if fault["scope"] == "order":
            raise CatalogueError(f"{label}: an order-scoped fault can only be armed by an "
                                 "`arm` step, once the order exists")
    return Scenario(id=data["id"], slug=data["slug"], title=data["title"],
                    category=data["category"], sandbox=data["sandbox"].strip(),
                    merchant=data["merchant"].strip(), remedy=data["remedy"].strip(),
                    faults=tuple(data["faults"]), steps=steps,
                    judge=data["judge"]["name"], judge_params=data["judge"]["params"])


def parse(text: str, expected_size: int = SIZE) -> list[Scenario]:
    """Scenarios from catalogue YAML text; CatalogueError on the first problem."""
    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise CatalogueError(f"catalogue is not valid YAML: {exc}") from None
    raw = doc.get("scenarios") if isinstance(doc, dict) else None
    if not isinstance(raw, list):
        raise CatalogueError("catalogue: a top-level `scenarios:` list is required")
    scenarios = [_scenario(item, i) for i, item in enumerate(raw)]
    seen: dict[int, str] = {}
    slugs: set[str] = set()
    for s in scenarios:
        if s.id in seen:
            raise CatalogueError(f"duplicate scenario id {s.id} ({seen[s.id]} and {s.slug})")
        if s.slug in slugs:
            raise CatalogueError(f"duplicate scenario slug {s.slug!r}")
        seen[s.id] = s.slug
        slugs.add(s.slug)
    if len(scenarios) != expected_size:
        raise CatalogueError(f"the catalogue must hold exactly {expected_size} scenarios, "
                             f"not {len(scenarios)}")
    return sorted(scenarios, key=lambda s: s.id)


@cache
def load() -> tuple[Scenario, ...]:
    return tuple(parse(CATALOGUE_FILE.read_text(encoding="utf-8")))


def by_id() -> dict[int, Scenario]:
    return {s.id: s for s in load()}


def select(only: str | None) -> list[Scenario]:
    """Scenarios by id list ("1,5,10-12"); all when `only` is empty."""
    scenarios = by_id()
    if not only:
        return list(scenarios.values())
    wanted: list[int] = []
    for part in only.split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            ids = range(int(low), int(high or low) + 1)
        except ValueError:
            raise CatalogueError(f"--only: {part!r} is not an id or a range like 3-7") from None
        wanted.extend(ids)
    unknown = sorted(set(wanted) - scenarios.keys())
    if unknown:
        raise CatalogueError(f"--only: no scenario {unknown[0]} (ids are 1-{SIZE})")
    return [scenarios[i] for i in sorted(set(wanted))]


SCENARIOS = load()
