"""Fault control operations, one method per operationId of sandbox.views.control_faults.

Each is one transaction that also bumps `fault_version`, so every process's cache sees the
change at its next hook call. One-shot actions (rotated_serial, public_key_signing) are done
in the transaction that arms them and undone in the one that disarms them.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Row

from merchant_kit import protocol
from sandbox import db, errors, provision
from sandbox.clock import to_datetime
from sandbox.faults.effects import KINDS
from sandbox.faults.engine import bump_version, release_held
from sandbox.faults.params import EVENTS

S = 1_000_000
SCOPE = ("mchid", "out_order_no", "openid", "operation")
TRIGGERS = ("remaining", "probability", "seed", "window_s", "start_in_s")


def _at(us: int | None) -> str | None:
    return protocol.rfc3339(to_datetime(us)) if us is not None else None


def first_error(messages: Any, prefix: str) -> tuple[str, str]:
    while isinstance(messages, dict) and messages:
        key, messages = next(iter(messages.items()))
        prefix = prefix if key == "_schema" else f"{prefix}/{key}"
    if isinstance(messages, list) and messages:
        messages = messages[0]
    return prefix, str(messages)


def status_of(row: Row, now_us: int) -> str:
    if row.disarmed_us is not None:
        return "disarmed"
    if row.remaining == 0:
        return "exhausted"
    if not row.active:
        return "inactive"
    if row.window_end_us is not None and now_us >= row.window_end_us:
        return "expired"
    if row.window_start_us is not None and now_us < row.window_start_us:
        return "scheduled"
    return "armed"


def _hooks(row: Row) -> list[str]:
    effect = KINDS.get(row.effect)
    try:
        return list(effect.hooks_for(effect.load_params(row.params), row.mchid)) if effect \
            else [row.hook]
    except ValidationError:
        return [row.hook]


def fault_dict(row: Row, now_us: int) -> dict[str, Any]:
    state = dict(row.state or {})
    if "captured" in state:  # the recorded callback: say which, not its bytes
        captured = state["captured"]
        state["captured"] = {k: captured.get(k) for k in ("notification_id", "event_type",
                                                          "attempt", "at_us")}
    return {
        "id": row.id, "scenario_id": row.scenario_id, "effect": row.effect,
        "hooks": _hooks(row),
        "params": row.params or {},
        "scope": {k: getattr(row, k) for k in SCOPE if getattr(row, k) is not None},
        "trigger": {"remaining": row.remaining, "probability": row.probability,
                    "seed": row.seed, "window_start": _at(row.window_start_us),
                    "window_end": _at(row.window_end_us), "window_start_us": row.window_start_us,
                    "window_end_us": row.window_end_us},
        "taken": row.taken, "matched": row.matched or 0, "active": row.active,
        "status": status_of(row, now_us), "state": state, "created": _at(row.created_us),
        "disarmed": _at(row.disarmed_us)}


class Faults:
    def __init__(self, sandbox: Any):
        self.sb = sandbox

    # ------------------------------------------------------------ arming

    def arm_fault(self, spec: dict, operations: set[str]) -> dict[str, Any]:
        effect = KINDS.get(spec["effect"])
        if effect is None:
            raise errors.param_error("effect", "unknown effect kind; one of: "
                                     + ", ".join(sorted(KINDS)), spec["effect"])
        try:
            params = effect.load_params(spec.get("params"))
        except ValidationError as exc:
            raise errors.param_error(*first_error(exc.messages, "params")) from None
        self._check_scope(spec, effect, operations)
        with db.write_tx(self.sb.engine) as conn:
            now = self.sb.clock.now_us(conn)
            mchid = spec.get("mchid")
            if mchid and provision.merchant_row(conn, mchid) is None:
                raise errors.MchNotExists(f"商户号不存在: {mchid}")
            start = end = None
            if spec.get("window_s") is not None or spec.get("start_in_s") is not None:
                start = now + int((spec.get("start_in_s") or 0) * S)
                end = start + int(spec["window_s"] * S) if spec.get("window_s") else None
            state = effect.arm(self.sb, conn, now, mchid, params) if effect.arm else None
            fault_id = conn.execute(db.faults.insert().values(
                scenario_id=spec.get("scenario_id"), effect=effect.name,
                hook=effect.hooks_for(params, mchid)[0], params=params,
                **{k: spec.get(k) for k in SCOPE}, remaining=spec.get("remaining"),
                probability=spec.get("probability"), seed=spec.get("seed"),
                window_start_us=start, window_end_us=end, taken=1 if effect.is_action else 0,
                active=True, created_us=now, matched=0,
                **({"state": state} if state is not None else {}))).inserted_primary_key[0]
            bump_version(conn)
            return fault_dict(self._row(conn, fault_id), now)

    @staticmethod
    def _check_scope(spec: dict, effect: Any, operations: set[str]) -> None:
        if effect.is_action:
            extra = [k for k in (*SCOPE[1:], *TRIGGERS) if spec.get(k) is not None]
            if extra:
                raise errors.param_error(extra[0], f"{effect.name} is a one-shot action: only "
                                         "mchid scopes it, and no trigger applies")
            if effect.name == "public_key_signing" and not spec.get("mchid"):
                raise errors.param_error("mchid", "public_key_signing needs the merchant")
            return
        operation = spec.get("operation")
        if operation is None:
            return
        if not effect.scopes_operation:
            raise errors.param_error("operation", f"{effect.name} sees every event of its "
                                     "scope: name the events in its params", operation)
        api = {"before", "after"} & set(effect.hooks)
        callbacks = set(effect.hooks) - {"before", "after"}
        allowed = (operations if api else set()) | (set(EVENTS) if callbacks else set())
        if operation not in allowed:
            raise errors.param_error("operation", "unknown operation; one of: "
                                     + ", ".join(sorted(allowed)), operation)

    # ------------------------------------------------------------ disarming

    def disarm_fault(self, fault_id: int) -> dict[str, Any]:
        with db.write_tx(self.sb.engine) as conn:
            row = conn.execute(db.for_update(select(db.faults).where(db.faults.c.id == fault_id),
                                             conn)).first()
            if row is None:
                raise errors.ResourceNotExists(f"故障不存在: {fault_id}")
            now = self.sb.clock.now_us(conn)
            self._disarm(conn, row, now)
            return fault_dict(self._row(conn, fault_id), now)

    def disarm_faults(self, scenario_id: str | None) -> dict[str, Any]:
        """Every not yet disarmed fault of a scenario (None: of every scenario), newest first."""
        f = db.faults
        with db.write_tx(self.sb.engine) as conn:
            stmt = select(f).where(f.c.disarmed_us.is_(None))
            if scenario_id is not None:
                stmt = stmt.where(f.c.scenario_id == scenario_id)
            rows = conn.execute(db.for_update(stmt.order_by(f.c.id.desc()), conn)).all()
            now = self.sb.clock.now_us(conn)
            for row in rows:
                self._disarm(conn, row, now)
        return {"disarmed": [row.id for row in rows], "scenario_id": scenario_id}

    def _disarm(self, conn: Connection, row: Row, now: int) -> None:
        if row.disarmed_us is not None:
            return
        effect = KINDS.get(row.effect)
        if row.active and row.state and effect is not None and effect.undo is not None:
            effect.undo(self.sb, conn, row)
        if effect is not None and effect.holds:  # what it held is due now, not days later
            release_held(conn, row.id, now)
        conn.execute(update(db.faults).where(db.faults.c.id == row.id)
                     .values(active=False, disarmed_us=now))
        bump_version(conn)

    # ------------------------------------------------------------ reading

    @staticmethod
    def _row(conn: Connection, fault_id: int) -> Row:
        return conn.execute(select(db.faults).where(db.faults.c.id == fault_id)).one()

    def get_fault(self, fault_id: int) -> dict[str, Any]:
        with db.read_tx(self.sb.engine) as conn:
            row = conn.execute(select(db.faults).where(db.faults.c.id == fault_id)).first()
            if row is None:
                raise errors.ResourceNotExists(f"故障不存在: {fault_id}")
            return fault_dict(row, self.sb.clock.now_us(conn))

    def list_faults(self, scenario_id: str | None = None, active: bool | None = None,
                    limit: int = 200) -> dict[str, Any]:
        f = db.faults
        stmt = select(f).order_by(f.c.id.desc()).limit(limit)
        if scenario_id is not None:
            stmt = stmt.where(f.c.scenario_id == scenario_id)
        if active is not None:
            stmt = stmt.where(f.c.active.is_(active))
        with db.read_tx(self.sb.engine) as conn:
            now = self.sb.clock.now_us(conn)
            return {"faults": [fault_dict(row, now) for row in conn.execute(stmt)]}

    def list_requests(self, *, since_id: int = 0, limit: int = 500, scenario_id: str | None = None,
                      mchid: str | None = None, out_order_no: str | None = None,
                      operation: str | None = None, fault: str | None = None,
                      faulted: bool | None = None) -> dict[str, Any]:
        """The request log in order, as the judges' evidence: what each call got, and why."""
        r = db.request_log.c
        stmt = select(db.request_log).where(r.id > since_id).order_by(r.id).limit(limit)
        for column, value in ((r.scenario_id, scenario_id), (r.mchid, mchid),
                              (r.out_order_no, out_order_no), (r.operation, operation)):
            if value is not None:
                stmt = stmt.where(column == value)
        if fault is not None:
            stmt = stmt.where(r.fault.contains(fault, autoescape=True))
        if faulted is not None:
            stmt = stmt.where(r.fault.is_not(None) if faulted else r.fault.is_(None))
        with db.read_tx(self.sb.engine) as conn:
            rows = conn.execute(stmt).all()
        return {"requests": [
            {"id": row.id, "request_id": row.request_id, "at": _at(row.at_us),
             "at_us": row.at_us, "mchid": row.mchid, "method": row.method, "path": row.path,
             "operation": row.operation, "out_order_no": row.out_order_no,
             "status": row.status, "code": row.code, "verdict": row.verdict,
             "fault": row.fault, "scenario_id": row.scenario_id,
             "duration_ms": row.duration_ms} for row in rows],
            "last_id": rows[-1].id if rows else since_id}

    # ------------------------------------------------------------ one-shot shortcuts

    def rotate_certificate(self, mchid: str | None = None,
                           scenario_id: str | None = None) -> dict[str, Any]:
        return self.arm_fault({"effect": "rotated_serial", "mchid": mchid,
                               "scenario_id": scenario_id}, set())

    def set_signing_mode(self, mchid: str, mode: str, ratio: float = 0.5,
                         scenario_id: str | None = None) -> dict[str, Any]:
        return self.arm_fault({"effect": "public_key_signing", "mchid": mchid,
                               "scenario_id": scenario_id,
                               "params": {"mode": mode, "ratio": ratio}}, set())
