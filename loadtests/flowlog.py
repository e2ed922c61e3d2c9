"""Flow records from every Locust process into one file, through Locust's own messaging.

Workers buffer finished flows and send them to the master as custom messages (batches, and a
final flush when the test stops, which Locust delivers before the worker reports itself
stopped); the master, or a local single-process run, appends them to the run's JSONL file.
This works unchanged when workers run on other machines.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from loadtests.judge import FlowRecord

MESSAGE = "payscore_flows"
BATCH = 50
log = logging.getLogger(__name__)


class FlowLog:
    def __init__(self, environment: Any, path: str | None, is_worker: bool):
        self.environment = environment
        self.path = Path(path) if path else None
        self.is_worker = is_worker
        self.buffer: list[dict[str, Any]] = []
        self.written = 0

    def record(self, flow: FlowRecord) -> None:
        self.buffer.append(flow.to_dict())
        if len(self.buffer) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        if self.is_worker:
            self.environment.runner.send_message(MESSAGE, batch)
        else:
            self.write(batch)

    def final_flush(self) -> None:
        """At the end of the test: the last flows, and on a worker its last request stats.

        A worker reports stats every few seconds but not when told to stop, so the requests of
        flows finished during --stop-timeout would be missing from the master's CSV.
        """
        self.flush()
        send_stats = getattr(self.environment.runner, "_send_stats", None)
        if self.is_worker and callable(send_stats):
            send_stats()

    def write(self, batch: list[dict[str, Any]]) -> None:
        if self.path is None:
            log.warning("no flows path: %d flow records dropped", len(batch))
            return
        with self.path.open("a", encoding="utf-8") as out:
            for item in batch:
                out.write(json.dumps(item, ensure_ascii=False) + "\n")
        self.written += len(batch)

    def on_message(self, environment: Any, msg: Any, **_kw: Any) -> None:
        self.write(list(msg.data or []))


def install(environment: Any, flows_path: str | None) -> FlowLog:
    """Wire a FlowLog into this Locust process (called from the init event)."""
    from locust.runners import MasterRunner, WorkerRunner

    runner = environment.runner
    flowlog = FlowLog(environment, flows_path, is_worker=isinstance(runner, WorkerRunner))
    if isinstance(runner, MasterRunner):
        runner.register_message(MESSAGE, flowlog.on_message)
    environment.events.test_stop.add_listener(lambda **_kw: flowlog.final_flush())
    environment.payscore_flowlog = flowlog
    return flowlog


def read_flows(path: str | Path) -> list[FlowRecord]:
    """All flow records of a run; a missing file means no flow finished."""
    path = Path(path)
    if not path.exists():
        return []
    flows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            flows.append(FlowRecord.from_dict(json.loads(line)))
    return flows
