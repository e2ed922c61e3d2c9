"""The settings of one load run, shared by the runner, the Locust master and every worker.

The runner serialises a `RunConfig` into Locust's custom option ``--payscore-run``; Locust
forwards custom options from the master to its workers when a test starts, so workers on other
machines get the same run id, targets and scope (they only need the merchant.json path to exist
on their machine, see loadtests/README.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

OPTION = "--payscore-run"
ENV = "PAYSCORE_RUN"  # fallback for a worker started by hand before the master forwards


@dataclass
class RunConfig:
    run_id: str
    target: str  # sandbox | driver
    sandbox_url: str
    driver_url: str | None = None
    merchant_json: str | None = None
    mchid: str | None = None
    notify_url: str | None = None  # where the sandbox sends callbacks (sandbox target)
    openids: list[str] = field(default_factory=lambda: ["o_magic_always_confirms"])
    seed: int = 1
    flows_path: str | None = None  # where the master (or a local run) appends flow records
    min_amount: int = 100  # fen; the finish amount is drawn from [min, max]
    max_amount: int = 9900
    deposit: int = 9900
    wait_min: float = 0.0
    wait_max: float = 0.05
    query_weight: int = 1  # query-only tasks per `rental_weight` rentals
    rental_weight: int = 3
    confirm_wait_s: float = 5.0  # how long a driver user waits for the merchant to see USER_CONFIRM
    run_time_s: float = 0.0  # the master stops the users after this long (0: Locust decides)
    stop_after_flows: int = 0  # ... or once this many flows are recorded (0: time only)
    min_rental_s: float = 1.1  # driver target: finish at least this long after confirming

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        data: dict[str, Any] = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @classmethod
    def from_options(cls, parsed_options: Any) -> RunConfig:
        text = getattr(parsed_options, "payscore_run", None) or os.environ.get(ENV)
        if not text:
            raise RuntimeError(f"no run configuration: pass {OPTION} (payscore loadtest does)")
        return cls.from_json(text)
