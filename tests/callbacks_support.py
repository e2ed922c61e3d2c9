"""Callback test helpers: `Receiver`, a merchant notify endpoint on loopback that answers a
script, and the outbox rows and attempts to inspect afterwards. Business time starts at T0 on a
frozen sandbox clock."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Self

from flask import Flask
from sqlalchemy import select, update

from sandbox import db
from sandbox.callbacks import outbox
from sandbox.callbacks.dispatcher import Dispatcher
from sandbox.service import Sandbox

if TYPE_CHECKING:  # imported for annotations only: pytest would try to collect Test*
    from sandbox.testing import TestMerchant

S = 1_000_000
T0 = 1_750_000_000 * S
GENERIC = outbox.parse_schedule("generic")


class Receiver:
    """A merchant notify endpoint on 127.0.0.1: records every request, answers a script.

    `script` is a list of statuses used in order, then `default`; `delays` likewise (seconds).
    """

    def __init__(self, script=(), default: int = 200, delays=(), default_delay: float = 0.0):
        self.script, self.default = list(script), default
        self.delays, self.default_delay = list(delays), default_delay
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = {}
        self.max_in_flight_per_id = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # one small answer must not wait for a delayed ACK

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: nothing was delivered
                    self.close_connection = True
                    return
                status, delay, key = receiver._take(body)
                try:
                    if delay:
                        time.sleep(delay)  # a slow merchant, on wall time (network)
                    with receiver.lock:
                        receiver.requests.append({"headers": dict(self.headers), "body": body,
                                                  "status": status, "path": self.path})
                    answer = b"" if status == 204 else json.dumps(
                        {"code": "SUCCESS" if status < 300 else "FAIL", "message": "ok"}).encode()
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                finally:
                    receiver._done(key)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request, client_address):
                """Not an error here: a sender that vanishes (kill -9, timeouts) is part
                of the tests."""

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _take(self, body: bytes):
        try:
            key = json.loads(body).get("id", "")
        except ValueError:
            key = ""
        with self.lock:
            status = self.script.pop(0) if self.script else self.default
            delay = self.delays.pop(0) if self.delays else self.default_delay
            self.in_flight[key] = self.in_flight.get(key, 0) + 1
            self.max_in_flight_per_id = max(self.max_in_flight_per_id, self.in_flight[key])
        return status, delay, key

    def _done(self, key: str) -> None:
        with self.lock:
            self.in_flight[key] -= 1

    def ids(self, ok_only: bool = False) -> list[str]:
        with self.lock:
            return [json.loads(r["body"])["id"] for r in self.requests
                    if not ok_only or 200 <= r["status"] < 300]

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def enqueue(sb, mchid: str, url: str, event_type: str = "PAYSCORE.USER_PAID",
            resource: dict | None = None) -> str:
    with db.write_tx(sb.engine) as conn:
        return outbox.enqueue(conn, mchid=mchid, event_type=event_type, url=url,
                              resource=resource or {"out_order_no": "O1", "state": "DONE",
                                                    "service_introduction": "充电宝"},
                              now_us=sb.clock.now_us(conn))


def row_of(sb, notification_id: str):
    with sb.engine.connect() as conn:
        return conn.execute(select(db.notifications)
                            .where(db.notifications.c.id == notification_id)).one()


def attempts_of(sb, notification_id: str) -> list:
    a = db.delivery_attempts
    with sb.engine.connect() as conn:
        return list(conn.execute(select(a).where(a.c.notification_id == notification_id)
                                 .order_by(a.c.id)))


def set_merchant(sb, mchid: str, **values) -> None:
    with db.write_tx(sb.engine) as conn:
        conn.execute(update(db.merchants).where(db.merchants.c.mchid == mchid).values(**values))


@dataclass
class Env:
    app: Flask
    sb: Sandbox
    m: TestMerchant
    d: Dispatcher
