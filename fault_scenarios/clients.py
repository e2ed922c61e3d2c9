"""The two HTTP clients the runner needs: the merchant's driver API and the sandbox control API.

Method names are the operationIds of the endpoints they call (the driver's
driver-openapi.yaml, the sandbox's /sandbox/ views). Driver calls never raise on an HTTP error:
a merchant's answer, whatever it is, is evidence (`Answer`). Control calls raise
`ControlError`: when the sandbox cannot do what a scenario needs, the scenario cannot run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

DRIVER_TIMEOUT_S = 120.0  # a driver call answers within the merchant's own provider deadlines
CONTROL_TIMEOUT_S = 120.0  # advancing the clock by a month runs a month of timed jobs
PAGE = 5000


@dataclass
class Answer:
    status: int | None
    body: Any
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class ControlError(RuntimeError):
    """The sandbox refused or failed a control call; the message says which and why."""


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only: never through a proxy from the environment
    return session


class DriverNotFound(RuntimeError):
    """No driver API answers at the URL given (nor under its /driver path)."""


def resolve_driver_url(url: str, timeout: float = 10.0) -> str:
    """The driver API's base URL (see find_driver)."""
    return find_driver(url, timeout)[0]


def find_driver(url: str, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
    """The driver API's base URL and its health answer. The contract's paths are /driver/..., so a merchant's root
    URL (what its banner prints) is an easy thing to pass for the driver's own: `url` is
    taken when GET {url}/health answers as a driver (a JSON object with `driver_version`),
    else {url}/driver when that does; else DriverNotFound says what each answered. Checked
    before a run so that a wrong URL fails in a second, not as 20 minutes of failed flows."""
    base = url.rstrip("/")
    tried = []
    http = _session()
    for candidate in (base, base + "/driver") if not base.endswith("/driver") else (base,):
        try:
            r = http.get(candidate + "/health", timeout=timeout)
            body = r.json() if r.status_code == 200 else None
        except requests.RequestException as exc:
            tried.append(f"GET {candidate}/health: {type(exc).__name__}")
            continue
        except ValueError:
            body = None
        if isinstance(body, dict) and "driver_version" in body:
            return candidate, body
        tried.append(f"GET {candidate}/health: {r.status_code}"
                     + ("" if r.status_code != 200 else " (not a driver health answer)"))
    raise DriverNotFound("no merchant driver API at " + url + " (" + "; ".join(tried) +
                         "); is the merchant running with its driver API on? The reference "
                         "merchant serves it at http://127.0.0.1:8090/driver")


class Driver:
    def __init__(self, base_url: str, timeout: float = DRIVER_TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = _session()

    def _call(self, method: str, path: str, body: Any = None) -> Answer:
        started = time.monotonic()
        try:
            r = self.http.request(method, self.base_url + path, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            return Answer(None, None, f"{type(exc).__name__}: {exc}"[:300],
                          time.monotonic() - started)
        try:
            data: Any = r.json()
        except ValueError:
            data = r.text[:500]
        return Answer(r.status_code, data, None, time.monotonic() - started)

    def get_health(self) -> Answer:
        return self._call("GET", "/health")

    def start_rental(self, openid: str, mode: str, deposit: int) -> Answer:
        return self._call("POST", "/rentals", {"openid": openid, "mode": mode,
                                               "deposit": deposit})

    def get_rental(self, rental_id: str) -> Answer:
        return self._call("GET", f"/rentals/{quote(rental_id, safe='')}")

    def finish_rental(self, rental_id: str, amount: int) -> Answer:
        return self._call("POST", f"/rentals/{quote(rental_id, safe='')}/finish",
                          {"amount": amount})

    def cancel_rental(self, rental_id: str, reason: str | None = None) -> Answer:
        return self._call("POST", f"/rentals/{quote(rental_id, safe='')}/cancel",
                          {"reason": reason} if reason else {})

    def refund_rental(self, rental_id: str, amount: int) -> Answer:
        return self._call("POST", f"/rentals/{quote(rental_id, safe='')}/refund",
                          {"amount": amount})

    def reconcile(self) -> Answer:
        return self._call("POST", "/reconcile")


class Sandbox:
    def __init__(self, base_url: str, timeout: float = CONTROL_TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = _session()

    def _call(self, method: str, path: str, body: Any = None,
              params: dict[str, Any] | None = None) -> Any:
        url = f"{self.base_url}/sandbox{path}"
        try:
            r = self.http.request(method, url, json=body, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ControlError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if r.status_code >= 400:
            raise ControlError(f"{method} {url}: {r.status_code} {r.text[:300]}")
        try:
            return r.json() if r.content else None
        except ValueError as exc:
            raise ControlError(f"{method} {url}: the answer is not JSON") from exc

    # ------------------------------------------------------------ sandbox and clock

    def sandbox_health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def get_clock(self) -> dict[str, Any]:
        return self._call("GET", "/clock")

    def advance_clock(self, by: str) -> dict[str, Any]:
        return self._call("POST", "/clock/advance", {"by": by})

    def drain_notifications(self) -> dict[str, Any]:
        return self._call("POST", "/notifications/drain", {})

    # ------------------------------------------------------------ faults

    def list_fault_kinds(self) -> dict[str, Any]:
        return self._call("GET", "/faults/kinds")

    def arm_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/faults", spec)

    def disarm_faults(self, scenario_id: str) -> dict[str, Any]:
        return self._call("DELETE", "/faults", params={"scenario_id": scenario_id})

    def list_faults(self, scenario_id: str) -> list[dict[str, Any]]:
        return self._call("GET", "/faults", params={"scenario_id": scenario_id,
                                                    "limit": 1000})["faults"]

    def list_requests(self, mchid: str, since_id: int) -> tuple[list[dict[str, Any]], int]:
        """Every request-log row of the merchant after `since_id`, and the new cursor."""
        rows: list[dict[str, Any]] = []
        for _ in range(100):  # bounded: 500,000 rows is far beyond one scenario
            page = self._call("GET", "/requests", params={"mchid": mchid,
                                                          "since_id": since_id, "limit": PAGE})
            rows += page["requests"]
            since_id = page["last_id"]
            if len(page["requests"]) < PAGE:
                break
        return rows, since_id

    def last_request_id(self) -> int:
        newest = self._call("GET", "/api/requests", params={"limit": 1})["requests"]
        return newest[0]["id"] if newest else 0

    # ------------------------------------------------------------ the world

    def get_user(self, openid: str) -> dict[str, Any]:
        return self._call("GET", f"/users/{quote(openid, safe='')}")

    def act_as_user(self, openid: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/users/{quote(openid, safe='')}/act", body)

    def user_authorize_permission(self, mchid: str, openid: str) -> dict[str, Any]:
        return self._call("POST", f"/merchants/{quote(mchid, safe='')}/permissions/authorize",
                          {"openid": openid})

    def inspect_orders(self, mchid: str, openid: str) -> list[dict[str, Any]]:
        return self._call("GET", "/api/orders", params={"mchid": mchid, "openid": openid,
                                                        "limit": 200})["orders"]

    def inspect_order(self, pk: int) -> dict[str, Any]:
        return self._call("GET", f"/api/orders/{int(pk)}")
