"""How long seeding 50,000 simulated users takes (target: under 10 s).

    python benchmarks/bench_seed.py [--count 50000] [--seed 42] [--db postgresql://...]

Measures what `payscore users seed` does: generate the users (the population model) and insert
them in one transaction, into a fresh SQLite file by default or a fresh PostgreSQL schema with
--db. Prints the generation and insert split, users per second, and the verdict; then times one
03:00 score refresh over the same users (a bulk recompute that finds nothing changed).
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path

from sandbox import db
from sandbox.world import population, scores

TARGET_S = 10.0


def _engine(url: str | None, tmp: Path):
    if not url:
        engine = db.make_engine(f"sqlite:///{tmp / 'bench.db'}")
        return engine, None
    import psycopg

    schema = "bench_seed_" + secrets.token_hex(4)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in url else "?"
    return db.make_engine(f"{url}{sep}options=-csearch_path%3D{schema}"), schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--db", default=None, help="PostgreSQL URL (default: SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine, schema = _engine(args.db, Path(tmp))
        try:
            db.init_db(engine)
            gen_start = time.perf_counter()
            population.generate_users(args.count, args.seed)
            generate_s = time.perf_counter() - gen_start
            started, cpu_started = time.perf_counter(), time.process_time()
            with db.write_tx(engine) as conn:  # exactly what `payscore users seed` runs
                inserted = population.seed_users(conn, args.count, args.seed, 0)
            total = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            with db.write_tx(engine) as conn:
                again = population.seed_users(conn, args.count, args.seed, 0)
            with db.write_tx(engine) as conn:
                refresh_start = time.perf_counter()
                changed = scores.refresh_all(conn, 0)
                refresh_s = time.perf_counter() - refresh_start
        finally:
            engine.dispose()
            if schema:
                import psycopg

                with psycopg.connect(args.db, autocommit=True) as admin:
                    admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    backend = "PostgreSQL" if args.db else "SQLite"
    print(f"seed {inserted} users ({backend}): {total:.2f} s "
          f"(of which generating them alone: {generate_s:.2f} s; this process's CPU time "
          f"{cpu:.2f} s, so wall time above it is waiting: other load or the database), "
          f"{args.count / total:,.0f} users/s; target < {TARGET_S:.0f} s: "
          f"{'OK' if total < TARGET_S else 'MISSED'}")
    print(f"re-seed of the same users inserted {again} rows; "
          f"one score refresh over them: {refresh_s:.2f} s, {changed} changed")


if __name__ == "__main__":
    main()
