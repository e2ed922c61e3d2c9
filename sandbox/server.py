"""Serving the sandbox with gunicorn (one or several worker processes).

Each worker builds its own app from the same config (no state is shared in memory: the
database is the state), and starts the background services (callback dispatcher, job ticker)
after the fork, so every process delivers callbacks and claims are exclusive in the database.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication


class SandboxServer(BaseApplication):
    def __init__(self, config: dict[str, Any], options: dict[str, Any]):
        self.sandbox_config = dict(config)
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from sandbox.app import create_app

        return create_app({**self.sandbox_config, "START_DISPATCHER": True,
                           "START_WORLD": True, "PROVISION": False})


def serve(config: dict[str, Any], host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          threads: int = 4, quiet: bool = False) -> None:
    SandboxServer(config, gunicorn_options(host, port, workers, threads, quiet)).run()


def gunicorn_options(host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
                     threads: int = 4, quiet: bool = False) -> dict[str, Any]:
    """The server settings of `payscore up` (benchmarks serve their baseline with the same)."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 60,
        "graceful_timeout": 5,
        "keepalive": 8,  # WeChat answers with Keep-Alive: timeout=8
        "accesslog": None if quiet else "-",
        "loglevel": "warning",
        "preload_app": False,
    }
