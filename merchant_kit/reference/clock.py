"""The merchant's notion of "now": the wall clock, or (test seam) a sandbox's controllable clock.

Against the real WeChat Pay the merchant runs on wall time. Against a sandbox whose clock was
moved (`POST /sandbox/clock/advance {"by": "31d"}`), signatures, reply/callback timestamp checks
and business times must use the sandbox's time instead, or every exchange would be "stale".
`MerchantClock(follow_url=...)` reads `GET {follow_url}/sandbox/clock` and keeps the offset,
re-reading it every few seconds, when the driver asks (reconcile), and when a callback's or
reply's timestamp says the sandbox has moved on.
"""

from __future__ import annotations

import logging
import threading
import time

import requests

log = logging.getLogger(__name__)

RESYNC_SKEW_S = 60.0  # a peer this far from us means the sandbox clock moved
MIN_RESYNC_GAP_S = 0.2  # unauthenticated headers must not turn into a flood of clock reads


class MerchantClock:
    def __init__(self, follow_url: str | None = None, ttl: float = 5.0,
                 timeout: float = 2.0):
        self.follow_url = follow_url.rstrip("/") if follow_url else None
        self.ttl = ttl
        self.timeout = timeout
        self._offset = 0.0
        self._frozen_at: float | None = None  # a frozen sandbox clock does not move with ours
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self._http = requests.Session() if self.follow_url else None

    @property
    def following(self) -> bool:
        return self.follow_url is not None

    def now(self) -> float:
        if self.follow_url is not None:
            fetched = self._fetched_at
            if fetched is None or time.monotonic() - fetched > self.ttl:
                self.refresh()
        frozen = self._frozen_at
        return frozen if frozen is not None else time.time() + self._offset

    def refresh(self, min_gap: float = 0.0) -> bool:
        """Re-read the followed clock; False if not following, rate limited, or unreachable."""
        if self.follow_url is None or self._http is None:
            return False
        with self._lock:
            if (min_gap and self._fetched_at is not None
                    and time.monotonic() - self._fetched_at < min_gap):
                return False
            try:
                r = self._http.get(f"{self.follow_url}/sandbox/clock", timeout=self.timeout)
                r.raise_for_status()
                state = r.json()
                # Read after the answer arrived: never ahead of the sandbox, at most the latency
                # behind, so a time we send (e.g. a complete's end_time) is never in its future.
                self._offset = state["now_us"] / 1e6 - time.time()
                self._frozen_at = state["now_us"] / 1e6 if state.get("frozen") else None
            except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                log.warning("could not read the followed clock: %s", exc)
                self._fetched_at = time.monotonic()  # keep the old offset; try again later
                return False
            self._fetched_at = time.monotonic()
            return True

    def observe(self, peer_timestamp: str | float | None) -> None:
        """A peer's (unverified) timestamp: re-read the clock if it is far from ours."""
        if self.follow_url is None or peer_timestamp is None:
            return
        try:
            skew = abs(float(peer_timestamp) - self.now())
        except (TypeError, ValueError):
            return
        if skew > RESYNC_SKEW_S:
            self.refresh(min_gap=MIN_RESYNC_GAP_S)

    def snapshot(self) -> dict[str, object]:
        return {"following": self.follow_url, "offset_s": round(self._offset, 3)}
