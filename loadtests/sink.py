"""The load run's callback receiver when the load users are the merchant (sandbox target).

Behaves like a correct merchant endpoint: verifies the signature over the raw body with the
platform keys of merchant.json, decrypts the resource with the APIv3 key, records the event per
order, and answers 204 (401 to anything it cannot trust, so the sandbox retries). Duplicates are
answered 204 and counted once per notification id. Served on a free 127.0.0.1 port.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from typing import Any, Self

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from loadtests.signer import MerchantSigner
from merchant_kit import protocol


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # thousands of callbacks per run: the summary counts them


class CallbackSink:
    def __init__(self, signer: MerchantSigner, host: str = "127.0.0.1"):
        self.signer = signer
        self.lock = threading.Lock()
        self.events: dict[str, set[str]] = defaultdict(set)  # out_order_no -> event types
        self.seen_ids: set[str] = set()
        self.received = 0
        self.duplicates = 0
        self.rejected: dict[str, int] = defaultdict(int)
        self.server = make_server(host, 0, self._app, threaded=True,
                                  request_handler=_QuietHandler)
        self.url = f"http://{host}:{self.server.server_port}/notify"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="payscore-load-sink")

    def start(self) -> CallbackSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _app(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data(cache=False)
        response = self.handle(request.headers, body)
        return response(environ, start_response)

    def handle(self, headers: Any, body: bytes) -> Response:
        reason = self.signer.verify(headers, body)
        if reason is not None:
            return self._reject(reason, 401)
        try:
            envelope = json.loads(body)
            plain = json.loads(protocol.decrypt_resource(self.signer.apiv3_key,
                                                         envelope["resource"]))
        except (ValueError, KeyError, TypeError, protocol.ProtocolError):
            return self._reject("undecryptable", 400)
        with self.lock:
            self.received += 1
            if envelope.get("id") in self.seen_ids:
                self.duplicates += 1
            else:
                self.seen_ids.add(envelope.get("id"))
                key = plain.get("out_order_no") or plain.get("out_refund_no") or "?"
                self.events[key].add(str(envelope.get("event_type")))
        return Response(status=204)

    def _reject(self, reason: str, status: int) -> Response:
        with self.lock:
            self.rejected[reason] += 1
        return Response(json.dumps({"code": "FAIL", "message": reason}), status=status,
                        content_type="application/json")

    def events_for(self, out_order_no: str) -> frozenset[str]:
        with self.lock:
            return frozenset(self.events.get(out_order_no, ()))

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {"received": self.received, "duplicates": self.duplicates,
                    "rejected": dict(self.rejected), "orders": len(self.events)}
