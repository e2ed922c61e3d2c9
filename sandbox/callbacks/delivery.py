"""One callback delivery attempt as the dispatcher builds it, and where faults may bend it; and
the records the dispatcher passes along around it: the leased row (Claimed), what was sent
(Posted) and what was recorded (Outcome).

Hook points (Sandbox.hooks), each a callable taking the Delivery and mutating it in place:
- `build` hooks run twice per attempt: with `stage="plaintext"` before encryption (they may
  change `plaintext`, `create_time_us`, `timestamp_s`, `sign_serial`), and with
  `stage="signed"` after `body` and `headers` are final (they may tamper with either).
- `send` hooks run just before the HTTP POST: they may set `copies` (0 drops the attempt, 2+
  duplicates it, `concurrent` sends the copies at once), `hold_us` (postpone this attempt on the
  sandbox clock), or replace `body`/`headers` entirely (replay of an older delivery).
A hook that bends a delivery sets `fault` (and `scenario_id`), which the attempt row records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # envelope builds Deliveries: importing it at run time would be circular
    from sandbox.callbacks.envelope import Attempt


@dataclass
class Delivery:
    notification_id: str
    mchid: str
    event_type: str
    summary: str
    original_type: str
    url: str
    order_pk: int | None
    out_order_no: str | None
    openid: str | None
    plaintext: dict
    create_time_us: int
    timestamp_s: int
    attempt: int
    sign_serial: str | None = None  # None: the merchant's signing mode decides
    associated_data: str | None = None  # None: "payscore" or "refund" per original_type
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    copies: int = 1
    concurrent: bool = False
    hold_us: int = 0
    fault: str | None = None
    scenario_id: str | None = None


@dataclass
class Claimed:
    """A due notification leased to this dispatcher, with its merchant, at `now_us`."""

    row: object
    merchant: object
    now_us: int
    one_shot: bool = False  # a test send (send_test): one attempt, never retried


@dataclass
class Posted:
    item: Claimed
    delivery: Delivery
    attempts: list[Attempt] | None  # None: held by a fault, nothing was sent


@dataclass
class Outcome:
    notification_id: str
    status: str  # DELIVERED | PENDING | FAILED | HELD
    attempts: list[dict]
