"""A merchant's admission policy for the gray release, loaded from YAML or JSON.

    name: power bank + weekly card + hotel
    mode: need_confirm
    products:
      - id: power_bank
        title: deposit-free power bank (deposit up to 299 yuan)
        min_score: 550          # Pay Score threshold configured for this product
        risk_fund: 29900        # fen: the deposit Pay Score waives (create's risk_fund.amount)
        amount: [200, 2000]     # fen: what a finished order costs, drawn uniformly
        share: 0.7              # share of sampled users who ask for this product

Shares are normalised to 1. Examples: loadtests/policies/*.yaml.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates

SCORE_MIN, SCORE_MAX = 300, 850


class PolicyError(ValueError):
    """The policy file is unreadable or invalid; the message names the field."""


@dataclass(frozen=True)
class Product:
    id: str
    title: str
    min_score: int
    risk_fund: int
    amount_min: int
    amount_max: int
    share: float


@dataclass(frozen=True)
class Policy:
    name: str
    mode: str
    products: tuple[Product, ...]

    def with_threshold(self, threshold: int) -> Policy:
        """The same policy with every product's threshold set to `threshold` (for sweeps)."""
        return Policy(self.name, self.mode, tuple(
            Product(p.id, p.title, threshold, p.risk_fund, p.amount_min, p.amount_max, p.share)
            for p in self.products))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode,
                "products": [p.__dict__ for p in self.products]}


class _ProductSchema(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,31}$"))
    title = fields.String(load_default="")
    min_score = fields.Integer(required=True,
                               validate=validate.Range(min=SCORE_MIN, max=SCORE_MAX))
    risk_fund = fields.Integer(required=True, validate=validate.Range(min=1))
    amount = fields.List(fields.Integer(validate=validate.Range(min=0)), required=True,
                         validate=validate.Length(equal=2))
    share = fields.Float(load_default=1.0, validate=validate.Range(min=0, min_inclusive=False))

    @validates("amount")
    def _ordered(self, value: list[int], **_kw: Any) -> None:
        if value[0] > value[1]:
            raise ValidationError("amount is [min, max] with min <= max")


class _PolicySchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    description = fields.String(load_default="")
    mode = fields.String(load_default="need_confirm",
                         validate=validate.OneOf(["need_confirm", "pre_authorised"]))
    products = fields.List(fields.Nested(_ProductSchema), required=True,
                           validate=validate.Length(min=1, max=20))

    @post_load
    def _build(self, data: dict[str, Any], **_kw: Any) -> Policy:
        ids = [p["id"] for p in data["products"]]
        if len(set(ids)) != len(ids):
            raise ValidationError("product ids must be unique", "products")
        total = sum(p["share"] for p in data["products"])
        products = tuple(Product(p["id"], p["title"] or p["id"], p["min_score"], p["risk_fund"],
                                 p["amount"][0], p["amount"][1], p["share"] / total)
                         for p in data["products"])
        for product in products:
            if product.amount_max > product.risk_fund:
                # complete's total may not exceed the risk fund (reference §2.5)
                raise ValidationError(f"{product.id}: amount max exceeds risk_fund", "products")
        return Policy(data["name"], data["mode"], products)


def parse_policy(data: Any) -> Policy:
    try:
        return _PolicySchema().load(data)
    except ValidationError as exc:
        raise PolicyError(f"invalid policy: {exc.messages}") from None


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy {path}: {exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                          f"{exc}") from None
    return parse_policy(data)


POLICIES_DIR = Path(__file__).with_name("policies")


def example_policies() -> list[Path]:
    return sorted(POLICIES_DIR.glob("*.yaml"))
