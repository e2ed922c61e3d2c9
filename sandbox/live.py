"""A sandbox served over real HTTP on a free loopback port, in this process.

Used by the pytest plugin and by tests that need real sockets (real clients, callbacks, the
scenario runner). Background services start as in `payscore up`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Self

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.app import create_app


class LiveSandbox:
    def __init__(self, data_dir: Path, db_url: str | None = None, host: str = "127.0.0.1",
                 **config: Any):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.app: Flask = create_app({
            "DATABASE_URL": db_url or f"sqlite:///{data_dir / 'sandbox.db'}",
            "DATA_DIR": str(data_dir), "START_DISPATCHER": True, "START_WORLD": True,
            **config})
        self.server: BaseWSGIServer = make_server(host, 0, self.app, threaded=True)
        self.host = host
        self.port = self.server.server_port
        self.base_url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name=f"sandbox:{self.port}", daemon=True)

    @property
    def sandbox(self):
        return self.app.extensions["payscore"]

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        stop = self.sandbox.extras.get("stop_services")
        if callable(stop):
            stop()
        self._thread.join(timeout=5)
        self.sandbox.engine.dispose()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
