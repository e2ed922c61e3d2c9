"""The sandbox clock: the only source of "now" in the sandbox.

Stored in the database so every worker process agrees. `now = wall + offset`, or a frozen
instant. Advancing runs every timed job that falls due, in order (see sandbox.world.jobs).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update
from sqlalchemy.engine import Connection, Engine

from sandbox import db
from sandbox.held import StateProbe, clock_now_us
from sandbox.held import wall_us as _wall_us

UTC = dt.UTC


def to_datetime(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def from_datetime(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


# Built once: every request reads the clock, and building the statement cost more CPU than
# running it (~90 us of ~140 us).
_CLOCK_ROW = db.clock.select().where(db.clock.c.id == 1)


class Clock:
    """Reads and moves the shared clock; every read is one small indexed SELECT, on the
    caller's connection inside a transaction, else on the process's held connection."""

    def __init__(self, engine: Engine, probe: StateProbe | None = None):
        self.engine = engine
        self.probe = probe

    def now_us(self, conn: Connection | None = None) -> int:
        if conn is not None:
            return self._read(conn)
        if self.probe is not None:
            return self.probe.now_us()
        with self.engine.connect() as own:
            return self._read(own)

    @staticmethod
    def _read(conn: Connection) -> int:
        row = conn.execute(_CLOCK_ROW).first()
        if row is None:
            return _wall_us()
        return clock_now_us(row.offset_us, row.frozen_at_us)

    def now(self, conn: Connection | None = None) -> dt.datetime:
        return to_datetime(self.now_us(conn))

    def now_s(self, conn: Connection | None = None) -> int:
        return self.now_us(conn) // 1_000_000

    def state(self) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(db.clock.select().where(db.clock.c.id == 1)).first()
            now = self._read(conn)
        return {
            "now": to_datetime(now).isoformat(),
            "now_us": now,
            "frozen": row is not None and row.frozen_at_us is not None,
            "offset_s": (row.offset_us / 1_000_000) if row is not None else 0.0,
        }

    def freeze(self, at_us: int | None = None) -> int:
        with db.write_tx(self.engine) as conn:
            at = self._read(conn) if at_us is None else at_us
            conn.execute(update(db.clock).where(db.clock.c.id == 1).values(frozen_at_us=at))
        return at

    def unfreeze(self) -> None:
        with db.write_tx(self.engine) as conn:
            now = self._read(conn)
            conn.execute(update(db.clock).where(db.clock.c.id == 1)
                         .values(frozen_at_us=None, offset_us=now - _wall_us()))

    def reset(self) -> None:
        with db.write_tx(self.engine) as conn:
            conn.execute(update(db.clock).where(db.clock.c.id == 1)
                         .values(frozen_at_us=None, offset_us=0))

    def shift(self, delta_us: int) -> int:
        """Move the clock forward by delta (no jobs run; see World.advance for that)."""
        if delta_us < 0:
            raise ValueError("the sandbox clock only moves forward")
        with db.write_tx(self.engine) as conn:
            row = conn.execute(db.clock.select().where(db.clock.c.id == 1)).one()
            if row.frozen_at_us is not None:
                values = {"frozen_at_us": row.frozen_at_us + delta_us}
            else:
                values = {"offset_us": row.offset_us + delta_us}
            conn.execute(update(db.clock).where(db.clock.c.id == 1).values(**values))
            return self._read(conn)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """'7d', '90m', '1h30m', '45' (seconds) -> microseconds."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text) * 1_000_000
    total, number = 0.0, ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in _UNITS and number:
            total += float(number) * _UNITS[ch]
            number = ""
        else:
            raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 2h, 7d)")
    if number:
        raise ValueError(f"not a duration: {text!r} (a number needs a unit)")
    return int(total * 1_000_000)
