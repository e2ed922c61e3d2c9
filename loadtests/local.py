"""Start a sandbox (`payscore up`) and the reference merchant (`payscore merchant-demo`) as
child processes on free loopback ports, for benchmarks and full-size gates runs.

Separate processes on purpose: a load run measures servers the way they are deployed, not
threads sharing the measuring process's interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import requests

from loadtests.runner import free_port

PAYSCORE = [sys.executable, "-c", "from sandbox.cli import main; main()"]


@dataclass
class Servers:
    sandbox_url: str
    merchant_json: Path
    driver_url: str | None = None
    procs: list[subprocess.Popen] = field(default_factory=list)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by the sandbox and the merchant, each with
        its descendant processes (gunicorn workers); Linux /proc only, else empty."""
        names = ("sandbox", "merchant")
        return {name: process_tree_cpu(proc.pid) for name, proc in zip(names, self.procs)}

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait(url: str, proc: subprocess.Popen, log: Path, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}; see {log}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {seconds:.0f}s; see {log}")


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(PAYSCORE + args, stdout=out, stderr=subprocess.STDOUT)


def start(root: Path, *, workers: int = 1, threads: int = 8, db: str | None = None,
          merchant: bool = True, reconcile_interval: float = 30.0) -> Servers:
    """A sandbox (gunicorn with `workers` processes) and, optionally, the reference merchant."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = ["up", "--port", str(port), "--data-dir", str(root / "sandbox"),
            "--workers", str(workers), "--threads", str(threads), "--quiet"]
    if db:
        args += ["--db", db]
    servers = Servers(f"http://127.0.0.1:{port}", root / "sandbox" / "merchant.json")
    try:
        servers.procs.append(_spawn(args, root / "sandbox.log"))
        _wait(servers.sandbox_url + "/sandbox/health", servers.procs[-1], root / "sandbox.log")
        deadline = time.monotonic() + 30
        while not servers.merchant_json.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        json.loads(servers.merchant_json.read_text())
        if merchant:
            mport = free_port()
            servers.procs.append(_spawn(
                ["merchant-demo", "--merchant-json", str(servers.merchant_json),
                 "--sandbox", servers.sandbox_url, "--port", str(mport),
                 "--data-dir", str(root / "merchant"),
                 "--reconcile-interval", str(reconcile_interval)], root / "merchant.log"))
            servers.driver_url = f"http://127.0.0.1:{mport}/driver"
            _wait(servers.driver_url + "/health", servers.procs[-1], root / "merchant.log")
    except BaseException:
        servers.stop()
        raise
    return servers


def process_tree_cpu(root: int) -> float:
    """utime + stime of `root` and all its living descendants, in seconds (Linux)."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total
