"""The contract: openapi.yaml is current, and the app honours it under schemathesis.

schemathesis (v4) generates positive and negative requests for every /v3/ operation from the
served contract. Each request is signed like a merchant signs it (merchant_kit.protocol over
the exact bytes and target sent), so the generated data reaches the operations instead of
stopping at the signature check. Default checks apply, plus one of ours (below).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from urllib.parse import urlencode

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from marshmallow import fields, validate
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NotSet
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode

from merchant_kit import protocol
from sandbox import openapi
from sandbox.testing import SignedClient, add_merchant, make_sandbox

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {"Accept": "application/json", "User-Agent": "payscore-contract-tests/1"}
MAX_EXAMPLES = 25
# No shrinking: a failure's report already carries the request (curl) that broke the rule.
PHASES = (Phase.explicit, Phase.generate)

# WeChat answers well-formed requests that break a business rule with 400 (INVALID_REQUEST
# "请求参数符合参数格式，但不符合业务规则", PARAM_ERROR for the amount formula, state errors...;
# reference §4.3), so a positive request may meet a 400. `no_schema_level_refusal` below keeps
# the check honest: such a 400 must not come from the field-level rules the contract states.
CONFIG = {
    # Authorization is ours to sign (below); negative data goes to the parameters and bodies.
    # test_security.py covers missing and forged signatures, and schemathesis' ignored_auth
    # check still probes every operation without credentials.
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES,
                   "with-security-parameters": False},
    "checks": {"positive_data_acceptance": {
        "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429"]}},
}


def test_committed_contract_is_current():
    committed = (ROOT / "openapi.yaml").read_text(encoding="utf-8")
    assert committed == openapi.spec_yaml(), \
        "openapi.yaml is stale: run `payscore openapi -o openapi.yaml`"


def test_every_operation_is_named_and_tagged():
    spec = openapi.spec_dict()
    ids = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            ids.append(op["operationId"])
            if path.startswith("/v3/"):
                assert op["tags"][0] in ("serviceorder", "permissions", "refunds",
                                         "certificates"), (method, path)
                assert op["security"] == [{"wechatpay": []}]
            else:
                assert path.startswith("/sandbox/") and op["tags"] == ["sandbox"], path
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    v3 = {op["operationId"] for p, item in spec["paths"].items() if p.startswith("/v3/")
          for op in item.values()}
    assert v3 == {
        "create_service_order", "query_service_order", "cancel_service_order",
        "modify_service_order", "complete_service_order", "pay_service_order",
        "sync_service_order", "direct_complete_service_order", "create_permission",
        "query_permission_by_code", "terminate_permission_by_code",
        "query_permission_by_openid", "terminate_permission_by_openid",
        "query_user_service_state", "create_refund", "query_refund", "download_certificates"}
    terminate = spec["paths"]["/v3/payscore/permissions/openid/{openid}/terminate"]["post"]
    assert "204" in terminate["responses"] and "200" not in terminate["responses"]


def test_contract_is_served(app):
    http = app.test_client()
    text = http.get("/sandbox/openapi.yaml")
    assert text.status_code == 200 and text.content_type.startswith("application/yaml")
    assert text.get_data(as_text=True) == openapi.spec_yaml()
    as_json = http.get("/sandbox/openapi.json")
    assert as_json.json == openapi.spec_dict()


def test_contract_states_the_enforced_limits():
    schemas = openapi.spec_dict()["components"]["schemas"]
    create = schemas["CreateServiceOrderRequest"]
    assert create["properties"]["out_order_no"]["maxLength"] == 32
    assert set(create["required"]) >= {"out_order_no", "appid", "service_id",
                                       "service_introduction", "time_range", "risk_fund",
                                       "notify_url"}
    assert create["additionalProperties"] is False
    assert schemas["RiskFund"]["properties"]["name"]["enum"] == [
        "DEPOSIT", "ADVANCE", "CASH_DEPOSIT", "ESTIMATE_ORDER_COST"]
    assert schemas["CreateTimeRange"]["required"] == ["start_time"]
    assert schemas["RefundAmountRequest"]["properties"]["currency"]["enum"] == ["CNY"]
    assert "from" in schemas["RefundAmountRequest"]["properties"]


# ---------------------------------------------------------------- schemathesis


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One sandbox for the whole run, with orders, a paid transaction and a permission that
    generated requests are steered to (positive cases only), so they reach deep rules."""
    app = make_sandbox(tmp_path_factory.mktemp("contract"))
    merchant = add_merchant(app, notify_url="http://127.0.0.1:9/notify")
    client = SignedClient(app, merchant)
    sb = app.extensions["payscore"]
    ids = client.ids()
    orders = []
    for index in range(4):
        no = f"CT{index}"
        pay = [{"name": "租金", "amount": 300}]
        assert client.post("/v3/payscore/serviceorder",
                           client.create_body(no, post_payments=pay)).status_code == 200
        orders.append(no)
        if index >= 1:
            client.post(f"/sandbox/merchants/{merchant.mchid}/orders/{no}/confirm",
                        {"openid": "o_magic_insufficient_balance"}, sign=False)
        if index >= 2:
            end = protocol.payscore_time(sb.clock.now())
            client.post(f"/v3/payscore/serviceorder/{no}/complete",
                        {**ids, "post_payments": pay, "total_amount": 300,
                         "time_range": {"end_time": end}})
    sb.advance(1_000_000)
    client.post("/v3/payscore/serviceorder/CT3/sync",
                {**ids, "type": "Order_Paid",
                 "detail": {"paid_time": protocol.payscore_time(sb.clock.now())}})
    paid = client.get("/v3/payscore/serviceorder", query={**ids, "out_order_no": "CT3"}).json
    transaction_id = paid["collection"]["details"][0]["transaction_id"]
    assert client.post("/v3/refund/domestic/refunds", {
        "transaction_id": transaction_id, "out_refund_no": "CTR1",
        "amount": {"refund": 1, "total": 300, "currency": "CNY"}}).status_code == 200
    client.post("/v3/payscore/permissions", {**ids, "authorization_code": "CTAUTH"})
    client.post(f"/sandbox/merchants/{merchant.mchid}/permissions/authorize",
                {"openid": "o_magic_always_confirms"}, sign=False)
    return {"app": app, "merchant": merchant, "client": client, "ids": ids,
            "path": {"out_order_no": orders, "out_refund_no": ["CTR1"],
                     "authorization_code": ["CTAUTH"], "openid": ["o_magic_always_confirms"]},
            "transaction_id": transaction_id}


@pytest.fixture(scope="module")
def api_schema(world):
    config = SchemathesisConfig.from_dict(CONFIG)
    schema = schemathesis.openapi.from_wsgi("/sandbox/openapi.json", world["app"],
                                            config=config)
    return schema.include(path_regex="^/v3/")


def _bmp(value):
    """Positive strings as the contract means them. Its text fields take 1-3 byte UTF-8
    characters only (stated in words: JSON Schema has no portable pattern for it), so
    generated emoji become "X"."""
    if isinstance(value, str):
        if len(value) > 1 and value.endswith("\n"):
            # hypothesis reads `$` the Python way (it also matches before a final newline);
            # ECMA-262, the contract's dialect, does not, so such a value is not positive data
            value = value[:-1]
        return "".join(ch if ord(ch) <= 0xFFFF else "X" for ch in value)
    if isinstance(value, list):
        return [_bmp(item) for item in value]
    if isinstance(value, dict):
        return {key: _bmp(item) for key, item in value.items()}
    return value


def _pick(value, known: list[str]) -> str | None:
    """One of the known resources (or None: keep the generated one), chosen by the value."""
    index = zlib.crc32(repr(value).encode()) % (len(known) + 1)
    return known[index] if index < len(known) else None


def _steer(case, world) -> None:
    """Positive cases: this merchant's ids, known resources, and (often) consistent amounts,
    chosen from the generated values, so the business rules are what the request meets."""
    for name, known in world["path"].items():
        if name in case.path_parameters:
            case.path_parameters[name] = _pick(case.path_parameters[name], known) \
                or case.path_parameters[name]
    if isinstance(case.body, dict):
        case.body = _bmp(case.body)
    if isinstance(case.query, dict):
        case.query.update(_bmp(case.query))
        # exactly one of out_order_no and query_id (stated in the operation's description)
        if case.operation.path == "/v3/payscore/serviceorder" and (
                "out_order_no" in case.query or "query_id" not in case.query):
            case.query.pop("query_id", None)
            case.query["out_order_no"] = _pick(case.query.get("out_order_no"),
                                               world["path"]["out_order_no"]) \
                or case.query.get("out_order_no") or "CT0"
    for container in (case.query, case.body):
        if isinstance(container, dict):
            for key in ("appid", "service_id"):
                if key in container:
                    container[key] = world["ids"][key]
    body = case.body
    if not isinstance(body, dict) or zlib.crc32(repr(body).encode()) % 3 == 0:
        return  # a third keeps its generated amounts: the formula refusals stay exercised
    if "total_amount" in body and "post_payments" in body:
        total = sum(p.get("amount", 0) for p in body["post_payments"]) - sum(
            d.get("amount", 0) for d in body.get("post_discounts", []))
        if 0 <= total <= 10**12:
            body["total_amount"] = total
    if "transaction_id" in body or "out_trade_no" in body:
        body["transaction_id"] = world["transaction_id"]
        body.pop("out_trade_no", None)
        if isinstance(body.get("amount"), dict):
            body["amount"]["total"] = 300
            body["amount"]["refund"] = 1 + body["amount"].get("refund", 0) % 3


def _query(query: dict) -> str:
    pairs = []
    for key, value in (query or {}).items():
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            pairs.append((key, json.dumps(item) if isinstance(item, bool) else str(item)))
    return urlencode(pairs)


def _body_bytes(body) -> bytes:
    """The exact bytes to send: raw bytes as they are (negative payloads), JSON otherwise."""
    if isinstance(body, NotSet):
        return b""
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                      default=lambda value: str(value)).encode("utf-8", "surrogatepass")


def send_signed(case, world):
    """Serialise the body once, sign exactly those bytes and that target, send them."""
    merchant, http = world["merchant"], world["client"].http
    if case.meta is not None and case.meta.generation.mode.is_positive:
        _steer(case, world)
    target = case.formatted_path
    query = _query(case.query)
    if query:
        target += "?" + query
    data = _body_bytes(case.body)
    headers = {**HEADERS, **{k: str(v) for k, v in (case.headers or {}).items()}}
    if not isinstance(case.body, NotSet):
        headers["Content-Type"] = case.media_type or "application/json"
    if case.operation.schema.is_security_param_negated(case):
        # the generated request is about a missing/forged Authorization: send it as is
        return http.open(target, method=case.method, data=data, headers=headers), headers
    sb = world["app"].extensions["payscore"]
    headers["Authorization"] = protocol.build_authorization(
        merchant.mchid, merchant.serial_no, merchant.private_key, case.method, target, data,
        sb.clock.now_s(), protocol.make_nonce())
    return http.open(target, method=case.method, data=data, headers=headers), headers


def _marshmallow_field_messages() -> tuple[str, ...]:
    """The refusals of marshmallow's own field rules (type, length, enum, pattern...)."""
    found = set()
    classes = [fields.Field, *fields.Field.__subclasses__()]
    for cls in classes:
        classes.extend(c for c in cls.__subclasses__() if c not in classes)
        found.update(getattr(cls, "default_error_messages", {}).values())
    for validator in (validate.Length, validate.Range, validate.OneOf, validate.Regexp):
        for name in dir(validator):
            if name.startswith(("message", "error")) or name == "default_message":
                value = getattr(validator, name)
                if isinstance(value, str):
                    found.add(value)
    found.add("Unknown field.")
    return tuple(message.split("{")[0] for message in found if message.split("{")[0])


FIELD_MESSAGES = _marshmallow_field_messages()


def test_field_level_messages_are_recognised():
    """The custom check below must be able to fail: it knows marshmallow's own refusals."""
    from marshmallow import ValidationError

    from sandbox.schemas.orders import CreateServiceOrderRequest

    try:
        CreateServiceOrderRequest().load({"out_order_no": "x" * 40, "amount": 1})
    except ValidationError as exc:
        messages = [m for field in exc.messages.values() for m in field]
    assert messages and all(m.startswith(FIELD_MESSAGES) for m in messages), messages
    assert not "names must be unique".startswith(FIELD_MESSAGES)


def no_schema_level_refusal(case, response) -> None:
    """A request the contract calls valid must not be refused by a field-level rule: that
    would mean the contract and the enforced schema disagree."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    if response.status_code != 400:
        return
    body = json.loads(response.get_data() or b"{}")
    issue = str((body.get("detail") or {}).get("issue", ""))
    assert not issue.startswith(FIELD_MESSAGES), (
        f"positive data refused by a field rule: {case.method} {case.formatted_path} "
        f"{body} body={case.body!r} query={case.query!r}")


V3_OPERATIONS = sorted((path, method.upper()) for path, item in openapi.spec_dict()["paths"].items()
                       if path.startswith("/v3/") for method in item)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["positive", "negative"])
@pytest.mark.parametrize("path, method", V3_OPERATIONS,
                         ids=[f"{m} {p}" for p, m in V3_OPERATIONS])
def test_v3_operation_conforms(api_schema, world, path, method, mode):
    operation = api_schema[path][method]
    seen: dict[int, int] = {}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=PHASES)
    def check(case):
        response, headers = send_signed(case, world)
        assert response.status_code < 500, response.get_data(as_text=True)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        no_schema_level_refusal(case, response)
        case.validate_response(response, headers=headers,
                               transport_kwargs={"headers": HEADERS})

    check()
    assert sum(seen.values()) >= 5, seen  # the run really exercised the operation


def test_the_harness_catches_a_nonconforming_answer(api_schema, world):
    """The checks can fail: an answer with an undocumented field or a wrong type is caught."""
    operation = api_schema["/v3/payscore/serviceorder"]["GET"]
    case = operation.Case(query={**world["ids"], "out_order_no": "CT0"})
    response, headers = send_signed(case, world)
    assert response.status_code == 200
    case.validate_response(response, headers=headers, transport_kwargs={"headers": HEADERS})
    for bend in (lambda body: body.update(surprise=1), lambda body: body.update(state=7)):
        body = json.loads(response.get_data())
        bend(body)
        response.set_data(json.dumps(body).encode())
        with pytest.raises(FailureGroup):
            case.validate_response(response, headers=headers,
                                   transport_kwargs={"headers": HEADERS})
