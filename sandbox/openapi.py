"""Generate the contract (openapi.yaml) from the marshmallow schemas and the views' docstrings.

The committed openapi.yaml is this output; a test fails when it is stale. The sandbox serves it
at /sandbox/openapi.yaml.
"""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec_webframeworks.flask import FlaskPlugin
from flask import Flask
from marshmallow import class_registry

import sandbox

_DESCRIPTION = """\
The WeChat Pay API v3 Pay Score (微信支付分) surface as the sandbox implements it, and the
sandbox's own test-only control API (tag `sandbox`, under /sandbox/, never under /v3/).
Every /v3/ request must carry a valid `Authorization: WECHATPAY2-SHA256-RSA2048 ...` header;
every 2xx answer is signed (Wechatpay-* headers). Money is integer fen.
"""


def _schema_name_resolver(schema) -> str:
    if isinstance(schema, str):
        schema = class_registry.get_class(schema)
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__
    return name.removesuffix("Schema")


def build_spec() -> APISpec:
    from sandbox.schemas.common import ErrorBody
    from sandbox.views import blueprints

    spec = APISpec(
        title="payscore-sandbox: WeChat Pay Pay Score API v3",
        version=sandbox.__version__,
        openapi_version="3.0.3",
        info={"description": _DESCRIPTION},
        servers=[{"url": "http://127.0.0.1:8080"}],
        plugins=[FlaskPlugin(), MarshmallowPlugin(schema_name_resolver=_schema_name_resolver)],
    )
    spec.components.schema("ErrorBody", schema=ErrorBody)
    spec.components.security_scheme("wechatpay", {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": "WECHATPAY2-SHA256-RSA2048 mchid=...,nonce_str=...,signature=...,"
                       "timestamp=...,serial_no=... over method, raw target, timestamp, nonce "
                       "and raw body (reference §5.1)",
    })
    def error_response() -> dict:
        return {"description": "WeChat error: {code, message, detail?}", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    app = Flask("sandbox_spec")
    for bp in blueprints():
        app.register_blueprint(bp)
    with app.test_request_context():
        for name, view in sorted(app.view_functions.items()):
            if name == "static" or not (view.__doc__ and "---" in view.__doc__):
                continue
            spec.path(view=view, app=app)
    for path, item in spec._paths.items():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            if path.startswith("/v3/"):
                operation["security"] = [{"wechatpay": []}]
                for status in ("400", "401", "403", "404", "429", "500"):
                    responses.setdefault(status, error_response())
            else:
                responses.setdefault("400", error_response())
                responses.setdefault("404", error_response())
    return spec


def spec_dict() -> dict:
    return build_spec().to_dict()


def spec_yaml() -> str:
    return build_spec().to_yaml(yaml_dump_kwargs={"allow_unicode": True, "sort_keys": False})
