"""Fault injection: a closed set of effect kinds applied at the sandbox's hook points.

- effects.py / callback_effects.py: the kinds, each implemented once (params.py: their
  parameters);
- engine.py: the per-process cache of armed faults and the atomic decision to take one;
- hooks.py: the functions installed into `Sandbox.hooks` (before, after, build, send);
- transport.py: the WSGI middleware that drops a connection without an answer;
- backend.py: arming, disarming and the evidence (the control API's operations).

`install(app, sandbox)` wires it into an app; create_app calls it.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from sandbox.faults.engine import FaultEngine
from sandbox.faults.hooks import FaultHooks
from sandbox.faults.transport import ConnectionFaults


def install(app: Flask, sandbox: Any) -> FaultEngine:
    """Hooks into `sandbox.hooks`, the drop middleware around the app, the engine in extras."""
    from sandbox.faults.backend import Faults

    engine = FaultEngine(sandbox)
    hooks = FaultHooks(engine)
    sandbox.hooks.before.append(hooks.before)
    sandbox.hooks.after.append(hooks.after)
    sandbox.hooks.build.append(hooks.build)
    sandbox.hooks.send.append(hooks.send)
    sandbox.extras["faults"] = engine
    sandbox.extras["fault_control"] = Faults(sandbox)
    app.wsgi_app = ConnectionFaults(app.wsgi_app)  # type: ignore[method-assign]
    return engine
