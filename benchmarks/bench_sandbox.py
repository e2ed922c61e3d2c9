"""Sandbox throughput against its floor (python benchmarks/bench_sandbox.py).

Serves, one after the other and under the same gunicorn settings (`sandbox.server.
gunicorn_options`: gthread, `--workers`, `--threads`, no access log):
  (a) the sandbox, exactly as `payscore up` builds it (SQLite in a temp data dir by default,
      `--db postgresql://...` for PostgreSQL; dispatcher and world ticker running);
  (b) the floor: a minimal Flask app that answers every call with one fixed body signed by
      `protocol.sign_response` (RSA-2048), i.e. only what any signed answer costs.
Both are driven by the same load generator: `--connections` keep-alive HTTP connections (one
thread each) replaying pre-signed merchant requests, a create/query mix (`--query-share`).
Requests are signed before the clock starts, so the driver's own RSA work is not measured.
Rounds alternate a, b, a, b ... and the medians are compared; prints requests/s, p50/p99
latency and the ratio a/b (target: >= 0.7 with 2 workers).

`python benchmarks/bench_sandbox.py profile` instead measures, in process and single-threaded,
the CPU each request costs (a) and (b) (an upper bound for the ratio that ignores the other
processes on the machine), then prints where the sandbox's time goes under cProfile.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from merchant_kit import protocol

ORDERS = "/v3/payscore/serviceorder"
FLOOR_BODY = {  # the size and shape of a real create answer
    "out_order_no": "BENCH-0000000000", "service_id": "2002" + "0" * 28,
    "appid": "wx0000000000000000", "mchid": "1900000000", "service_introduction": "充电宝租借",
    "state": "CREATED", "risk_fund": {"name": "ESTIMATE_ORDER_COST", "amount": 9900},
    "time_range": {"start_time": "OnAccept"}, "notify_url": "http://127.0.0.1:9/notify",
    "order_id": "1" + "0" * 30, "package": "x" * 64,
}


# ------------------------------------------------------------------ the two servers

def serve_sandbox(data_dir: str, port: int, workers: int, threads: int, db: str | None) -> None:
    """What `payscore up` does, minus the banner and the access log."""
    from sandbox import server
    from sandbox.cli import ensure_demo_merchant, open_sandbox

    app = open_sandbox(data_dir, db)
    ensure_demo_merchant(app, f"http://127.0.0.1:{port}")
    server.serve(app.config, "127.0.0.1", port, workers, threads, quiet=True)


def floor_app():
    from flask import Flask, Response, request

    key = protocol.generate_private_key()
    serial = f"{random.getrandbits(159) | 1 << 158:X}"
    body = json.dumps(FLOOR_BODY, ensure_ascii=False, separators=(",", ":")).encode()
    app = Flask("floor")

    @app.route(ORDERS, methods=["GET", "POST"])
    def signed_fixed_answer():
        request.get_data()
        response = Response(body, content_type="application/json; charset=utf-8")
        response.headers.update(protocol.sign_response(key, serial, body, int(time.time()),
                                                       protocol.make_hex_nonce()))
        return response

    return app


def serve_floor(port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    from sandbox.server import gunicorn_options

    class Floor(BaseApplication):
        def load_config(self) -> None:
            for name, value in gunicorn_options("127.0.0.1", port, workers, threads,
                                                quiet=True).items():
                self.cfg.set(name, value)

        def load(self):
            return floor_app()

    Floor().run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def child_server(args: list[str], port: int) -> Iterator[tuple[str, int]]:
    """Run this script with `args` as a child; yield its base URL and pid once it answers."""
    proc = subprocess.Popen([sys.executable, __file__, *args])
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server {args[0]} exited with {proc.returncode}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/sandbox/health")
                conn.getresponse().read()
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"server {args[0]} did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


# ------------------------------------------------------------------ the load generator

@dataclass
class Merchant:
    mchid: str
    appid: str
    service_id: str
    serial_no: str
    key: protocol.PrivateKey

    @classmethod
    def from_json(cls, path: Path) -> Merchant:
        info = json.loads(path.read_text())
        key = protocol.load_private_key((path.parent / info["private_key_path"]).read_bytes())
        return cls(info["mchid"], info["appid"], info["service_id"],
                   info["merchant_serial_no"], key)

    def signed(self, method: str, target: str, body: dict | None) -> tuple:
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        auth = protocol.build_authorization(self.mchid, self.serial_no, self.key, method, target,
                                            data, int(time.time()), protocol.make_nonce())
        headers = {"Authorization": auth, "Accept": "application/json",
                   "User-Agent": "payscore-bench/1", "Content-Type": "application/json"}
        return method, target, data or None, headers

    def create(self, out_order_no: str) -> tuple:
        return self.signed("POST", ORDERS, {
            "out_order_no": out_order_no, "appid": self.appid, "service_id": self.service_id,
            "service_introduction": "充电宝租借", "time_range": {"start_time": "OnAccept"},
            "risk_fund": {"name": "ESTIMATE_ORDER_COST", "amount": 9900},
            "notify_url": "http://127.0.0.1:9/notify", "need_user_confirm": True})

    def query(self, out_order_no: str) -> tuple:
        return self.signed("GET", f"{ORDERS}?service_id={self.service_id}&appid={self.appid}"
                           f"&out_order_no={out_order_no}", None)


def plan(merchant: Merchant, tag: str, n: int, query_share: float, known: list[str],
         seed: int) -> list[tuple]:
    """n pre-signed requests: creates of fresh orders and queries of `known` ones."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if known and rng.random() < query_share:
            out.append(merchant.query(rng.choice(known)))
        else:
            out.append(merchant.create(f"{tag}-{i}"))
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a server and its worker processes: with it
    the run tells CPU per request apart from time spent waiting (locks, the database)."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


@dataclass
class Result:
    requests: int
    seconds: float
    latencies_ms: list[float]
    failures: int
    cpu_s: float = 0.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s / self.requests * 1000

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def drive(base_url: str, requests_: list[tuple], connections: int) -> Result:
    host, port = base_url.removeprefix("http://").split(":")
    todo = iter(requests_)
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        mine, bad = [], 0
        while True:
            with lock:
                item = next(todo, None)
            if item is None:
                break
            method, target, body, headers = item
            started = time.perf_counter()
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append((time.perf_counter() - started) * 1000)
            bad += not 200 <= response.status < 300
        conn.close()
        with lock:
            latencies.extend(mine)
            failures[0] += bad

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Result(len(requests_), time.perf_counter() - started, latencies, failures[0])


# ------------------------------------------------------------------ the comparison

@contextlib.contextmanager
def scratch_database(url: str | None) -> Iterator[str | None]:
    """SQLite: None (a file in the temp data dir). PostgreSQL: a schema of our own on `url`,
    dropped afterwards, so the run neither sees nor leaves rows in anyone else's tables."""
    if not url or not url.startswith("postgresql"):
        yield url
        return
    import psycopg

    schema = f"bench_sandbox_{random.getrandbits(32):08x}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-sandbox-")) / "data"
    ports = {"sandbox": _free_port(), "floor": _free_port()}
    common = [str(args.workers), str(args.threads)]
    floor_args = ["serve-floor", str(ports["floor"]), *common]
    with scratch_database(args.db) as db_url, \
            child_server(["serve-sandbox", str(data_dir), str(ports["sandbox"]), *common,
                          db_url or ""], ports["sandbox"]) as (sandbox_url, sandbox_pid), \
            child_server(floor_args, ports["floor"]) as (floor_url, floor_pid):
        merchant = Merchant.from_json(data_dir / "merchant.json")
        urls = {"sandbox": sandbox_url, "floor": floor_url}
        pids = {"sandbox": sandbox_pid, "floor": floor_pid}
        known = [f"warm-{i}" for i in range(args.warmup)]
        for name, url in urls.items():  # warm both; the sandbox keeps these orders for queries
            drive(url, [merchant.create(no) for no in known], args.connections)
        results: dict[str, list[Result]] = {"sandbox": [], "floor": []}
        for round_no in range(args.rounds):
            for name, url in urls.items():
                requests_ = plan(merchant, f"r{round_no}-{name}", args.requests,
                                 args.query_share, known, seed=round_no)
                cpu_before = tree_cpu_s(pids[name])
                result = drive(url, requests_, args.connections)
                result.cpu_s = tree_cpu_s(pids[name]) - cpu_before
                results[name].append(result)
                print(f"round {round_no + 1} {name:7s} {result.rps:8.1f} req/s  "
                      f"p50 {result.pct(50):6.2f} ms  p99 {result.pct(99):6.2f} ms  "
                      f"server CPU {result.cpu_ms:5.2f} ms/req  non-2xx {result.failures}",
                      flush=True)
    summary = {}
    for name, rounds in results.items():
        latencies = [ms for r in rounds for ms in r.latencies_ms]
        pooled = Result(len(latencies), 1.0, latencies, sum(r.failures for r in rounds))
        pooled.cpu_s = statistics.median(r.cpu_ms for r in rounds) * len(latencies) / 1000
        summary[name] = (statistics.median(r.rps for r in rounds), pooled)
    print(f"\nworkers={args.workers} threads={args.threads} connections={args.connections} "
          f"requests/round={args.requests} query share={args.query_share} "
          f"db={args.db or 'sqlite'}")
    for name, (rps, pooled) in summary.items():
        label = "(a) sandbox" if name == "sandbox" else "(b) floor  "
        print(f"{label}  {rps:8.1f} req/s (median)  p50 {pooled.pct(50):6.2f} ms  "
              f"p99 {pooled.pct(99):6.2f} ms  server CPU {pooled.cpu_ms:5.2f} ms/req  "
              f"non-2xx {pooled.failures}")
    ratio = summary["sandbox"][0] / summary["floor"][0]
    print(f"ratio a/b  {ratio:.2f}  (target >= 0.70: {'met' if ratio >= 0.7 else 'NOT met'})")


def replay(client, items: list[tuple]) -> float:
    """Send pre-signed requests through a Flask test client; CPU seconds per request of this
    thread (other processes' load, and the app's background threads, do not count)."""
    started = time.thread_time()
    for method, target, body, headers in items:
        r = client.open(target, method=method, data=body, headers=headers)
        assert r.status_code == 200, r.get_data()
    return (time.thread_time() - started) / len(items)


def profile(args: argparse.Namespace) -> None:
    """In process, single thread, Flask's test client: CPU per request of (a) and (b), which
    bounds the CPU-bound throughput ratio, then the sandbox's request path under cProfile."""
    with scratch_database(args.db) as db_url:
        _profile(args, db_url)


def _profile(args: argparse.Namespace, db_url: str | None) -> None:
    import cProfile
    import pstats

    from sandbox.testing import add_merchant, make_sandbox

    app = make_sandbox(Path(tempfile.mkdtemp(prefix="bench-profile-")), db_url=db_url)
    m = add_merchant(app)
    merchant = Merchant(m.mchid, m.appid, m.service_id, m.serial_no, m.private_key)
    clients = {"sandbox": app.test_client(), "floor": floor_app().test_client()}
    known = [f"warm-{i}" for i in range(args.warmup)]

    def send(name: str, items: list[tuple]) -> float:
        return replay(clients[name], items)

    for name in clients:
        send(name, [merchant.create(no) for no in known])
    cpu: dict[str, list[float]] = {"sandbox": [], "floor": []}
    for round_no in range(args.rounds):
        for name in clients:
            items = plan(merchant, f"cpu{round_no}-{name}", args.requests, args.query_share,
                         known, seed=round_no)
            cpu[name].append(send(name, items))
    a, b = (statistics.median(cpu[name]) * 1000 for name in ("sandbox", "floor"))
    print(f"CPU per request, in process (median of {args.rounds} rounds of {args.requests}):"
          f" (a) sandbox {a:.2f} ms, (b) floor {b:.2f} ms, b/a {b / a:.2f}\n")

    items = plan(merchant, "prof", args.requests, args.query_share, known, seed=99)
    profiler = cProfile.Profile()
    profiler.enable()
    send("sandbox", items)
    profiler.disable()
    app.extensions["payscore"].engine.dispose()
    pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve-sandbox":
        data_dir, port, workers, threads, db = sys.argv[2:7]
        return serve_sandbox(data_dir, int(port), int(workers), int(threads), db or None)
    if len(sys.argv) > 1 and sys.argv[1] == "serve-floor":
        port, workers, threads = sys.argv[2:5]
        return serve_floor(int(port), int(workers), int(threads))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("run", "profile"), default="run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000, help="per round and server")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--query-share", type=float, default=0.5)
    parser.add_argument("--db", default=None, help="database URL for the sandbox")
    parser.add_argument("--sort", default="tottime", help="profile: pstats sort key")
    parser.add_argument("--top", type=int, default=30, help="profile: rows to print")
    args = parser.parse_args()
    (profile if args.mode == "profile" else run)(args)


if __name__ == "__main__":
    main()
