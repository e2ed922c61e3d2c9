"""Callback throughput: delivered per second to a local receiver vs only encrypting+signing.

Run on demand (not a test):  python benchmarks/bench_callbacks.py [--count 2000] [--workers 8]

The receiver is a separate process (a merchant is), answering 204 over HTTP/1.1 keep-alive.
"Delivered" means the full path: claim with a lease, build (AES-256-GCM + RSA-SHA256), POST,
read the answer, record the attempt and the row's new state. Target: ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import func, select

from sandbox import db
from sandbox.app import create_app
from sandbox.callbacks import envelope, outbox
from sandbox.callbacks.delivery import Delivery
from sandbox.callbacks.dispatcher import dispatcher_of

PAYLOAD = {"appid": "wxd678efh567hg6787", "mchid": "1230000109", "out_order_no": "1234323JKHDFE",
           "service_id": "500001", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "state": "DONE",
           "state_description": "USER_PAID", "service_introduction": "充电宝租借",
           "total_amount": 400, "need_collection": True,
           "collection": {"state": "USER_PAID", "total_amount": 400, "paying_amount": 0,
                          "paid_amount": 400, "details": [{"seq": 1, "amount": 400,
                                                           "paid_type": "NEWTON"}]}}


def _serve(port_out) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

    server = Server(("127.0.0.1", 0), Handler)
    port_out.put(server.server_port)
    server.serve_forever()


def sign_only_rate(sb, merchant, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        delivery = Delivery(notification_id=f"bench-{i}", mchid=merchant.mchid,
                            event_type="PAYSCORE.USER_PAID", summary="支付成功",
                            original_type="payscore", url="http://127.0.0.1/", order_pk=None,
                            out_order_no=None, openid=None, plaintext=dict(PAYLOAD),
                            create_time_us=0, timestamp_s=int(time.time()), attempt=1)
        envelope.build(delivery, apiv3_key=merchant.apiv3_key.encode(),
                       signing_mode="certificate", migration_ratio=0.0, signer=sb.signer)
    return count / (time.perf_counter() - started)


def enqueue(sb, mchid: str, url: str, count: int) -> None:
    with db.write_tx(sb.engine) as conn:
        now_us = sb.clock.now_us(conn)
        for _ in range(count):
            outbox.enqueue(conn, mchid=mchid, event_type="PAYSCORE.USER_PAID", url=url,
                           resource=PAYLOAD, now_us=now_us)


def delivered(sb) -> int:
    n = db.notifications
    with sb.engine.connect() as conn:
        return conn.execute(select(func.count()).where(n.c.status == "DELIVERED")).scalar_one()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    ports: multiprocessing.Queue = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    receiver.start()
    url = f"http://127.0.0.1:{ports.get(timeout=10)}/notify"
    data_dir = Path(tempfile.mkdtemp(prefix="bench-callbacks-"))
    app = create_app({"DATABASE_URL": f"sqlite:///{data_dir / 'sandbox.db'}",
                      "DATA_DIR": str(data_dir), "CALLBACK_WORKERS": args.workers,
                      "CALLBACK_POLL_S": 0.01})
    sb = app.extensions["payscore"]
    from sandbox.testing import add_merchant

    merchant = add_merchant(app)
    dispatcher = dispatcher_of(sb)
    sign_rates, drain_rates, background_rates = [], [], []
    try:
        for _ in range(args.rounds):
            sign_rates.append(sign_only_rate(sb, merchant, args.count))
            enqueue(sb, merchant.mchid, url, args.count)
            started = time.perf_counter()
            counts = dispatcher.drain()
            drain_rates.append(counts["delivered"] / (time.perf_counter() - started))
            base = delivered(sb)
            enqueue(sb, merchant.mchid, url, args.count)
            started = time.perf_counter()
            dispatcher.start()
            deadline = time.monotonic() + 300
            while delivered(sb) < base + args.count and time.monotonic() < deadline:
                time.sleep(0.1)  # each look is a query: do not compete with the dispatcher
            background_rates.append((delivered(sb) - base) / (time.perf_counter() - started))
            dispatcher.stop()
    finally:
        dispatcher.stop()
        receiver.terminate()
    sign = statistics.median(sign_rates)
    for name, rates in (("drain (synchronous)", drain_rates),
                        ("background dispatcher", background_rates)):
        rate = statistics.median(rates)
        print(f"{name:24s} {rate:8.0f} callbacks/s delivered   ratio {rate / sign:.2f}")
    print(f"{'encrypt+sign only':24s} {sign:8.0f} envelopes/s (1 thread)   "
          f"({args.count} per round, {args.rounds} rounds, {args.workers} POST workers, "
          f"medians)")


if __name__ == "__main__":
    main()
