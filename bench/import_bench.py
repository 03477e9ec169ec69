"""Import benchmark: a generated CSV through `portal customers import`, against raw executemany.

    python bench/import_bench.py [ROWS]      (default 1,000,000)

Both runs read the same file into a fresh SQLite database, each in a child process so that its
peak memory (max RSS) is its own. Prints rows per second, peak memory, and the portal's speed as
a ratio of the raw insert: what validation, encryption and the upsert cost.
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


def generate(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["external_id", "full_name", "email", "phone", "locale", "region", "data_classes"]
        )
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


def env_for(db_path: Path, instance: Path) -> dict[str, str]:
    from portal.config import new_data_key

    return {
        **os.environ,
        "PORTAL_ENV": "testing",
        "PORTAL_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "PORTAL_DATA_KEYS": new_data_key(),
        "PORTAL_BASE_URL": "https://portal.example.test",
        "PORTAL_DATABASE_URL": f"sqlite:///{db_path}",
        "PORTAL_INSTANCE_PATH": str(instance),
    }


def run_child(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run a child; return (seconds, peak RSS in MB, output)."""
    start = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    output = process.stdout.read().decode()
    process.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child failed: {' '.join(args)}\n{output}")
    return elapsed, usage.ru_maxrss // 1024, output


def raw_executemany(csv_path: str, db_path: str) -> None:
    """The baseline: the same rows, parsed by csv, inserted by executemany, nothing else."""
    conn = sqlite3.connect(db_path)
    conn.execute(
        "CREATE TABLE customer (external_id TEXT PRIMARY KEY, full_name TEXT, email "
        "TEXT, phone TEXT, locale TEXT, region TEXT, data_classes TEXT)"
    )
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        batch = []
        for row in reader:
            batch.append(row)
            if len(batch) == 1000:
                conn.executemany("INSERT INTO customer VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
                batch = []
        if batch:
            conn.executemany("INSERT INTO customer VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
    conn.commit()
    conn.close()


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    portal = str(Path(sys.executable).parent / "portal")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        csv_path = work / "customers.csv"
        print(f"generating {rows:,} rows ...", flush=True)
        generate(csv_path, rows)
        print(f"  {csv_path.stat().st_size / 1e6:.0f} MB of CSV", flush=True)

        env = env_for(work / "portal.db", work)
        subprocess.run([portal, "db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run(
            [
                portal,
                "incident",
                "create",
                "--slug",
                "bench",
                "--title",
                "Bench",
                "--discovered",
                "2026-11-01",
            ],
            env=env,
            check=True,
            capture_output=True,
        )

        base_s, base_mb, _ = run_child(
            [sys.executable, __file__, "--raw", str(csv_path), str(work / "raw.db")], env
        )
        portal_s, portal_mb, output = run_child(
            [portal, "customers", "import", "--incident", "bench", str(csv_path)], env
        )
        again_s, again_mb, _ = run_child(
            [portal, "customers", "import", "--incident", "bench", str(csv_path)], env
        )

    base_rate, portal_rate, again_rate = rows / base_s, rows / portal_s, rows / again_s
    print(output.strip())
    print(f"raw executemany   : {base_rate:>10,.0f} rows/s  peak {base_mb:>5} MB  ({base_s:.1f} s)")
    print(
        f"portal import     : {portal_rate:>10,.0f} rows/s  peak {portal_mb:>5} MB  "
        f"({portal_s:.1f} s)"
    )
    print(
        f"portal re-import  : {again_rate:>10,.0f} rows/s  peak {again_mb:>5} MB  "
        f"({again_s:.1f} s, nothing changes)"
    )
    print(f"ratio portal/raw  : {portal_rate / base_rate:.2f}")
    print(
        f"targets           : >= 20,000 rows/s "
        f"{'met' if portal_rate >= 20_000 else 'MISSED'}; "
        f"< 300 MB peak {'met' if portal_mb < 300 else 'MISSED'}"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--raw"]:
        raw_executemany(sys.argv[2], sys.argv[3])
    else:
        main()
