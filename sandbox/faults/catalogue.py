"""The effect kinds as data: for the control API (GET /sandbox/faults/kinds), the dashboard
and the scenario catalogue's validation."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, missing, validate

from sandbox.faults.effects import KINDS


def _param(field: fields.Field) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(field).__name__.lower()}
    if field.load_default is not missing and not callable(field.load_default):
        out["default"] = field.load_default
    for rule in field.validators:
        if isinstance(rule, validate.OneOf):
            out["choices"] = list(rule.choices)
        elif isinstance(rule, validate.Range):
            out.update({k: v for k, v in (("min", rule.min), ("max", rule.max)) if v is not None})
    if field.metadata.get("description"):
        out["description"] = field.metadata["description"]
    return out


def entries() -> list[dict[str, Any]]:
    """One entry per effect kind: name, what it does, where it applies, its parameters."""
    return [{"effect": effect.name, "summary": effect.summary, "hooks": list(effect.hooks),
             "action": effect.is_action, "sticky": effect.sticky,
             "params": {name: _param(field) for name, field
                        in effect.params._declared_fields.items()}}
            for effect in sorted(KINDS.values(), key=lambda e: e.name)]
