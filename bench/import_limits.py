"""What the database itself costs an import: COPY of rows already checked and sealed, straight
into the real tables (the migrations' schema, every constraint and index), on one connection.

    python bench/import_limits.py [ROWS] [VARIANT,...]

Rows are prepared in memory first (not timed), then sent as the import sends them: binary COPY
of 2,000 customers and their exposures at a time, one transaction. Printed a row: wall time, the
server backend's CPU (read from /proc: the server must run on this machine) and this process's.
The server's CPU a row is the ceiling of any import on one connection: 1 / (server µs) rows/s.

Variants, each in a fresh scratch database (created and dropped here; no live table is touched):
  real                     the schema as the migrations build it
  nofk                     exposure without its two foreign keys (what the checks cost)
  noblind                  customer without its three blind indexes
  noexpidx                 exposure without ix_exposure_incident_customer
  noexp                    customers only, no exposure rows
  oneexp                   one exposure row a customer instead of one a data class

BENCH_DATABASE_URL: the admin connection (default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.import_bench import ADMIN_URL, generate, portal_env, prepare  # noqa: E402

BATCH = 2000
DROP = {
    "nofk": "ALTER TABLE exposure DROP CONSTRAINT fk_exposure_customer_id_customer, "
    "DROP CONSTRAINT fk_exposure_incident_id_incident",
    "noblind": "DROP INDEX ix_customer_email_index, ix_customer_name_index, "
    "ix_customer_phone_index",
    "noexpidx": "DROP INDEX ix_exposure_incident_customer",
}


def prepared(path: Path, rows: int) -> tuple[list[tuple], list[tuple]]:
    """(customers in CUSTOMER_COLUMNS order, exposures (customer, data class, fragment))."""
    from portal.config import new_data_key
    from portal.crypto import DataVault
    from portal.models.customer import new_public_ids
    from portal.services import imports

    vault = DataVault([new_data_key()]).bulk()
    seal, index = vault.seal, vault.index
    padding = [""] * (len(imports.ALL_COLUMNS) - len(imports.COLUMNS))
    ids = new_public_ids(rows)
    customers, exposures = [], []
    with path.open(newline="", encoding="utf-8") as handle:
        records = csv.reader(handle)
        next(records)
        for n, record in enumerate(records):
            row = imports._check_row(n + 2, record + padding)[0]
            b = ids[n].encode()
            customers.append(
                (
                    *(n + 1, row.external_id, ids[n], seal(row.full_name.encode(), b)),
                    *(seal(row.email.encode(), b), index(row.email, b"e\x00")),
                    *(seal(row.phone.encode(), b), row.locale, row.region),
                    *(index(row.full_name, b"n\x00"), index(row.phone, b"p\x00")),
                    *(None, None, None, None, None),
                )
            )
            for data_class, fragment in row.exposures.items():
                sealed = seal(fragment.encode(), b) if fragment else None
                exposures.append((n + 1, data_class, sealed))
    return customers, exposures


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_a_customer(exposures: list[tuple]) -> list[tuple]:
    """One row a customer: its data classes joined (at most 32 characters), one fragment."""
    joined: dict[int, list] = {}
    for customer, data_class, fragment in exposures:
        entry = joined.setdefault(customer, [[], None])
        entry[0].append(data_class)
        entry[1] = fragment or entry[1]
    return [(c, ";".join(classes)[:32], fragment) for c, (classes, fragment) in joined.items()]


def measure(variant: str, customers, exposures, work: Path) -> tuple[float, float, float]:
    """(wall, server CPU, client CPU) seconds of COPYing everything in one transaction."""
    import psycopg

    from portal.services.imports import _PostgresWriter as Writer

    name = f"bench_limits_{os.getpid()}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        prepare(ROOT, portal_env(ROOT, "postgresql+psycopg://" + url.split("://", 1)[1], work))
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            incident = cur.execute("SELECT id FROM incident").fetchone()[0]
            if variant in DROP:
                cur.execute(DROP[variant])
            conn.commit()
            if variant == "oneexp":
                exposures = one_a_customer(exposures)
            rows = [(c, incident, d, f) for c, d, f in exposures]
            pid = conn.info.backend_pid
            server, client, started = backend_cpu(pid), time.process_time(), time.perf_counter()
            at = 0
            for start in range(0, len(customers), BATCH):
                with cur.copy(Writer.COPY_CUSTOMERS) as copy:
                    copy.set_types(Writer._CUSTOMER_COLUMN_TYPES)
                    for values in customers[start : start + BATCH]:
                        copy.write_row(values)
                if variant == "noexp":
                    continue
                first = at
                while at < len(rows) and rows[at][0] <= start + BATCH:
                    at += 1
                with cur.copy(Writer.COPY_EXPOSURES) as copy:
                    copy.set_types(Writer._EXPOSURE_COLUMN_TYPES)
                    for values in rows[first:at]:
                        copy.write_row(values)
            conn.commit()
            return (
                time.perf_counter() - started,
                backend_cpu(pid) - server,
                time.process_time() - client,
            )
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main(argv: list[str]) -> None:
    rows = int(argv[0]) if argv else 200_000
    variants = argv[1].split(",") if len(argv) > 1 else ["real", "nofk", "noblind", "noexp"]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        path = work / "customers.csv"
        generate(path, rows)
        customers, exposures = prepared(path, rows)
        print(f"{rows:,} customers, {len(exposures):,} exposures", flush=True)
        for variant in variants:
            wall, server, client = measure(variant, customers, exposures, work)
            print(
                f"{variant:<9} {rows / wall:8,.0f} rows/s  wall {wall * 1e6 / rows:5.1f} µs a row"
                f"  server CPU {server * 1e6 / rows:5.1f} µs  client CPU"
                f" {client * 1e6 / rows:4.1f} µs",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
