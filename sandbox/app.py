"""The Flask app factory and the request pipeline.

HTTP -> request log (start) -> header rules -> verify Authorization over raw bytes
     -> fault hooks (before) -> view (validate, one backend transaction, render)
     -> fault hooks (after) -> sign 2xx -> request log (end, with verdict)
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from merchant_kit import protocol
from sandbox import db, errors, provision
from sandbox.service import Sandbox, current

log = logging.getLogger("payscore.sandbox")

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": "sqlite:///.payscore/sandbox.db",
    "DATA_DIR": ".payscore",
    "CLOCK_SKEW_S": 300,
    "START_DISPATCHER": False,
    "START_WORLD": False,
    "PROVISION": True,
}


def create_app(config: dict | None = None) -> Flask:
    app = Flask("sandbox")
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    engine = db.make_engine(app.config["DATABASE_URL"])
    db.init_db(engine)
    if app.config["PROVISION"]:
        from sandbox.clock import Clock

        provision.ensure_platform(engine, Clock(engine).now_us(),
                                  app.config.get("KEYGEN") or protocol.generate_private_key)
    sandbox = Sandbox(engine, app.config)
    app.extensions["payscore"] = sandbox
    _install_services(app, sandbox)

    from sandbox.views import register_blueprints

    register_blueprints(app)
    app.before_request(_before)
    app.after_request(_after)
    app.register_error_handler(errors.PayScoreError, _render_error)
    app.register_error_handler(HTTPException, _render_http_error)
    app.register_error_handler(Exception, _render_unexpected)
    from sandbox.faults import install as install_faults

    install_faults(app, sandbox)
    for extension in app.config.get("EXTENSIONS", ()):
        extension(app, sandbox)
    _retry_views_on_conflict(app)
    if app.config["START_DISPATCHER"]:
        from sandbox.callbacks.dispatcher import start_dispatcher

        start_dispatcher(sandbox)  # after the extensions, so their fault hooks are in place
    return app


def _install_services(app: Flask, sandbox: Sandbox) -> None:
    """Background services register a stop function in extras["stop_callbacks"]."""
    from sandbox.world import runner

    stops: list = sandbox.extras.setdefault("stop_callbacks", [])  # type: ignore[assignment]

    def stop_services() -> None:
        for stop in list(stops):
            stop()

    sandbox.extras["stop_services"] = stop_services
    stops.append(sandbox.held.close)
    runner.install(app, sandbox)


# PostgreSQL SQLSTATEs that mean "another transaction got there first": unique_violation (two
# identical creates both found no row, since FOR UPDATE cannot lock a row that does not exist
# yet), serialization_failure, deadlock_detected. SQLite never raises them: BEGIN IMMEDIATE
# serialises writers.
_CONFLICTS = frozenset({"23505", "40001", "40P01"})
_CONFLICT_ATTEMPTS = 3


def _retry_views_on_conflict(app: Flask) -> None:
    """Run a view again when its transaction lost a race. A view is one backend transaction,
    and the loser's was rolled back whole, so the rerun starts clean and takes the path the
    winner left (for create: the identical-replay answer of §1.4)."""
    import functools

    from sqlalchemy.exc import DBAPIError

    def retrying(view):
        @functools.wraps(view)
        def run(*args, **kwargs):
            for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
                try:
                    return view(*args, **kwargs)
                except DBAPIError as exc:
                    sqlstate = getattr(exc.orig, "sqlstate", None)
                    if sqlstate not in _CONFLICTS or attempt == _CONFLICT_ATTEMPTS:
                        raise
                    log.info("retrying %s after a lost race (SQLSTATE %s)",
                             request.endpoint, sqlstate)
        return run

    for endpoint, view in list(app.view_functions.items()):
        app.view_functions[endpoint] = retrying(view)


# The pipeline binds flask's request and g once per function: each access through their
# proxies costs a context lookup, and a request made ~60 of them (profiled: ~0.1 ms).
def _before() -> Response | None:
    ctx, req = g._get_current_object(), request._get_current_object()
    ctx.started = time.perf_counter()
    from sandbox.security import new_request_id

    ctx.request_id = new_request_id()
    ctx.mchid = ctx.verdict = ctx.fault = ctx.scenario_id = None
    ctx.out_order_no = (req.view_args or {}).get("out_order_no")
    ctx.operation = req.endpoint.rsplit(".", 1)[-1] if req.endpoint else None
    if not req.path.startswith("/v3/"):
        return None
    sb = current()
    headers = req.headers
    if not headers.get("Accept") or not headers.get("User-Agent"):
        ctx.verdict = "missing Accept or User-Agent header"
        raise errors.InvalidRequest("Http头缺少Accept或User-Agent")
    from sandbox.security import parse_authorization, verify_request

    try:
        auth = parse_authorization(req)
    except errors.SignError as exc:
        _read_state(sb, None)  # the log and the verdict still need the sandbox time
        _reject(sb, exc)
        raise
    _read_state(sb, auth.mchid)
    try:
        merchant = verify_request(req, auth, sb.merchants, ctx.now_us // 1_000_000,
                                  sb.config["CLOCK_SKEW_S"])
    except errors.SignError as exc:
        _reject(sb, exc)
        raise
    ctx.mchid = merchant.mchid
    ctx.merchant = merchant
    ctx.verdict = "signature ok"
    for hook in sb.hooks.before:
        answer = hook()
        if answer is not None:
            return answer
    return None


def _read_state(sb: Sandbox, mchid: str | None) -> None:
    """Clock, fault version and signing mode: one read on the held connection (sandbox.held)."""
    state = sb.probe.request_state(mchid)
    ctx = g._get_current_object()
    ctx.now_us, ctx.fault_version, ctx.signing_mode = (state.now_us, state.fault_version,
                                                       state.signing_mode)
    ctx.merchant_config = state.merchant


def _reject(sb: Sandbox, exc: errors.SignError) -> None:
    from sandbox.backend.inspect import rejection_verdict

    with sb.engine.connect() as conn:
        g.verdict, g.claimed_mchid = rejection_verdict(
            request, conn, exc.detail["detail"]["issue"], g.now_us // 1_000_000)


def _after(response: Response) -> Response:
    sb = current()
    ctx, req = g._get_current_object(), request._get_current_object()
    if req.path.startswith("/v3/"):
        for hook in sb.hooks.after:
            response = hook(response)
        if 200 <= response.status_code < 300 and not ctx.get("skip_signing", False):
            _sign(sb, response, ctx, req)
    response.headers.setdefault("Request-ID", f"{ctx.get('request_id', '')}-0")
    _log_request(sb, response, ctx, req)
    return response


def _sign(sb: Sandbox, response: Response, ctx: Any, req: Any) -> None:
    body = response.get_data()
    # _before read both for every verified request; a 2xx without one is a control answer
    merchant_mode = ctx.get("signing_mode") or "certificate"
    key = sb.signer.choose(req.headers.get("Wechatpay-Serial"), merchant_mode)
    now_us = ctx.get("now_us")
    now_s = (now_us if now_us is not None else sb.clock.now_us()) // 1_000_000
    for name, value in sb.signer.headers(key, body, now_s).items():
        response.headers.setdefault(name, value)  # a fault hook's own header stays


def _log_request(sb: Sandbox, response: Response, ctx: Any, req: Any) -> None:
    if req.path.startswith(("/sandbox/ui", "/sandbox/static", "/sandbox/api/")):
        return  # the dashboard polls every 2 s: logging that would bury the merchants' requests
    started = ctx.get("started")
    get = ctx.get
    try:
        sb.request_log.write({
            "request_id": get("request_id", ""),
            "at_us": get("now_us") or sb.clock.now_us(),
            "mchid": get("mchid") or get("claimed_mchid"), "method": req.method,
            "path": req.full_path.rstrip("?")[:2000], "operation": get("operation"),
            "out_order_no": str(_order_ref(ctx, req) or "")[:32] or None,
            "status": response.status_code, "code": get("error_code"),
            "verdict": get("verdict"), "fault": get("fault"),
            "scenario_id": get("scenario_id"),
            "duration_ms": (time.perf_counter() - started) * 1000 if started else None})
    except Exception:  # the log must never turn an answer into an error
        log.exception("could not write the request log")


def _order_ref(ctx: Any, req: Any) -> str | None:
    """The order a request is about: path, query, or (create) the JSON body, for the timeline."""
    ref = ctx.get("out_order_no") or req.args.get("out_order_no")
    if ref or req.method != "POST" or not req.path.startswith("/v3/"):
        return ref
    body = ctx.get("json_body")  # parsed by the view already
    if body is not None:
        value = body.get("out_order_no")
        return value if isinstance(value, str) else None
    try:
        body = json.loads(req.get_data(cache=True) or b"null")
    except ValueError:
        return None
    value = body.get("out_order_no") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


def _error_response(exc: errors.PayScoreError) -> Response:
    g.error_code = exc.code
    response = Response(_json(exc.body()), status=exc.status,
                        content_type="application/json; charset=utf-8")
    response.headers["Request-ID"] = f"{g.get('request_id', '')}-{exc.internal_code}"
    return response


def _render_error(exc: errors.PayScoreError) -> Response:
    return _error_response(exc)


def _render_http_error(exc: HTTPException) -> Response:
    if exc.code == 405:
        return _error_response(errors.MethodNotAllowed())
    if exc.code == 404:
        return _error_response(errors.NotFound())
    if exc.code == 413:
        return _error_response(errors.InvalidRequest("请求体过大"))
    return _error_response(errors.InvalidRequest(exc.description or "请求不合法"))


def _render_unexpected(exc: Exception) -> Response:
    log.exception("unexpected error (a sandbox bug) on %s %s", request.method, request.path)
    return _error_response(errors.SystemError_())


def _json(data: Any) -> bytes:
    import json

    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
