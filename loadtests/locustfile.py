"""Locust entry point; `payscore loadtest` runs it headless, master and workers alike.

    locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 5m \
        --payscore-run '<RunConfig JSON>' SandboxMerchantUser

The user class named on the command line picks the target (SandboxMerchantUser or DriverUser).

The run time is enforced here rather than with Locust's ``-t``: a headless ``-t`` quits the
master without stopping the workers first, and the last flow records would be lost. At the end
of the run (the run time, or `stop_after_flows` flows recorded, whichever comes first) the
master stops every user (workers finish their current flow within ``--stop-timeout`` and send
their records), then quits.
"""

from __future__ import annotations

import gevent
from locust import events
from locust.runners import WorkerRunner

from loadtests import flowlog
from loadtests.runconfig import OPTION, RunConfig
from loadtests.users import DriverUser, SandboxMerchantUser

__all__ = ["DriverUser", "SandboxMerchantUser"]


@events.init_command_line_parser.add_listener
def _add_options(parser) -> None:
    parser.add_argument(OPTION, type=str, default="", include_in_web_ui=False,
                        help="payscore run configuration (JSON, written by payscore loadtest)")


@events.init.add_listener
def _install_flowlog(environment, **_kw) -> None:
    text = getattr(environment.parsed_options, "payscore_run", "") if \
        environment.parsed_options else ""
    flows_path = RunConfig.from_json(text).flows_path if text else None
    flowlog.install(environment, flows_path)


@events.test_start.add_listener
def _schedule_end(environment, **_kw) -> None:
    runner = environment.runner
    text = getattr(environment.parsed_options, "payscore_run", "") if \
        environment.parsed_options else ""
    if isinstance(runner, WorkerRunner) or not text:
        return
    cfg = RunConfig.from_json(text)
    done = []

    def finish() -> None:
        if done:
            return
        done.append(True)
        runner.stop()  # waits for workers to stop their users and report
        runner.quit()

    if cfg.run_time_s > 0:
        gevent.spawn_later(cfg.run_time_s, finish)
    if cfg.stop_after_flows > 0:
        flows = environment.payscore_flowlog

        def watch() -> None:  # the records reach this process in batches: a second is plenty
            while not done and flows.written < cfg.stop_after_flows:
                gevent.sleep(1.0)
            finish()

        gevent.spawn(watch)
