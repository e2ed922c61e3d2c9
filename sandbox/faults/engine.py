"""Armed faults at run time: a per-process cache, scope matching, and taking a fault atomically.

- The armed faults live in the `faults` table, so every worker process (and host) sees the same
  set. Each process caches it and re-reads it only when `fault_version` changed; every
  transaction that changes the set bumps that version. A request reads the version together
  with the clock on the process's held connection (sandbox.held); callback hooks read it there.
- Taking a fault is one write transaction: the row is locked, the window is checked on the
  sandbox clock, `matched` counts the call, a seeded draw decides a probability trigger (call k
  draws sha256("seed:k"), so every process and every rerun draws the same), then `remaining`
  goes down and `taken` up. A fault that runs out turns inactive and bumps the version.
- Callback faults that are `sticky` bind to the notification they were taken on
  (`fault_bindings`): "every" re-applies to each retry of it without using the trigger again
  (a dropped callback stays dropped), "once" never applies to it again (a delay happens once).
  Faults that hold callbacks bind too, so that disarming one makes what it holds due at once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from sandbox import db, provision
from sandbox.faults.effects import KINDS, Effect

log = logging.getLogger("payscore.faults")


def draw(seed: int, index: int, probability: float) -> bool:
    """The seeded Bernoulli draw for the `index`-th matching call of a fault."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < probability


def bump_version(conn: Connection) -> None:
    v = db.fault_version
    conn.execute(update(v).where(v.c.id == 1).values(version=v.c.version + 1))


def release_held(conn: Connection, fault_id: int, due_us: int,
                 order_pk: int | None = None) -> int:
    """Notifications a holding fault was taken on, still waiting past `due_us`: due then."""
    fb, n = db.fault_bindings, db.notifications
    stmt = update(n).where(
        n.c.id.in_(select(fb.c.notification_id).where(fb.c.fault_id == fault_id)),
        n.c.status == "PENDING", n.c.next_attempt_us > due_us, n.c.lease_owner.is_(None))
    if order_pk is not None:
        stmt = stmt.where(n.c.order_pk == order_pk)
    return conn.execute(stmt.values(next_attempt_us=due_us)).rowcount


@dataclass(frozen=True)
class Armed:
    """An active fault as the hooks see it (a cached row)."""

    id: int
    effect: Effect
    hooks: tuple[str, ...]
    params: dict[str, Any]
    scenario_id: str | None = None
    mchid: str | None = None
    out_order_no: str | None = None
    openid: str | None = None
    operation: str | None = None
    window_end_us: int | None = None
    state: dict[str, Any] | None = None

    @classmethod
    def of(cls, row: Any, effect: Effect) -> Armed:
        params = effect.load_params(row.params)  # a row written by hand gets the defaults
        return cls(row.id, effect, effect.hooks_for(params, row.mchid), params, row.scenario_id,
                   row.mchid, row.out_order_no, row.openid, row.operation, row.window_end_us,
                   row.state)

    def in_scope(self, scope: Any) -> bool:
        """Every scope field the fault names must match; the cheap ones are compared first."""
        return ((self.mchid is None or scope.mchid == self.mchid)
                and (self.operation is None or scope.operation == self.operation)
                and (self.out_order_no is None or scope.out_order_no == self.out_order_no)
                and (self.openid is None or scope.openid == self.openid))


@dataclass(frozen=True)
class Snapshot:
    version: int | None
    by_hook: dict[str, tuple[Armed, ...]] = field(default_factory=dict)


class FaultEngine:
    def __init__(self, sandbox: Any):
        self.sb = sandbox
        self._failing = False  # log a broken version read once, not at every request
        self._snapshot = Snapshot(None)
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the cache

    def armed(self, version: int | None = None) -> Snapshot:
        """The active faults by hook; costs one version read when nothing changed. A request
        passes the version it read with the clock (sandbox.held.StateProbe), so it costs none."""
        if version is None:
            version = self._read_version()
        if version is not None and version == self._snapshot.version:
            return self._snapshot
        with self._lock:
            if version is None or version != self._snapshot.version:
                self._snapshot = self._load(version)
            return self._snapshot

    def _read_version(self) -> int | None:
        """The version, or None when it cannot be read (the caller then reloads)."""
        try:
            version = self.sb.probe.fault_version()
        except Exception:
            if not self._failing:
                log.warning("could not read the fault version", exc_info=True)
            self._failing = True
            return None
        self._failing = False
        return version

    def _load(self, version: int | None) -> Snapshot:
        f, k = db.faults, db.platform_keys
        with self.sb.engine.connect() as conn:
            rows = conn.execute(select(f).where(f.c.active.is_(True)).order_by(f.c.id)).all()
            serials = set(conn.execute(select(k.c.serial).where(k.c.active.is_(True))).scalars())
        by_hook: dict[str, list[Armed]] = defaultdict(list)
        reserved: set[str] = set()
        for row in rows:
            effect = KINDS.get(row.effect)
            if effect is None:  # armed by a newer sandbox version: not ours to apply
                continue
            try:
                fault = Armed.of(row, effect)
            except ValidationError:
                log.warning("fault %s: params %r are not valid for %s; ignored", row.id,
                            row.params, row.effect)
                continue
            for hook in set(fault.hooks) | set(effect.observers):
                by_hook[hook].append(fault)
            if effect.name == "rotated_serial" and row.mchid and row.state:
                reserved.add(row.state["serial"].upper())
        self._sync_platform_keys(reserved, serials)
        return Snapshot(version, {hook: tuple(sorted(faults, key=lambda a: (a.effect.order, a.id)))
                                  for hook, faults in by_hook.items()})

    def _sync_platform_keys(self, reserved: set[str], serials: set[str]) -> None:
        """A rotation armed or retired in any process: the keys here follow, and a scoped
        rotation's certificate never becomes everyone's signer, not even for a moment."""
        signer = self.sb.signer
        keys = signer.keys
        if {key.serial for key in keys} != serials:
            with self.sb.engine.connect() as conn:
                keys = provision.load_platform_keys(conn)
        elif signer.reserved == reserved:
            return
        signer.reserved = frozenset(reserved)
        signer.replace(keys)  # one recomputation with both the new keys and the reservation

    # ------------------------------------------------------------ taking a fault

    def take(self, fault: Armed, now_us: int | None = None, target: Any = None,
             binding: str | None = None) -> int | None:
        """Atomically decide whether this call takes the fault; the sandbox time if it does.

        `binding` is the notification id for callback hooks (sticky effects bind to it)."""
        f, fb = db.faults, db.fault_bindings
        effect = fault.effect
        with db.write_tx(self.sb.engine) as conn:
            row = conn.execute(db.for_update(select(f).where(f.c.id == fault.id), conn)).first()
            if row is None or not row.active:
                return None
            now = now_us if now_us is not None else self.sb.clock.now_us(conn)
            if (row.window_start_us is not None and now < row.window_start_us) or \
                    (row.window_end_us is not None and now >= row.window_end_us):
                return None
            if effect.ready is not None and not effect.ready(fault, target, now):
                return None
            binds = bool(binding) and (effect.sticky is not None or effect.holds)
            bound = binds and conn.execute(select(fb.c.fault_id).where(
                fb.c.fault_id == fault.id, fb.c.notification_id == binding)).first() is not None
            if bound and effect.sticky == "every":
                return now  # the notification it was taken on: every attempt, no new trigger
            if bound and effect.sticky == "once":
                return None
            if row.remaining is not None and row.remaining <= 0:
                return None
            values: dict[str, Any] = {"matched": (row.matched or 0) + 1}
            seed = row.seed if row.seed is not None else row.id
            if row.probability is not None and not draw(seed, row.matched or 0, row.probability):
                conn.execute(update(f).where(f.c.id == row.id).values(**values))
                return None
            values["taken"] = row.taken + 1
            if row.remaining is not None:
                values["remaining"] = row.remaining - 1
                if values["remaining"] == 0 and effect.sticky != "every":
                    values["active"] = False
                    bump_version(conn)
            conn.execute(update(f).where(f.c.id == row.id).values(**values))
            if binds and not bound:
                conn.execute(fb.insert().values(fault_id=fault.id, notification_id=binding,
                                                at_us=now))
            if binding and fault.scenario_id:  # the outbox row says which scenario bent it
                n = db.notifications
                conn.execute(update(n).where(n.c.id == binding, n.c.scenario_id.is_(None))
                             .values(scenario_id=fault.scenario_id))
            return now

    def release(self, fault_id: int, after_us: int = 0, order_pk: int | None = None) -> int:
        """Callbacks this fault holds fall due `after_us` from now; how many."""
        with db.write_tx(self.sb.engine) as conn:
            return release_held(conn, fault_id, self.sb.clock.now_us(conn) + after_us, order_pk)

    def remember(self, fault_id: int, key: str, value: Any) -> None:
        """Store something an effect needs later in the fault's `state`, for every process."""
        f = db.faults
        with db.write_tx(self.sb.engine) as conn:
            row = conn.execute(db.for_update(select(f.c.state).where(f.c.id == fault_id),
                                             conn)).first()
            if row is None or (row.state or {}).get(key) is not None:
                return  # another process remembered first
            conn.execute(update(f).where(f.c.id == fault_id)
                         .values(state={**(row.state or {}), key: value}))
            bump_version(conn)
