"""The reference merchant: a small power-bank rental service built only on merchant_kit.

    app = create_app({"MERCHANT_JSON": ".payscore/merchant.json",
                      "PUBLIC_URL": "http://127.0.0.1:8090", "ENABLE_DRIVER": True})

Settings (Flask config keys):

| key | default | meaning |
|---|---|---|
| MERCHANT_JSON / MERCHANT_CONFIG | required | credentials: a merchant.json path, or a MerchantConfig |
| SANDBOX_URL | merchant.json base_url | the Pay Score gateway to call |
| PUBLIC_URL | http://127.0.0.1:8090 | where this service is reachable: notify_url = PUBLIC_URL/payscore/notify |
| DATA_DIR / DATABASE_URL | .payscore-merchant / SQLite in DATA_DIR | the merchant's own database |
| ENABLE_DRIVER | False | mount the test-only driver API under /driver/ |
| BUGS | () | bug switches (merchant_kit.reference.bugs); an unknown name fails here |
| RECONCILE_INTERVAL | 60 | seconds between reconciliation runs; 0 disables the thread |
| START_BACKGROUND | True | start the reconciliation thread in create_app |
| CLOCK_URL | None | follow that sandbox's test clock instead of wall time |
| BREAKER_FAIL_MAX, BREAKER_RESET_TIMEOUT | 5, 30 | circuit breaker (go-live defaults) |
| PROVIDER_TIMEOUTS, PROVIDER_TOTAL_DEADLINE | kit defaults | {"connect", "read"} s, total s |
| RETRY_BASE_DELAY, RETRY_BASE_DELAY_429 | 0.2, 1.0 | back-off bases (s) of the kit's jittered retries |
| PAY_NUDGE_AFTER, PAY_NUDGE_INTERVAL | 86400, 86400 | ask WeChat to collect a deduction pending this long |
| RISK_FUND_NAME, SERVICE_INTRODUCTION | ESTIMATE_ORDER_COST, 充电宝租借 | create-time texts |
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from merchant_kit import CallbackHandler, MerchantConfig, NotificationStore, flask_blueprint
from merchant_kit.reference import bugs as bug_switches
from merchant_kit.reference import driver, store
from merchant_kit.reference.callbacks import Callbacks, NaiveCallbackHandler
from merchant_kit.reference.clock import MerchantClock
from merchant_kit.reference.errors import DriverError
from merchant_kit.reference.provider import Provider, build_client, merchant_config
from merchant_kit.reference.reconcile import Reconciler
from merchant_kit.reference.rentals import Rentals

log = logging.getLogger(__name__)

NAME = "reference-merchant (power-bank rental)"
NOTIFY_PATH = "/payscore/notify"
DEFAULTS: dict[str, Any] = {
    "PUBLIC_URL": "http://127.0.0.1:8090", "DATA_DIR": ".payscore-merchant",
    "ENABLE_DRIVER": False, "BUGS": (), "RECONCILE_INTERVAL": 60, "START_BACKGROUND": True,
    "CLOCK_URL": None,
}
# Bugs that need a hand-written callback handler: each leaves out a step the kit's handler does.
NAIVE_HANDLER_BUGS = frozenset({"no_callback_signature_check", "no_callback_timestamp_check",
                                "in_memory_dedupe", "no_dedupe", "ignore_amount_mismatch",
                                "ack_unprocessable_callbacks"})


def load_merchant_config(settings: Mapping[str, Any]) -> MerchantConfig:
    overrides = {"base_url": settings["SANDBOX_URL"]} if settings.get("SANDBOX_URL") else {}
    if settings.get("MERCHANT_CONFIG") is not None:
        config = settings["MERCHANT_CONFIG"]
        return dataclasses.replace(config, **overrides) if overrides else config
    if not settings.get("MERCHANT_JSON"):
        raise ValueError("MERCHANT_JSON (a merchant.json path) or MERCHANT_CONFIG is required")
    return MerchantConfig.from_file(settings["MERCHANT_JSON"], **overrides)


class ReferenceMerchant:
    """Everything one app instance owns (kept in app.extensions, never module-level)."""

    def __init__(self, settings: Mapping[str, Any]):
        self.bugs = bug_switches.validate(settings.get("BUGS"))
        self.public_url = str(settings.get("PUBLIC_URL") or DEFAULTS["PUBLIC_URL"]).rstrip("/")
        self.name = settings.get("MERCHANT_NAME") or NAME
        self.clock = MerchantClock(settings.get("CLOCK_URL"))
        config = merchant_config(load_merchant_config(settings), self.bugs, settings)
        url = settings.get("DATABASE_URL")
        if not url:
            data_dir = Path(settings.get("DATA_DIR") or DEFAULTS["DATA_DIR"])
            data_dir.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{(data_dir / 'merchant.db').resolve()}"
        self.engine = store.make_engine(url)
        store.metadata.create_all(self.engine)
        # The kit's durable dedupe key, in the merchant's own database.
        self.notifications = NotificationStore(self.engine, time_fn=self.clock.now)
        self.notifications.create_table()
        client, keys = build_client(config, self.bugs, self.clock, settings)
        self.provider = Provider(client, self.clock, self.bugs)
        self.rentals = Rentals(self.engine, self.provider, self.clock, config, self.bugs,
                               settings, notify_url=lambda: self.public_url + NOTIFY_PATH)
        self.reconciler = Reconciler(self.rentals, settings)
        self.callbacks = Callbacks(config, self.clock, self.bugs)
        if self.bugs & NAIVE_HANDLER_BUGS:
            self.handler: Any = NaiveCallbackHandler(
                config, keys, self.notifications, self.engine, self.clock, self.bugs,
                self.callbacks.on_event)
        else:
            self.handler = CallbackHandler(config, keys, self.notifications,
                                           time_fn=self.clock.now,
                                           on_event=self.callbacks.on_event)
        self.config = config

    def get_health(self, driver_version: str) -> dict[str, Any]:
        return {"merchant": self.name, "driver_version": driver_version,
                "mchid": self.config.mchid, "sandbox_url": self.config.base_url,
                "bugs": sorted(self.bugs),
                "provider": self.provider.health(), "reconciler": self.reconciler.snapshot(),
                "clock": self.clock.snapshot(),
                "notify_url": self.public_url + NOTIFY_PATH,
                "callback_handler": type(self.handler).__name__}

    def stop(self) -> None:
        self.reconciler.stop()
        self.engine.dispose()


def _notify_blueprint(merchant: ReferenceMerchant) -> Blueprint:
    if isinstance(merchant.handler, CallbackHandler):
        bp = flask_blueprint(merchant.handler, url_prefix="/payscore", rule="/notify")
    else:
        bp = Blueprint("payscore_notify", __name__, url_prefix="/payscore")

        @bp.post("/notify")
        def notify() -> Response:
            status, out = merchant.handler.handle(request.headers, request.get_data())
            return Response(out, status, content_type="application/json" if out else None)

    @bp.before_request
    def _follow_clock() -> None:
        # After the sandbox clock jumped, its callbacks carry the new time: catch up first.
        merchant.clock.observe(request.headers.get("Wechatpay-Timestamp"))

    @bp.after_request
    def _after(response: Response) -> Response:
        followups = merchant.callbacks.take_followups()
        if 200 <= response.status_code < 300:  # committed: the pending finishes may go ahead
            for rental_id in followups:
                merchant.reconciler.complete_soon(rental_id)
        return response

    return bp


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask("merchant_kit.reference")
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    merchant = ReferenceMerchant(app.config)
    app.extensions["reference_merchant"] = merchant
    app.register_blueprint(_notify_blueprint(merchant))
    if app.config["ENABLE_DRIVER"]:
        app.register_blueprint(driver.bp)

    @app.errorhandler(DriverError)
    def _driver_error(exc: DriverError) -> Any:
        return jsonify(exc.body()), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").upper().replace(" ", "_")
        return jsonify({"error": code, "message": exc.description or exc.name}), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("the merchant broke on %s %s", request.method, request.path)
        return jsonify({"error": "INTERNAL", "message": f"{type(exc).__name__}: {exc}"}), 500

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify({"status": "ok", "merchant": merchant.name})

    if app.config["START_BACKGROUND"]:
        merchant.reconciler.start()
    return app
