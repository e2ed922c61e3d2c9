"""Serve the reference merchant over real HTTP on a loopback port, in this process.

The merchant must know its own address before it creates orders (notify_url), but a free port
is only known once the socket is bound: the server is bound first, with a small WSGI shim that
forwards to the app created right after.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from merchant_kit.reference.app import create_app

POLL_S = 0.05  # how soon stop() is noticed by the serving thread


class LiveMerchant:
    def __init__(self, config: Mapping[str, Any], host: str = "127.0.0.1", port: int = 0):
        self._app: Flask | None = None
        self._served = False
        self.server: BaseWSGIServer = make_server(host, port, self._wsgi, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://{host}:{self.port}"
        self.app = create_app({"PUBLIC_URL": self.url, **config})
        self._app = self.app
        self._thread = threading.Thread(target=self.server.serve_forever, args=(POLL_S,),
                                        name=f"merchant:{self.port}", daemon=True)

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

    def start(self) -> Self:
        self._served = True
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (payscore merchant-demo)."""
        self._served = True
        try:
            self.server.serve_forever()
        finally:
            self._served = False
            self.server.server_close()
            self.merchant.stop()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever for a loop never started
            self.server.shutdown()
            self._thread.join(timeout=5)
        if self._served:
            self._served = False
            self.server.server_close()
            self.merchant.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
