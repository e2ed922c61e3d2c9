"""Who is under test and where: the merchant's driver API, its mchid, its sandbox, and the
hints the scenarios need (read timeout, breaker reset), from the driver's health or options.

`preflight` checks the live sandbox knows every effect kind and operation the catalogue uses
(`GET /sandbox/faults/kinds`) before anything is armed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fault_scenarios import catalogue
from fault_scenarios.clients import (
    ControlError,
    DriverNotFound,
    Sandbox,
    find_driver,
)


class RunnerError(RuntimeError):
    """The run cannot start: the driver, the sandbox or the merchant identity is missing."""


@dataclass
class Target:
    driver_url: str
    sandbox_url: str
    mchid: str
    merchant: str = "?"
    hints: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def discover(driver_url: str, sandbox_url: str | None = None, mchid: str | None = None,
             read_timeout: float | None = None, recovery_wait: float | None = None) -> Target:
    """Who the merchant is and where its sandbox is: the driver's health, else the options."""
    try:
        driver_url, info = find_driver(driver_url)  # its health answer comes with it
    except DriverNotFound as exc:
        raise RunnerError(str(exc)) from None
    mchid = mchid or info.get("mchid")
    if not mchid:
        raise RunnerError("the driver's health does not report `mchid`: pass --mchid")
    sandbox_url = sandbox_url or info.get("sandbox_url") or \
        (info.get("clock") or {}).get("following")
    if not sandbox_url:
        raise RunnerError("the sandbox URL is unknown: pass --sandbox")
    provider = info.get("provider") or {}
    read = read_timeout or (provider.get("timeouts") or {}).get("read") or 10.0
    reset = (provider.get("breaker") or {}).get("reset_timeout")
    hints = {"read_timeout_s": float(read), "breaker_reset_s": reset,
             "recovery_wait_s": recovery_wait or (float(reset) + 15 if reset else 60.0)}
    target = Target(driver_url.rstrip("/"), sandbox_url.rstrip("/"), str(mchid),
                    str(info.get("merchant") or "?"), hints)
    target.warnings = preflight(target)
    return target


def preflight(target: Target) -> list[str]:
    """The live sandbox knows every effect and operation the catalogue uses; warnings else."""
    sandbox = Sandbox(target.sandbox_url)
    try:
        kinds = sandbox.list_fault_kinds()
        clock = sandbox.get_clock()
    except ControlError as exc:
        raise RunnerError(f"the sandbox at {target.sandbox_url} does not answer its control "
                          f"API: {exc}") from None
    live = {k["effect"] for k in kinds.get("effects", [])}
    missing = sorted(set(catalogue.EFFECTS) - live)
    unknown_ops = sorted(catalogue.OPERATIONS - set(kinds.get("operations", [])))
    if missing or unknown_ops:
        raise RunnerError(f"this sandbox lacks effect kinds {missing} / operations "
                          f"{unknown_ops} the catalogue uses: upgrade the sandbox")
    warnings = []
    if clock.get("frozen"):
        warnings.append("the sandbox clock is frozen: back-off gaps (scenario 7) cannot be "
                        "measured")
    return warnings
