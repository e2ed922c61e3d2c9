"""Settling a run and gathering each flow's evidence, over HTTP only.

Settle = the faults are disarmed, the jobs already due run (POST /sandbox/clock/advance by 0s,
or further when a caller wants late payers to pay), the sandbox delivers every pending callback
(POST /sandbox/notifications/drain), the merchant reconciles (POST {driver}/reconcile), and
callbacks caused by that are drained again. Then each flow's evidence is read: the merchant's
view (driver target), the provider order by a signed query with the merchant's credentials, and
the callbacks the sink saw (sandbox target). Reads run in a small thread pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from loadtests import judge
from loadtests.judge import FlowEvidence, FlowRecord, FlowVerdict, MerchantView, ProviderOrder
from loadtests.signer import MerchantSigner, query_target
from merchant_kit.transport import session_for

log = logging.getLogger(__name__)
ORDER = "/v3/payscore/serviceorder"


@dataclass
class SettleReport:
    drained: bool = False
    drain_answer: Any = None
    reconciled: Any = None
    notes: list[str] = field(default_factory=list)


class Settler:
    def __init__(self, sandbox_url: str, signer: MerchantSigner | None = None,
                 driver_url: str | None = None, timeout: float = 30.0, workers: int = 8):
        self.sandbox_url = sandbox_url.rstrip("/")
        self.driver_url = driver_url.rstrip("/") if driver_url else None
        self.signer = signer
        self.timeout = timeout
        self.workers = workers
        self.http = session_for(self.sandbox_url)
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=workers * 2)
        self.http.mount("http://", adapter)

    # ------------------------------------------------------------ settling

    def drain(self, report: SettleReport) -> None:
        try:
            r = self.http.post(f"{self.sandbox_url}/sandbox/notifications/drain", json={},
                               timeout=120)
        except requests.RequestException as exc:
            report.notes.append(f"drain failed: {exc}")
            return
        if r.status_code == 404:
            report.notes.append("the sandbox has no /sandbox/notifications/drain: callbacks "
                                "were not drained")
            return
        report.drained = r.status_code < 300
        report.drain_answer = r.json() if r.content else None
        if not report.drained:
            report.notes.append(f"drain answered {r.status_code}: {r.text[:200]}")

    def reconcile(self, report: SettleReport) -> None:
        if not self.driver_url:
            return
        try:
            r = self.http.post(f"{self.driver_url}/reconcile", json={}, timeout=120)
            report.reconciled = r.json() if r.content else {"status": r.status_code}
            if r.status_code >= 300:
                report.notes.append(f"reconcile answered {r.status_code}")
        except (requests.RequestException, ValueError) as exc:
            report.notes.append(f"reconcile failed: {exc}")

    def run_due_jobs(self, report: SettleReport, advance: str = "0s") -> None:
        """Advance the sandbox clock (0s: just run the jobs already due, e.g. deductions)."""
        try:
            r = self.http.post(f"{self.sandbox_url}/sandbox/clock/advance", json={"by": advance},
                               timeout=300)
            if r.status_code >= 300:
                report.notes.append(f"clock advance answered {r.status_code}")
        except requests.RequestException as exc:
            report.notes.append(f"clock advance failed: {exc}")

    def settle(self, advance: str = "0s") -> SettleReport:
        """Run due (or, with `advance`, future) jobs, drain callbacks, reconcile, drain."""
        report = SettleReport()
        self.run_due_jobs(report, advance)
        self.drain(report)
        if self.driver_url:
            self.reconcile(report)
            self.drain(report)
        return report

    # ------------------------------------------------------------ evidence

    def provider_order(self, out_order_no: str) -> ProviderOrder | None:
        """The sandbox's order by a signed, verified query; None if it does not exist."""
        if self.signer is None:
            raise RuntimeError("reading provider orders needs the merchant's credentials")
        target = query_target(ORDER, {"out_order_no": out_order_no, **self.signer.ids()})
        for _ in range(3):
            headers = self.signer.signed_headers("GET", target, b"")
            r = self.http.get(self.sandbox_url + target, headers=headers, timeout=self.timeout)
            if r.status_code == 404:
                return None
            if r.status_code == 200 and self.signer.verify(r.headers, r.content) is None:
                return provider_order_from_entity(r.json())
        raise RuntimeError(f"could not read order {out_order_no}: {r.status_code} "
                           f"{r.text[:200]}")

    def merchant_view(self, rental_id: str) -> MerchantView | None:
        r = self.http.get(f"{self.driver_url}/rentals/{rental_id}", timeout=self.timeout)
        if r.status_code != 200:
            return None
        data = r.json()
        return MerchantView(merchant_state=str(data.get("merchant_state")),
                            out_order_no=data.get("out_order_no"),
                            charged=int(data.get("charged") or 0),
                            refunded=int(data.get("refunded") or 0),
                            device_released=data.get("device_released"))

    def evidence(self, flow: FlowRecord,
                 callbacks: Callable[[str], frozenset[str]] | None = None) -> FlowEvidence:
        view = None
        number = flow.out_order_no
        if flow.target == "driver" and flow.rental_id:
            view = self.merchant_view(flow.rental_id)
            if view is None:
                view = MerchantView(judge.UNKNOWN, number)
            number = view.out_order_no or number
        orders: tuple[ProviderOrder, ...] = ()
        missing = False
        if number and self.signer is not None:
            order = self.provider_order(number)
            missing = order is None
            orders = (order,) if order is not None else ()
        seen = callbacks(number) if callbacks is not None and number else None
        return FlowEvidence(view, orders, missing, seen)

    def judge_all(self, flows: Iterable[FlowRecord],
                  callbacks: Callable[[str], frozenset[str]] | None = None,
                  progress: Callable[[int], None] | None = None) -> dict[str, FlowVerdict]:
        """Gather evidence and judge every finished flow."""
        todo = [f for f in flows if not f.interrupted]

        def one(flow: FlowRecord) -> FlowVerdict:
            try:
                evidence = self.evidence(flow, callbacks)
            except (requests.RequestException, RuntimeError, ValueError) as exc:
                flow.errors.append(f"evidence unreadable: {exc}")
                evidence = FlowEvidence(None, (), False, None)
            return judge.judge_flow(flow, evidence)

        verdicts: dict[str, FlowVerdict] = {}
        with ThreadPoolExecutor(self.workers) as pool:
            for verdict in pool.map(one, todo):
                verdicts[verdict.flow_id] = verdict
                if progress is not None:
                    progress(1)
        return verdicts

    def created_orders(self, mchid: str, openids: Iterable[str], since_us: int,
                       max_pages: int = 2000) -> list[str] | None:
        """out_order_nos of the run's users' orders created since `since_us` (sandbox clock),
        from GET /sandbox/api/orders; None if the sandbox cannot list orders.

        Scoped to the run's users so that the merchant's other activity (its reconciler
        re-creating an older order, another run) is never blamed on this one.
        """
        found: set[str] = set()
        now_us = sandbox_now_us(self.sandbox_url, self.http)
        for openid in sorted(set(openids)):
            params: dict[str, Any] = {"mchid": mchid, "openid": openid, "limit": 200,
                                      "since": f"{max(1, (now_us - since_us) // 1_000_000 + 5)}s"}
            for _ in range(max_pages):
                try:
                    r = self.http.get(f"{self.sandbox_url}/sandbox/api/orders", params=params,
                                      timeout=self.timeout)
                except requests.RequestException:
                    return None
                if r.status_code != 200:
                    return None
                data = r.json()
                found.update(o["out_order_no"] for o in data.get("orders", [])
                             if (o.get("created_us") or 0) >= since_us)
                if not data.get("next_before"):
                    break
                params["before"] = data["next_before"]
        return sorted(found)


def sandbox_now_us(sandbox_url: str, http: requests.Session | None = None) -> int:
    r = (http or requests).get(f"{sandbox_url.rstrip('/')}/sandbox/clock", timeout=30)
    r.raise_for_status()
    return int(r.json()["now_us"])


def provider_order_from_entity(entity: dict[str, Any]) -> ProviderOrder:
    collection = entity.get("collection") or {}
    return ProviderOrder(
        out_order_no=entity["out_order_no"], state=entity.get("state", "UNKNOWN"),
        state_description=entity.get("state_description"),
        collection_state=collection.get("state"),
        total_amount=entity.get("total_amount"),
        paid_amount=int(collection.get("paid_amount") or 0),
        payments=len(collection.get("details") or []))


def failure_timeline(flows: Iterable[FlowRecord], verdicts: dict[str, FlowVerdict],
                     buckets: int = 30) -> list[dict[str, float]]:
    """Flows and failures per time bucket (by flow end), for the failure-rate-over-time plot."""
    done = [f for f in flows if not f.interrupted and f.flow_id in verdicts]
    if not done:
        return []
    start = min(f.started for f in done)
    end = max(f.ended for f in done)
    width = max((end - start) / buckets, 1e-6)
    series = [{"t": i * width, "flows": 0, "failed": 0} for i in range(buckets)]
    for flow in done:
        index = min(int((flow.ended - start) / width), buckets - 1)
        series[index]["flows"] += 1
        series[index]["failed"] += not verdicts[flow.flow_id].ok
    return series
