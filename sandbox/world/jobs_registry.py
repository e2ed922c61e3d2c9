"""Which function runs a timed job of each kind (the job runner looks handlers up here).

A handler is called inside the job's own write transaction, with the claimed `jobs` row and
the sandbox-clock instant it runs at; everything it writes commits together with the job being
marked done. Modules register their kinds at import time:

    @register_job("refund_settle")
    def refund_settle(conn, job, now_us): ...
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection, Row

JobHandler = Callable[[Connection, Row, int], None]

# Kinds are fixed names chosen by the modules that schedule them; registration happens once per
# process at import, so this table is configuration, not per-sandbox state.
JOB_HANDLERS: dict[str, JobHandler] = {}


def register_job(kind: str) -> Callable[[JobHandler], JobHandler]:
    def decorate(handler: JobHandler) -> JobHandler:
        JOB_HANDLERS[kind] = handler
        return handler

    return decorate
