"""`payscore users ...` and `payscore clock ...`: the simulated world from the command line.

Each command opens the sandbox's database (sandbox.cli.open_sandbox), so it works with or
without a running server; `clock advance` runs the jobs that fall due, in order, through the
same job runner the server uses.
"""

from __future__ import annotations

import json
import time

import click
from rich.console import Console
from rich.table import Table

from sandbox.clock import parse_duration

console = Console()


def _sandbox(data_dir: str, db: str | None):
    from sandbox.cli import open_sandbox

    return open_sandbox(data_dir, db).extensions["payscore"]


def register(cli: click.Group) -> None:
    from sandbox.cli import data_dir_option, db_option

    @cli.group()
    def users() -> None:
        """Simulated WeChat users: seed a population, inspect one."""

    @users.command("seed")
    @click.option("--count", default=50_000, show_default=True, type=click.IntRange(0, 10**7))
    @click.option("--seed", default=42, show_default=True, type=int)
    @data_dir_option
    @db_option
    def users_seed(count: int, seed: int, data_dir: str, db: str | None) -> None:
        """Seed COUNT reproducible users (same seed, same users); existing users are kept."""
        from sandbox.world.behaviour import World

        sb = _sandbox(data_dir, db)
        started = time.perf_counter()
        answer = World(sb).seed_users(count, seed, sb.clock.now_us())
        elapsed = time.perf_counter() - started
        console.print(f"seeded {answer['inserted']} new users (count={count}, seed={seed}) "
                      f"in {elapsed:.2f} s; {answer['total_users']} users in the sandbox")
        if answer["first_openid"]:
            console.print(f"first openid of this seed: {answer['first_openid']}")

    @users.command("show")
    @click.argument("openid")
    @data_dir_option
    @db_option
    @click.option("--json", "as_json", is_flag=True, help="Print the raw JSON profile.")
    def users_show(openid: str, data_dir: str, db: str | None, as_json: bool) -> None:
        """Show a user: profile, eligibility, risk tier and score history."""
        from sandbox.world.behaviour import World

        sb = _sandbox(data_dir, db)
        user = World(sb).get_user(openid, sb.clock.now_us())
        if as_json:
            click.echo(json.dumps(user, ensure_ascii=False, indent=2))
            return
        table = Table(title=f"user {openid}", show_header=False)
        for key, value in user.items():
            if key != "score_history":
                table.add_row(key, str(value))
        console.print(table)
        history = user["score_history"]
        if history:
            console.print("score history: " + ", ".join(
                f"{h['at']} {h['score']} ({h['reason']})" for h in history))
        else:
            console.print("score history: no change since seeding")

    @cli.group()
    def clock() -> None:
        """The sandbox clock: show, freeze, advance (running due jobs), reset."""

    def _show(state: dict, extra: str = "") -> None:
        frozen = "frozen" if state["frozen"] else f"running, offset {state['offset_s']:.0f} s"
        console.print(f"sandbox time {state['now']} ({frozen}){extra}")

    @clock.command("show")
    @data_dir_option
    @db_option
    def clock_show(data_dir: str, db: str | None) -> None:
        """Print the sandbox time."""
        sb = _sandbox(data_dir, db)
        _show(sb.clock.state())

    @clock.command("freeze")
    @data_dir_option
    @db_option
    def clock_freeze(data_dir: str, db: str | None) -> None:
        """Stop the sandbox clock at its current instant."""
        sb = _sandbox(data_dir, db)
        sb.clock.freeze()
        _show(sb.clock.state())

    @clock.command("advance")
    @click.argument("duration")
    @data_dir_option
    @db_option
    def clock_advance(duration: str, data_dir: str, db: str | None) -> None:
        """Move the clock forward by DURATION (30s, 15m, 2h, 7d, 1h30m) and run due jobs."""
        try:
            delta = parse_duration(duration)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="DURATION") from None
        sb = _sandbox(data_dir, db)
        ran = sb.advance(delta)
        _show(sb.clock.state(), f"; {ran} jobs ran")

    @clock.command("reset")
    @data_dir_option
    @db_option
    def clock_reset(data_dir: str, db: str | None) -> None:
        """Back to wall time, unfrozen (jobs already run stay run)."""
        sb = _sandbox(data_dir, db)
        sb.clock.reset()
        _show(sb.clock.state())
