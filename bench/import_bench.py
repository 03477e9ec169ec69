"""Import benchmark: `portal customers import` against the raw floor, on SQLite and PostgreSQL.

    python bench/import_bench.py [--quick | --full | ROWS] [--root TREE]

One generated CSV is imported into a fresh database of each kind; each run is a child process,
so that its peak memory (max RSS) is its own. The floor is the same rows read by `csv` and
written with nothing else: `executemany` of the seven columns on SQLite, `COPY` of the seven
columns on PostgreSQL. Floor runs come before and after the portal's, and the floor is their
mean: the ratio compares work done under the same load on a shared machine.

--root (or IMPORT_BENCH_ROOT) runs the portal of another checkout, for a before/after
measured the same way (e.g. `git worktree add --detach /tmp/old main`).

PostgreSQL runs in a database the benchmark creates and drops on the server of
BENCH_DATABASE_URL (the admin connection; default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.table import Row, render  # noqa: E402

SIZES = {"quick": 50_000, "full": 1_000_000}
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
COLUMNS = ["external_id", "full_name", "email", "phone", "locale", "region", "data_classes"]
CLASSES = [
    "email_address",
    "payment_card:4242",
    "ssn:6789",
    "date_of_birth",
    "full_name",
    "postal_address",
    "password",
    "phone_number:0199",
]
RSS_LIMIT_MB = 200
RATIO_TARGET = 0.5
PG_RATE_TARGET = 50_000


def generate(path: Path, rows: int) -> None:
    """A file like an organisation's: three data classes a row, a fragment in about half."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for n in range(rows):
            writer.writerow(
                [
                    f"C-{n:08d}",
                    f"Person {n} Example",
                    f"person{n}@example.com",
                    f"+1415{n % 10_000_000:07d}",
                    "es" if n % 7 == 0 else "en",
                    "US-CA",
                    ";".join(CLASSES[n % 5 : n % 5 + 3]),
                ]
            )


# --- the floors (run as children: `import_bench.py --floor-sqlite|--floor-pg CSV TARGET`) ---


def floor_sqlite(csv_path: str, db_path: str) -> None:
    """The same rows, parsed by csv, inserted by executemany in one transaction, nothing else."""
    for leftover in (db_path, f"{db_path}-wal", f"{db_path}-shm"):  # a fresh file each run
        Path(leftover).unlink(missing_ok=True)
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode = WAL")  # as the portal's connections
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE raw (external_id TEXT PRIMARY KEY, full_name TEXT, email TEXT, "
        "phone TEXT, locale TEXT, region TEXT, data_classes TEXT)"
    )
    insert = "INSERT INTO raw VALUES (?, ?, ?, ?, ?, ?, ?)"
    started = time.perf_counter()
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        batch = []
        for row in reader:
            batch.append(row)
            if len(batch) == 10_000:
                conn.executemany(insert, batch)
                batch = []
        if batch:
            conn.executemany(insert, batch)
    conn.commit()
    print(f"seconds={time.perf_counter() - started}")
    conn.close()


def floor_pg(csv_path: str, url: str) -> None:
    """The same rows, parsed by csv, sent by COPY in one transaction, nothing else."""
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS raw")
        cursor.execute(
            "CREATE TABLE raw (external_id text PRIMARY KEY, full_name text, email text, "
            "phone text, locale text, region text, data_classes text)"
        )
        conn.commit()
        started = time.perf_counter()
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            next(reader)
            with cursor.copy(f"COPY raw ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in reader:
                    copy.write_row(row)
        conn.commit()
        print(f"seconds={time.perf_counter() - started}")
        cursor.execute("DROP TABLE raw")
        conn.commit()


# --- the portal's runs ---


def portal_env(tree: Path, database_url: str, instance: Path) -> dict[str, str]:
    from portal.config import new_data_key

    return {
        **os.environ,
        "PYTHONPATH": str(tree),  # the checkout measured, before the venv's editable install
        "PORTAL_ENV": "testing",
        "PORTAL_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "PORTAL_DATA_KEYS": new_data_key(),
        "PORTAL_AUDIT_KEYS": new_data_key(),
        "PORTAL_BASE_URL": "https://portal.example.test",
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_INSTANCE_PATH": str(instance),
    }


def portal_command(*args: str) -> list[str]:
    launcher = "import sys; from portal.cli import main; sys.argv[0] = 'portal'; sys.exit(main())"
    return [sys.executable, "-c", launcher, *args]


# What `portal customers import` runs, timed from the call to the commit: the interpreter's
# start and the app's creation (a second or so, the same for any command) are not the import's.
IMPORT_CHILD = """
import sys, time
from portal import create_app, unit_of_work
from portal.extensions import db
from portal.models import Incident
from portal.services.imports import import_customers

app = create_app()
with app.app_context():
    incident = db.session.query(Incident).filter_by(slug="bench").one()
    started = time.perf_counter()
    report = import_customers(incident, sys.argv[1], actor="cli:bench")
    unit_of_work.commit()
    seconds = time.perf_counter() - started
print(f"Imported {report.rows} rows: {report.created} new, {report.updated} updated, "
      f"{report.unchanged} unchanged")
print(f"seconds={seconds}")
"""


def timed(output: str) -> float:
    """The seconds a child measured around its work (the last `seconds=` line it printed)."""
    lines = [line for line in output.splitlines() if line.startswith("seconds=")]
    return float(lines[-1].split("=", 1)[1])


def run_child(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int, str]:
    """Run a child; return (seconds, CPU seconds, peak RSS in MB, output)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = process.stdout.read().decode()  # read before waiting: a full pipe would block it
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child failed: {' '.join(args)}\n{output}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024, output


def prepare(tree: Path, env: dict[str, str]) -> None:
    for args in (
        ("db", "upgrade"),
        ("incident", "create", "--slug", "bench", "--title", "Bench", "--discovered", "2026-11-01"),
    ):
        subprocess.run(portal_command(*args), env=env, cwd=tree, check=True, capture_output=True)


def compare(label: str, rows: int, csv_path: Path, floor_args: list[str], tree: Path, env):
    """Floor, import, re-import, floor: {name: (seconds, wall seconds, cpu, peak MB)}."""
    me = [sys.executable, str(Path(__file__).resolve())]
    importing = [sys.executable, "-c", IMPORT_CHILD, str(csv_path)]
    floor_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = {}

    def floor(name: str) -> None:
        wall, cpu, peak, output = run_child([*me, *floor_args], floor_env, ROOT)
        results[name] = (timed(output), wall, cpu, peak)

    floor("floor1")
    for name, expected in (("import", f"{rows} new"), ("again", f"{rows} unchanged")):
        wall, cpu, peak, output = run_child(importing, env, tree)
        if f"Imported {rows} rows" not in output or expected not in output:
            raise SystemExit(f"{label} {name}: unexpected output {output!r}")
        results[name] = (timed(output), wall, cpu, peak)
    floor("floor2")
    return results


def _sqlite_runs(rows: int, csv_path: Path, work: Path, tree: Path):
    env = portal_env(tree, f"sqlite:///{work / 'portal.db'}", work)
    prepare(tree, env)
    floor_args = ["--floor-sqlite", str(csv_path), str(work / "raw.db")]
    try:
        return compare("SQLite", rows, csv_path, floor_args, tree, env)
    finally:
        for path in work.glob("*.db*"):
            path.unlink()


def _pg_runs(rows: int, csv_path: Path, work: Path, tree: Path):
    import psycopg

    name = f"bench_import_{os.getpid()}"
    base = ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        url = f"{base}/{name}"
        env = portal_env(tree, "postgresql+psycopg://" + url.split("://", 1)[1], work)
        prepare(tree, env)
        return compare("PostgreSQL", rows, csv_path, ["--floor-pg", str(csv_path), url], tree, env)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(rows: int, tree: Path, verbose: bool = False) -> list[Row]:
    """Both databases at this size; the table's rows."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        csv_path = work / "customers.csv"
        generate(csv_path, rows)
        measured = {
            "SQLite": _sqlite_runs(rows, csv_path, work, tree),
            "PostgreSQL": _pg_runs(rows, csv_path, work, tree),
        }
    table: list[Row] = []
    peak = 0
    for database, runs in measured.items():
        floor_seconds = (runs["floor1"][0] + runs["floor2"][0]) / 2
        floor_rate = rows / floor_seconds
        rate = rows / runs["import"][0]
        ratio = rate / floor_rate
        target = f"ratio >= {RATIO_TARGET}"
        met = ratio >= RATIO_TARGET
        if database == "PostgreSQL":
            target += f", >= {PG_RATE_TARGET:,} rows/s"
            met = met and rate >= PG_RATE_TARGET
        table.append(
            Row(f"import, {database}, {rows:,} rows", rate, "rows/s", floor_rate, target, met)
        )
        table.append(
            Row(
                f"re-import (nothing changes), {database}, {rows:,} rows",
                rows / runs["again"][0],
                "rows/s",
                floor_rate,
            )
        )
        peak = max(peak, runs["import"][3], runs["again"][3])
        if verbose:
            for name, (seconds, wall, cpu, mb) in runs.items():
                print(
                    f"  {database:<10} {name:<7} {seconds:7.2f} s ({wall:6.2f} s with start-up)"
                    f"  {cpu * 1e6 / rows:6.1f} µs CPU a row (this process)  peak {mb} MB",
                    flush=True,
                )
    table.append(
        Row(
            f"import peak RSS, {rows:,} rows",
            peak,
            "MB",
            None,
            f"< {RSS_LIMIT_MB} MB",
            peak < RSS_LIMIT_MB,
        )
    )
    return table


def _tree() -> Path:
    return Path(os.environ.get("IMPORT_BENCH_ROOT") or ROOT).resolve()


def measure(size: str) -> list[Row]:
    """bench/run.py's entry: about 50,000 rows (quick) or 1,000,000 (full) on each database."""
    return run(SIZES[size], _tree())


def main(argv: list[str]) -> None:
    tree = _tree()
    if "--root" in argv:
        at = argv.index("--root")
        tree = Path(argv[at + 1]).resolve()
        del argv[at : at + 2]
    size = argv[0] if argv else "full"
    rows = SIZES[size.lstrip("-")] if size.lstrip("-") in SIZES else int(size)
    print(f"{rows:,} rows, portal from {tree}", flush=True)
    print(render(run(rows, tree, verbose=True)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--floor-sqlite"]:
        floor_sqlite(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["--floor-pg"]:
        floor_pg(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1:])
