"""A fault mix laid over a load run: parsed from text, armed through the sandbox control API.

    --faults "http_error:500@1%,reset_after_commit@0.5%,callback_duplicate@2%"

Each item is ``effect[:arg[:arg...]]@probability`` where the probability is a percentage
(``1%``) or a fraction (``0.01``); an arg is ``key=value`` or a positional shorthand listed in
`SHORTHANDS` (``http_error:500`` means status 500). Every armed fault is scoped to the load
run's merchant and tagged with the run id as its scenario id, with a seed derived from the run
seed, so a run is reproducible and never touches other merchants or runs.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests

# Positional arguments per effect kind, in order (the rest must be key=value).
SHORTHANDS: dict[str, tuple[str, ...]] = {
    "http_error": ("status", "code"),
    "delay": ("seconds",),
    "truncated_body": ("keep",),
    "callback_duplicate": ("copies",),
    "callback_concurrent_duplicates": ("copies",),
    "callback_delay": ("hold_s",),
}
_EFFECT = re.compile(r"^[a-z][a-z0-9_]*$")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


class FaultMixError(ValueError):
    """The --faults text does not parse; the message says which item and why."""


@dataclass(frozen=True)
class FaultSpec:
    effect: str
    probability: float
    params: dict[str, Any] = field(default_factory=dict)

    def arming_body(self, mchid: str, run_id: str, seed: int) -> dict[str, Any]:
        return {"effect": self.effect, "params": dict(self.params),
                "probability": self.probability, "seed": seed, "mchid": mchid,
                "scenario_id": run_id}

    def describe(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.effect}{'(' + args + ')' if args else ''} @ {self.probability:.4%}"


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _probability(text: str, item: str) -> float:
    text = text.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise FaultMixError(f"{item!r}: probability {text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise FaultMixError(f"{item!r}: probability must be in (0, 100%]")
    return value


def parse_fault_mix(text: str | None) -> list[FaultSpec]:
    """Parse a mix; empty or None gives no faults. Raises FaultMixError on bad input."""
    if text is None or not text.strip():
        return []
    specs: list[FaultSpec] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise FaultMixError(f"empty item in {text!r}")
        head, at, prob = item.rpartition("@")
        if not at or not head:
            raise FaultMixError(f"{item!r}: expected effect[:args]@probability, e.g. "
                                "http_error:500@1%")
        effect, *args = head.split(":")
        effect = effect.strip()
        if not _EFFECT.match(effect):
            raise FaultMixError(f"{item!r}: {effect!r} is not an effect name")
        params: dict[str, Any] = {}
        positional = list(SHORTHANDS.get(effect, ()))
        for arg in (a.strip() for a in args):
            if "=" in arg:
                key, _, value = arg.partition("=")
                if not _KEY.match(key.strip()):
                    raise FaultMixError(f"{item!r}: bad parameter name {key!r}")
                params[key.strip()] = _value(value.strip())
            elif positional:
                params[positional.pop(0)] = _value(arg)
            else:
                raise FaultMixError(f"{item!r}: unexpected argument {arg!r} "
                                    f"(use key=value)")
        specs.append(FaultSpec(effect, _probability(prob, item), params))
    return specs


def fault_seed(run_seed: int, index: int, spec: FaultSpec) -> int:
    """A stable per-fault seed: same run seed and mix -> same faults taken."""
    return zlib.crc32(f"{run_seed}:{index}:{spec.effect}".encode()) & 0x7FFFFFFF


class FaultArmer:
    """Arms a mix for one run through POST /sandbox/faults, and disarms it afterwards."""

    def __init__(self, sandbox_url: str, session: requests.Session | None = None,
                 timeout: float = 10.0):
        self.sandbox_url = sandbox_url.rstrip("/")
        self.http = session or requests.Session()
        self.timeout = timeout
        self.armed: list[dict[str, Any]] = []

    def arm(self, specs: Iterable[FaultSpec], mchid: str, run_id: str,
            run_seed: int) -> list[dict[str, Any]]:
        for index, spec in enumerate(specs):
            body = spec.arming_body(mchid, run_id, fault_seed(run_seed, index, spec))
            r = self.http.post(f"{self.sandbox_url}/sandbox/faults", json=body,
                               timeout=self.timeout)
            if r.status_code >= 300:
                self.disarm(run_id)
                raise FaultMixError(f"the sandbox refused {spec.describe()}: "
                                    f"{r.status_code} {r.text[:300]}")
            answer = r.json() if r.content else {}
            self.armed.append({**body, "answer": answer})
        return self.armed

    def taken(self, run_id: str) -> list[dict[str, Any]]:
        """This run's faults with how often each was taken (GET /sandbox/faults)."""
        r = self.http.get(f"{self.sandbox_url}/sandbox/faults",
                          params={"scenario_id": run_id, "limit": 1000}, timeout=self.timeout)
        if r.status_code != 200:
            return []
        return [{"effect": f.get("effect"), "params": f.get("params"),
                 "probability": (f.get("trigger") or {}).get("probability"),
                 "matched": f.get("matched"), "taken": f.get("taken")}
                for f in r.json().get("faults", [])]

    def disarm(self, run_id: str) -> int:
        """Remove this run's faults; returns how many the sandbox reported removed."""
        removed = 0
        for entry in self.armed:
            fault_id = (entry.get("answer") or {}).get("id")
            if fault_id is None:
                continue
            r = self.http.delete(f"{self.sandbox_url}/sandbox/faults/{fault_id}",
                                 timeout=self.timeout)
            removed += r.status_code < 300
        if self.armed and not removed:
            r = self.http.delete(f"{self.sandbox_url}/sandbox/faults",
                                 params={"scenario_id": run_id}, timeout=self.timeout)
            if r.status_code < 300 and r.content:
                removed = int((r.json() or {}).get("removed", len(self.armed)))
        self.armed = []
        return removed
