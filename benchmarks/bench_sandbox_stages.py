"""Where a sandbox request's CPU goes, stage by stage (python benchmarks/bench_sandbox_stages.py).

Companion of bench_sandbox.py (issue 2's speed target): that script tells how far the sandbox
is from its floor; this one tells which stages make up the difference. In process, one thread,
Flask's test client, on SQLite in a temp dir (or `--db`): it wraps the pipeline's stages with
CPU timers (time.thread_time_ns, so nothing else on the machine counts) and sends pre-signed
creates of new orders, then queries of them, and prints the CPU per request of each stage for
each operation, beside the floor app's whole request (its only work is signing a fixed answer).

Stages nest as the pipeline does (sandbox.app): `_before` (Authorization, RSA verify, the
request-state read, fault hooks), the view (validation, the backend transaction, rendering),
`_after` (fault hooks, signing, the request log). What the stages leave over is Flask,
werkzeug and the test client, which the floor pays as well.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from bench_sandbox import Merchant, floor_app, replay, scratch_database

# (label, depth, owner, attributes): wrapped in this order; depth only indents the table.
STAGES = [
    ("_before", 0, "sandbox.app", ("_before",)),
    ("verify_request (RSA verify)", 1, "sandbox.security", ("verify_request",)),
    ("request_state (clock, faults, merchant)", 1, "sandbox.held.StateProbe", ("request_state",)),
    ("view", 0, None, ()),  # the app's view functions, wrapped after create_app
    ("load_body / load_query (marshmallow)", 1, "sandbox.views.serviceorders",
     ("load_body", "load_query")),
    ("backend transaction", 1, "sandbox.backend.serviceorders.ServiceOrders",
     ("create_service_order", "query_service_order")),
    ("render (JSON)", 1, "sandbox.views.serviceorders", ("render",)),
    ("_after", 0, "sandbox.app", ("_after",)),
    ("_sign (RSA sign)", 1, "sandbox.app", ("_sign",)),
    ("_log_request", 1, "sandbox.app", ("_log_request",)),
    ("RequestLog.write (INSERT)", 2, "sandbox.held.RequestLog", ("write",)),
]


class Timers:
    def __init__(self) -> None:
        self.ns: dict[str, int] = defaultdict(int)

    def wrap(self, label: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            started = time.thread_time_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ns[label] += time.thread_time_ns() - started
        return timed


def _resolve(path: str):
    """A module, or a class in one, by dotted path."""
    import importlib

    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def instrument(timers: Timers) -> None:
    """Wrap every stage that is a module or class attribute (before the app is built, since
    create_app registers `_before` and `_after` by reference)."""
    for label, _depth, where, names in STAGES:
        if where is None:
            continue
        owner = _resolve(where)
        for name in names:
            setattr(owner, name, timers.wrap(label, getattr(owner, name)))


def measure(args: argparse.Namespace, db_url: str | None) -> None:
    from sandbox.testing import add_merchant, make_sandbox

    timers = Timers()
    instrument(timers)
    app = make_sandbox(Path(tempfile.mkdtemp(prefix="bench-stages-")), db_url=db_url)
    for endpoint in ("serviceorders.create_service_order", "serviceorders.query_service_order"):
        app.view_functions[endpoint] = timers.wrap("view", app.view_functions[endpoint])
    m = add_merchant(app)
    merchant = Merchant(m.mchid, m.appid, m.service_id, m.serial_no, m.private_key)
    clients = {"sandbox": app.test_client(), "floor": floor_app().test_client()}

    def send(name: str, items: list[tuple]) -> float:
        return replay(clients[name], items) * 1e6

    warm = [merchant.create(f"warm-{i}") for i in range(args.warmup)]
    send("sandbox", warm)
    send("floor", warm)
    rows: dict[str, dict[str, float]] = {}
    totals: dict[str, float] = {}
    for op in ("create", "query"):
        per_round: dict[str, list[float]] = defaultdict(list)
        for round_no in range(args.rounds):
            numbers = [f"s{round_no}-{i}" for i in range(args.requests)]
            if op == "query":  # the orders of this round's creates, made first, untimed
                send("sandbox", [merchant.create(no) for no in numbers])
            items = [getattr(merchant, op)(no) for no in numbers]
            timers.ns.clear()
            per_round["total"].append(send("sandbox", items))
            for label, *_ in STAGES:
                per_round[label].append(timers.ns[label] / len(items) / 1000)
            per_round["floor"].append(send("floor", items))
        rows[op] = {label: statistics.median(v) for label, v in per_round.items()}
        totals[op] = rows[op]["total"]
    print(f"CPU per request in µs, in process, one thread (median of {args.rounds} rounds of "
          f"{args.requests}; db={db_url or 'sqlite'})\n")
    print(f"{'stage':44s} {'create':>9s} {'query':>9s}")
    for label, depth, *_ in STAGES:
        print(f"{'  ' * depth + label:44s} {rows['create'][label]:9.0f} "
              f"{rows['query'][label]:9.0f}")
    outside = {op: totals[op] - sum(rows[op][label] for label, depth, *_ in STAGES
                                    if depth == 0) for op in rows}
    print(f"{'Flask, werkzeug, test client':44s} {outside['create']:9.0f} "
          f"{outside['query']:9.0f}")
    print(f"{'whole request':44s} {totals['create']:9.0f} {totals['query']:9.0f}")
    print(f"{'floor app, whole request':44s} {rows['create']['floor']:9.0f} "
          f"{rows['query']['floor']:9.0f}")
    for op in rows:
        print(f"{op}: floor/sandbox {rows[op]['floor'] / totals[op]:.2f}")
    app.extensions["payscore"].engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per round and operation")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--db", default=None, help="database URL for the sandbox")
    args = parser.parse_args()
    with scratch_database(args.db) as db_url:
        measure(args, db_url)


if __name__ == "__main__":
    main()
