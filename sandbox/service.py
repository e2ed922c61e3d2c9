"""The sandbox's per-app services: engine, clock, keys, backends, hooks.

One `Sandbox` object lives in `app.extensions["payscore"]`; there is no module-level state, so
several sandboxes (for example one per test) can run in one process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app
from sqlalchemy.engine import Engine

from sandbox import db, provision
from sandbox.clock import Clock
from sandbox.held import HeldConnection, RequestLog, StateProbe
from sandbox.security import MerchantCache, ResponseSigner


@dataclass
class Hooks:
    """Named hook points where faults apply (design: before, after, build, send)."""

    before: list[Callable] = field(default_factory=list)
    after: list[Callable] = field(default_factory=list)
    build: list[Callable] = field(default_factory=list)
    send: list[Callable] = field(default_factory=list)


class Sandbox:
    def __init__(self, engine: Engine, config: dict):
        self.engine = engine
        self.config = config
        self.held = HeldConnection(engine)
        self.probe = StateProbe(engine, self.held)
        self.clock = Clock(engine, self.probe)
        self.merchants = MerchantCache(engine)
        self.request_log = RequestLog(engine, self.held)
        self.hooks = Hooks()
        self.data_dir = Path(config.get("DATA_DIR", ".payscore"))
        with engine.connect() as conn:
            self.signer = ResponseSigner(provision.load_platform_keys(conn))
        self.extras: dict[str, object] = {}
        from sandbox.backend.permissions import Permissions
        from sandbox.backend.refunds import Refunds
        from sandbox.backend.serviceorders import ServiceOrders

        self.orders = ServiceOrders(engine)
        self.permissions = Permissions(engine)
        self.refunds = Refunds(engine)

    def reload_platform_keys(self) -> None:
        with self.engine.connect() as conn:
            self.signer.replace(provision.load_platform_keys(conn))

    def advance(self, delta_us: int) -> int:
        """Move the clock forward and run the jobs that fall due; returns how many ran."""
        runner = self.extras.get("job_runner")
        if runner is None:
            self.clock.shift(delta_us)
            return 0
        return runner.advance(delta_us)  # type: ignore[attr-defined]

    def tx(self):
        return db.write_tx(self.engine)


def current() -> Sandbox:
    return current_app.extensions["payscore"]
