"""Helpers every view uses: parse and validate against a schema, render a signed answer.

Views stay thin: `body = load_body(Schema)`, one backend call, `return render(result)`.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from flask import Response, g, request
from marshmallow import Schema, ValidationError

from sandbox import errors


def _first_error(messages: Any, prefix: str = "") -> tuple[str, str]:
    """Flatten marshmallow's nested messages to the first (JSON-pointer, issue) pair."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key == "_schema":
                return _first_error(value, prefix)
            return _first_error(value, f"{prefix}/{key}")
    if isinstance(messages, list) and messages:
        return _first_error(messages[0], prefix)
    return prefix or "/", str(messages)


@functools.cache
def _instance(schema: type[Schema]) -> Schema:
    """One instance per schema class: building one costs more than loading a body with it,
    and a marshmallow 4 schema keeps no per-load state, so sharing it across threads is safe."""
    return schema()


def load_body(schema: type[Schema], path_params: tuple[str, ...] = ()) -> dict:
    """Parse the raw body (already verified) and validate it; PARAM_ERROR on any problem."""
    raw = request.get_data(cache=True)
    if not raw:
        raise errors.param_error("/", "request body is empty")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise errors.param_error("/", "body is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise errors.param_error("/", "body must be a JSON object")
    g.json_body = data  # the request log's order reference reads it rather than parse again
    for name in path_params:
        if name in data:
            # §1.2: a path parameter in the body cannot be mapped a second time
            raise errors.ParamError(
                f"无法将 JSON 输入源 /body/{name} 映射到目标字段，该字段已从 "
                f"/uri_template/{name} 映射",
                detail={"field": f"/{name}", "issue": "already mapped from the path",
                        "location": "body"})
    if any(value is None for value in data.values()):
        field = next(k for k, v in data.items() if v is None)
        raise errors.param_error(f"/{field}", "null is not allowed; omit the key instead")
    try:
        return _instance(schema).load(data)
    except ValidationError as exc:
        field, issue = _first_error(exc.messages)
        raise errors.param_error(field, issue) from None


def load_query(schema: type[Schema]) -> dict:
    try:
        return _instance(schema).load(request.args.to_dict())
    except ValidationError as exc:
        field, issue = _first_error(exc.messages)
        raise errors.param_error(field.lstrip("/"), issue, location="query") from None


def check_path(value: str, regex, name: str) -> str:
    if not regex.fullmatch(value or ""):
        raise errors.param_error(name, "invalid format", value=value, location="path")
    return value


def render(data: dict | None, status: int = 200) -> Response:
    if status == 204 or data is None:
        return Response(b"", status=204)
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(body, status=status, content_type="application/json; charset=utf-8")


def mchid() -> str:
    return g.mchid


def now_us() -> int:
    return g.now_us
