"""Callback (notification) handling: verify, decrypt, dedupe durably, dispatch (reference §6).

Order matters: the signature is checked over the raw body before anything is parsed; the
resource is decrypted only once the sender is trusted; the dedupe row and the merchant's own
writes commit in one transaction, so a callback is applied exactly once even when WeChat
delivers it twice at the same moment, and a crash in the merchant's code leaves no trace
(WeChat retries, we try again).

Answers: 204 on success or duplicate; 401 `{"code":"FAIL"}` for signature problems; 400 for
content that cannot be ours; 500 when the merchant's handler or the database fails.
"""

from __future__ import annotations

import datetime as dt
import http
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import Column, DateTime, MetaData, String, Table
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from merchant_kit import protocol
from merchant_kit.config import MerchantConfig
from merchant_kit.keys import PlatformKeys
from merchant_kit.models import Model, RefundAmount, ServiceOrder

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20  # callbacks are a few KB; refuse to buffer anything absurd


# ---------------------------------------------------------------------- events (§6.4)


@dataclass(kw_only=True)
class PermissionChange(Model):
    _enums: ClassVar[dict[str, frozenset[str]]] = {
        "user_service_status": frozenset({"USER_OPEN_SERVICE", "USER_CLOSE_SERVICE"})}
    appid: str | None = None
    mchid: str | None = None
    service_id: str | None = None
    openid: str | None = None
    user_service_status: str | None = None
    openorclose_time: str | None = None
    authorization_code: str | None = None
    out_request_no: str | None = None


@dataclass(kw_only=True)
class RefundNotice(Model):
    _enums: ClassVar[dict[str, frozenset[str]]] = {
        "refund_status": frozenset({"SUCCESS", "CLOSED", "ABNORMAL"})}
    mchid: str | None = None
    out_trade_no: str | None = None
    transaction_id: str | None = None
    out_refund_no: str | None = None
    refund_id: str | None = None
    refund_status: str | None = None
    success_time: str | None = None
    user_received_account: str | None = None
    amount: RefundAmount | None = None


@dataclass(kw_only=True)
class Event:
    """A verified, decrypted callback; `payload` is the decrypted JSON as received."""

    id: str
    event_type: str
    create_time: str | None = None
    summary: str | None = None
    resource_type: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None


@dataclass(kw_only=True)
class ServiceOrderEvent(Event):
    """PAYSCORE.USER_CONFIRM / PAYSCORE.USER_PAID."""

    order: ServiceOrder


@dataclass(kw_only=True)
class PermissionEvent(Event):
    """PAYSCORE.USER_OPEN_SERVICE / PAYSCORE.USER_CLOSE_SERVICE."""

    permission: PermissionChange


@dataclass(kw_only=True)
class RefundEvent(Event):
    """REFUND.SUCCESS / REFUND.ABNORMAL / REFUND.CLOSED."""

    refund: RefundNotice


_EVENT_KINDS: dict[str, tuple[type[Event], str, type[Model]]] = {
    "PAYSCORE.USER_CONFIRM": (ServiceOrderEvent, "order", ServiceOrder),
    "PAYSCORE.USER_PAID": (ServiceOrderEvent, "order", ServiceOrder),
    "PAYSCORE.USER_OPEN_SERVICE": (PermissionEvent, "permission", PermissionChange),
    "PAYSCORE.USER_CLOSE_SERVICE": (PermissionEvent, "permission", PermissionChange),
    "REFUND.SUCCESS": (RefundEvent, "refund", RefundNotice),
    "REFUND.ABNORMAL": (RefundEvent, "refund", RefundNotice),
    "REFUND.CLOSED": (RefundEvent, "refund", RefundNotice),
}


# ---------------------------------------------------------------------- durable dedupe


class NotificationStore:
    """Processed notification ids, in the merchant's own database (SQLAlchemy Core)."""

    def __init__(self, engine: Engine, table_name: str = "kit_processed_notifications",
                 metadata: MetaData | None = None, time_fn: Callable[[], float] = time.time):
        self.engine = engine
        self._time = time_fn
        self.table = Table(
            table_name, metadata if metadata is not None else MetaData(),
            Column("id", String(64), primary_key=True),
            Column("event_type", String(64), nullable=False),
            Column("processed_at", DateTime(timezone=True), nullable=False),
        )

    def create_table(self) -> None:
        self.table.create(self.engine, checkfirst=True)

    def process(self, notification_id: str, event_type: str,
                apply: Callable[[Connection], None] | None = None) -> bool:
        """Insert the id first, then `apply(conn)`, one commit. False = already processed.

        A concurrent duplicate blocks on the primary key until the first commits (then gets an
        IntegrityError: duplicate) or rolls back (then it processes the event itself).
        """
        now = dt.datetime.fromtimestamp(self._time(), tz=dt.UTC)
        with self.engine.connect() as conn:
            tx = conn.begin()
            try:
                try:
                    conn.execute(self.table.insert().values(
                        id=notification_id, event_type=event_type, processed_at=now))
                except IntegrityError:
                    tx.rollback()
                    return False
                if apply is not None:
                    apply(conn)
                tx.commit()
            finally:
                if tx.is_active:
                    tx.rollback()
        return True

    def seen(self, notification_id: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(self.table.select().where(self.table.c.id == notification_id))
            return row.first() is not None


# ---------------------------------------------------------------------- the handler


class _Reject(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class _Headers(dict):
    """Case-insensitive view, as protocol.check_signed_message expects `.get`."""

    def __init__(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]):
        items = headers.items() if hasattr(headers, "items") else headers
        super().__init__((str(k).lower(), v) for k, v in items)  # type: ignore[union-attr]

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


OnEvent = Callable[[Event, Connection], None]


class CallbackHandler:
    def __init__(self, config: MerchantConfig, keys: PlatformKeys, store: NotificationStore,
                 time_fn: Callable[[], float] = time.time, on_event: OnEvent | None = None):
        self.config, self.keys, self.store = config, keys, store
        self._time = time_fn
        self.on_event = on_event

    def handle(self, headers: Mapping[str, str] | Iterable[tuple[str, str]],
               body: bytes) -> tuple[int, bytes]:
        """Never raises: every outcome is an HTTP status WeChat understands."""
        try:
            hdrs = _Headers(headers)
            event = self.parse(hdrs, body)
            handler = self.on_event
            fresh = self.store.process(
                event.id, event.event_type,
                (lambda conn: handler(event, conn)) if handler is not None else None)
            log.info("callback %s %s %s [Request-ID %s]", event.event_type, event.id,
                     "applied" if fresh else "duplicate", event.request_id)
            return 204, b""
        except _Reject as rej:
            log.warning("callback rejected (%s): %s", rej.status, rej.message)
            return rej.status, fail_body(rej.message)
        except SQLAlchemyError:
            log.exception("callback store failed; WeChat will retry")
            return 500, fail_body("storage unavailable")
        except Exception:  # the merchant's on_event: roll back, let WeChat retry
            log.exception("callback handler failed; WeChat will retry")
            return 500, fail_body("handler error")

    def parse(self, headers: Mapping[str, str], body: bytes) -> Event:
        """Verify, decrypt and type one callback; raises _Reject with the answer to give."""
        try:
            self.keys.verify(headers, body, now=self._time())
        except protocol.SignatureRejected as exc:
            raise _Reject(401, f"signature rejected: {exc.reason}") from exc
        try:
            envelope = json.loads(body)
            resource = envelope["resource"]
            plaintext = protocol.decrypt_resource(self.config.apiv3_key, resource)
            payload = json.loads(plaintext)
            notification_id, event_type = envelope["id"], envelope["event_type"]
        except protocol.DecryptionError as exc:
            raise _Reject(400, "resource decryption failed") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise _Reject(400, "malformed notification") from exc
        if not isinstance(payload, dict) or not isinstance(notification_id, str) \
                or not notification_id or not isinstance(event_type, str):
            raise _Reject(400, "malformed notification")
        self._check_owner(event_type, payload)
        if event_type not in _EVENT_KINDS:
            log.warning("callback of unknown type %s delivered as a plain Event", event_type)
        return typed_event(notification_id, event_type, envelope, payload,
                           headers.get("Request-ID"))

    def _check_owner(self, event_type: str, payload: dict[str, Any]) -> None:
        # A validly signed callback for another merchant/app is misrouted: never apply it.
        if payload.get("mchid") != self.config.mchid:
            raise _Reject(400, "notification is for another mchid")
        appid = payload.get("appid")
        needs_appid = event_type.startswith("PAYSCORE.")
        if (appid is not None or needs_appid) and appid != self.config.appid:
            raise _Reject(400, "notification is for another appid")


def typed_event(notification_id: str, event_type: str, envelope: Mapping[str, Any],
                payload: dict[str, Any], request_id: str | None) -> Event:
    """The event for a decrypted callback: the subclass for its type with the resource parsed
    into its model, or a plain Event for a type this kit does not know."""
    common = {"id": notification_id, "event_type": event_type,
              "create_time": envelope.get("create_time"), "summary": envelope.get("summary"),
              "resource_type": envelope.get("resource_type"), "payload": payload,
              "request_id": request_id}
    kind = _EVENT_KINDS.get(event_type)
    if kind is None:
        return Event(**common)
    cls, attr, model = kind
    return cls(**common, **{attr: model.from_dict(payload)})


def fail_body(message: str) -> bytes:
    """The body of a refused callback, in the shape WeChat logs: {"code": "FAIL", "message"}."""
    return json.dumps({"code": "FAIL", "message": message}, ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------------- adapters


def flask_blueprint(handler: CallbackHandler, url_prefix: str = "", rule: str = "/notify",
                    name: str = "payscore_notify") -> Any:
    """A Flask blueprint answering POST {url_prefix}{rule}; Flask is imported only here."""
    from flask import Blueprint, Response, request

    bp = Blueprint(name, __name__, url_prefix=url_prefix or None)

    @bp.post(rule)
    def notify() -> Response:
        if (request.content_length or 0) > MAX_BODY:
            return Response(fail_body("body too large"), 413, content_type="application/json")
        status, out = handler.handle(request.headers.items(), request.get_data(cache=False))
        return Response(out, status, content_type="application/json" if out else None)

    return bp


def wsgi_app(handler: CallbackHandler) -> Callable[..., Iterable[bytes]]:
    """A plain WSGI callable: POST anything → handler.handle; other methods → 405."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            status, out = 405, fail_body("method not allowed")
        else:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                status, out = 413, fail_body("body too large")
            else:
                body = environ["wsgi.input"].read(length) if length else b""
                headers = [(k[5:].replace("_", "-"), v) for k, v in environ.items()
                           if k.startswith("HTTP_")]
                if environ.get("CONTENT_TYPE"):
                    headers.append(("Content-Type", environ["CONTENT_TYPE"]))
                status, out = handler.handle(headers, body)
        response_headers = [("Content-Length", str(len(out)))]
        if out:
            response_headers.append(("Content-Type", "application/json"))
        start_response(f"{status} {http.HTTPStatus(status).phrase}", response_headers)
        return [out]

    return app
