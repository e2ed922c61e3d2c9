"""Serve the reference merchant over real HTTP on a loopback port, in this process.

The merchant must know its own address before it creates orders (notify_url), but a free port
is only known once the socket is bound: the server is bound first, with a small WSGI shim that
forwards to the app created right after.

Served by waitress, not werkzeug's development server: that one answers every request with
`Connection: close` and starts a thread per connection, so each driver call and each callback
paid a new TCP connection on both sides and a thread start here (measured in a live gray run:
8.7 % of the merchant's Python time in thread start-up alone). Waitress keeps connections
alive and hands requests to a fixed pool of threads, as a merchant's production server would.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self

from flask import Flask
from waitress import wasyncore
from waitress.server import create_server

from merchant_kit.reference.app import create_app

POLL_S = 0.05  # how soon stop() is noticed by the serving thread
# Driver calls wait on the provider (faults can delay it by seconds) while callbacks keep
# arriving: enough threads that a run's concurrency (gray: 64 users) rarely queues.
THREADS = 32


class LiveMerchant:
    def __init__(self, config: Mapping[str, Any], host: str = "127.0.0.1", port: int = 0,
                 threads: int = THREADS):
        self._app: Flask | None = None
        self._served = False
        self._closed = False
        self._close_lock = threading.Lock()  # stop() and the serving thread may both close
        self._stopping = threading.Event()
        self._map: dict[int, Any] = {}  # waitress' socket map: the listener and its channels
        # A busy run queues requests for a moment by design; waitress would warn on each.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self.server = create_server(self._wsgi, map=self._map, host=host, port=port,
                                    threads=threads, connection_limit=1000,
                                    ident="payscore-reference-merchant")
        self.port = int(self.server.effective_port)
        self.url = f"http://{host}:{self.port}"
        self.app = create_app({"PUBLIC_URL": self.url, **config})
        self._app = self.app
        self._thread = threading.Thread(target=self._serve, name=f"merchant:{self.port}",
                                        daemon=True)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]
              ) -> Iterable[bytes]:
        if self._app is None:  # a request before the app exists: nothing can be served yet
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        return self._app(environ, start_response)

    @property
    def merchant(self) -> Any:
        return self.app.extensions["reference_merchant"]

    @property
    def driver_url(self) -> str:
        return self.url + "/driver"

    def _serve(self) -> None:
        # waitress' own run() loops until its socket map is empty; one pass at a time lets
        # stop() end the loop from another thread without touching the map under it.
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=POLL_S, map=self._map, count=1)
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self.server.close()  # the listener first: no new connections
            self.server.task_dispatcher.shutdown(timeout=5)  # requests under way finish
            for channel in list(self._map.values()):
                channel.close()

    def start(self) -> Self:
        self._served = True
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (payscore merchant-demo)."""
        self._served = True
        try:
            self._serve()
        finally:
            self._served = False
            self.merchant.stop()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._close_sockets()  # never started: the bound listener still needs closing
        if self._served:
            self._served = False
            self.merchant.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
