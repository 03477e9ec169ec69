"""Queueing benchmark: `portal notices send` on PostgreSQL, against a plain INSERT ... SELECT.

    python bench/queue_bench.py [CUSTOMERS]      (default 1,000,000)

A database of its own is created (and dropped at the end) on the server of BENCH_DATABASE_URL
(an admin connection; default postgresql://postgres@127.0.0.1:5432/postgres). The affected
customers are written straight into the tables with COPY, their sealed fields sealed by the
portal's own sealing (the import is not what is measured here). Then, in the same run:

- the floor: one plain `INSERT ... SELECT` of as many notice-shaped rows (a copy of the notice
  table with its indexes, values made by the database), the least the database can do for it;
- the portal: `queue_notices` for the incident, every notice with its outbox message;
- the rerun: `queue_notices` again, which must queue nothing.

Prints notices per second, the ratio to the floor, and the target (>= 20,000 notices/s).
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.table import Row  # noqa: E402

SIZES = {"quick": 50_000, "full": 1_000_000}
TARGET = 20_000  # notices/s: a million in under a minute (issue 14)
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# What the customers were exposed to: five patterns of three types, some with a fragment,
# as bench/import_bench.py makes them (so about ten variants of the message with two languages).
CLASSES = [
    ("email_address", None),
    ("payment_card", "4242"),
    ("ssn", "6789"),
    ("date_of_birth", None),
    ("full_name", None),
    ("postal_address", None),
    ("password", None),
]


def admin_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or ADMIN_URL


@contextmanager
def scratch_database(prefix: str):
    """A PostgreSQL database of the bench's own on the admin URL's server; dropped afterwards."""
    import psycopg

    admin = admin_url()
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    assert name != "test"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_app(url: str, instance: Path | None = None):
    from portal import create_app
    from portal.config import new_data_key

    sqlalchemy_url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return create_app(
        {
            "PORTAL_ENV": "testing",
            "PORTAL_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            "PORTAL_DATA_KEYS": os.environ.get("BENCH_DATA_KEY") or new_data_key(),
            "PORTAL_AUDIT_KEYS": new_data_key(),
            "PORTAL_BASE_URL": "https://portal.example.test",
            "PORTAL_DATABASE_URL": sqlalchemy_url,
            "PORTAL_MAIL_FROM": "notices@portal.example.test",
            "PORTAL_STAFF_SAME_HOST": "1",
            "PORTAL_INSTANCE_PATH": str(instance or Path(tempfile.gettempdir())),
            # e.g. PORTAL_OUTBOX_CLAIM_SIZE, to see what limits the workers
            **{k: v for k, v in os.environ.items() if k.startswith("PORTAL_OUTBOX_")},
        }
    )


def make_incident():
    from portal.extensions import db
    from portal.services.incidents import create_incident

    incident = create_incident(
        slug="bench-breach",
        title="Unauthorised access to the customer database",
        discovered_on=date(2026, 11, 2),
        actor="bench",
        occurred_on=date(2026, 10, 28),
        what_happened="Someone used a stolen password to read part of our customer database."
        "\n\nWe closed the access the same day.",
        what_we_are_doing="We reset every staff password and added a second factor.",
        contact_phone="+1 800 555 0100",
        contact_email="help@portal.example.test",
    )
    db.session.commit()
    return incident


def make_customers(incident_id: int, count: int) -> None:
    """count affected customers with three exposures each, by COPY (sealed as the portal does)."""
    from portal.extensions import db
    from portal.models import Customer, Exposure
    from portal.models.customer import new_public_id
    from portal.models.sealed import index_of, seal

    connection = db.engine.raw_connection()
    try:
        cursor = connection.cursor()
        step = 50_000
        for start in range(0, count, step):
            customers, exposures = [], []
            for n in range(start, min(start + step, count)):
                public_id = new_public_id()
                email = f"person{n}@example.com"
                customers.append(
                    (
                        public_id,
                        f"C-{n:08d}",
                        seal(Customer, "name_sealed", public_id, f"Person {n} Example"),
                        seal(Customer, "email_sealed", public_id, email),
                        index_of(Customer.email_index, email),
                        "es" if n % 7 == 0 else "en",
                        "US-CA",
                    )
                )
                for key, fragment in CLASSES[n % 5 : n % 5 + 3]:
                    sealed = None
                    if fragment is not None:
                        binding = Exposure.binding(public_id, incident_id, key)
                        sealed = seal(Exposure, "fragment_sealed", binding, fragment)
                    exposures.append((public_id, key, sealed))
            with cursor.copy(
                "COPY customer (public_id, external_id, name_sealed, email_sealed, email_index,"
                " locale, region) FROM STDIN"
            ) as copy:
                for row in customers:
                    copy.write_row(row)
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS bench_exposure (p text, k text, f bytea)"
            )
            with cursor.copy("COPY bench_exposure (p, k, f) FROM STDIN") as copy:
                for row in exposures:
                    copy.write_row(row)
            cursor.execute(
                "INSERT INTO exposure (customer_id, incident_id, data_class, fragment_sealed)"
                " SELECT customer.id, %s, k, f FROM bench_exposure"
                " JOIN customer ON customer.public_id = p",
                (incident_id,),
            )
            cursor.execute("TRUNCATE bench_exposure")
            connection.commit()
        cursor.execute("ANALYZE customer")
        cursor.execute("ANALYZE exposure")
        connection.commit()
    finally:
        connection.close()


def floor_insert(count: int) -> float:
    """Seconds for one plain INSERT ... SELECT of count notice-shaped rows (with its indexes)."""
    from portal.extensions import db

    connection = db.engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("CREATE TABLE notice_floor (LIKE notice INCLUDING ALL)")
        connection.commit()
        start = time.perf_counter()
        cursor.execute(
            "INSERT INTO notice_floor (public_id, customer_id, incident_id, reference_code,"
            " link_nonce, queued_at, created_at)"
            " SELECT md5(g::text)::varchar(22), g, 1, upper(substr(md5('r' || g), 1, 12)),"
            " md5('n' || g)::varchar(22), now(), now() FROM generate_series(1, %s) AS g",
            (count,),
        )
        connection.commit()
        elapsed = time.perf_counter() - start
        cursor.execute("DROP TABLE notice_floor")
        connection.commit()
        return elapsed
    finally:
        connection.close()


def run(count: int, *, verbose: bool = False) -> dict[str, float]:
    from flask_migrate import upgrade
    from sqlalchemy import text

    from portal import ROOT as PORTAL_ROOT
    from portal.extensions import db
    from portal.services.notices import queue_notices

    with scratch_database("bench_queue") as url:
        app = make_app(url)
        with app.app_context():
            upgrade(directory=str(PORTAL_ROOT / "migrations"))
            incident = make_incident()
            start = time.perf_counter()
            make_customers(incident.id, count)
            if verbose:
                print(f"{count:,} customers made in {time.perf_counter() - start:.1f} s")
            floor_s = floor_insert(count)
            db.session.execute(text("SELECT 1"))  # the session's server process, connected
            runs_lock = db.engine.connect()  # and one for the run lock, as the run would make
            runs_lock.close()
            pids = bench_backends(asking=True)
            before = {pid: postgres_cpu([pid]) for pid in pids}
            start, cpu = time.perf_counter(), time.process_time()
            queued = queue_notices(incident, actor="bench")
            db.session.commit()
            portal_s = time.perf_counter() - start
            cpu = time.process_time() - cpu
            # The run may connect more server processes (its read-ahead connection, the
            # session's next one): theirs count from zero.
            pg_cpu = sum(
                postgres_cpu([pid]) - before.get(pid, 0.0)
                for pid in set(pids) | set(bench_backends(asking=True))
            )
            start = time.perf_counter()
            again = queue_notices(incident, actor="bench")
            db.session.commit()
            rerun_s = time.perf_counter() - start
            assert queued == count, (queued, count)
            assert again == 0, again
            db.session.remove()
            db.engine.dispose()
    return {
        "floor": count / floor_s,
        "portal": count / portal_s,
        "rerun_s": rerun_s,
        "cpu_us": cpu / count * 1e6,
        "pg_cpu_us": pg_cpu / count * 1e6,
    }


def postgres_cpu(pids: list[int] | None = None) -> float:
    """CPU so far of these PostgreSQL server processes (Linux /proc); None: the bench
    database's own (pg_stat_activity). Other people's server processes are left out: they come
    and go during a run, and their CPU is not the bench's."""
    if pids is None:
        pids = bench_backends()
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def bench_backends(*, asking: bool = False) -> list[int]:
    """The server processes connected to the bench's database now; asking: with the one that
    asks (one of the pool's, which a run uses too)."""
    from sqlalchemy import text

    from portal.extensions import db

    everyone = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    others = everyone + " AND pid <> pg_backend_pid()"
    with db.engine.connect() as conn:
        return list(conn.scalars(text(everyone if asking else others)))


def measure(size: str) -> list[Row]:
    count = SIZES[size]
    figures = run(count)
    return [
        Row(
            f"notices send, PostgreSQL, {count:,} customers (floor: INSERT ... SELECT)",
            figures["portal"],
            "notices/s",
            floor=figures["floor"],
            target=f">= {TARGET:,} notices/s",
            met=figures["portal"] >= TARGET,
        ),
        Row(
            f"notices send, CPU per notice: the portal's process (PostgreSQL's:"
            f" {figures['pg_cpu_us']:.0f} µs)",
            figures["cpu_us"],
            "µs",
        ),
        Row(f"notices send again (nothing new), {count:,} customers", figures["rerun_s"], "s"),
    ]


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else SIZES["full"]
    figures = run(count, verbose=True)
    print(f"floor INSERT ... SELECT : {figures['floor']:>10,.0f} rows/s")
    print(f"portal notices send     : {figures['portal']:>10,.0f} notices/s")
    print(f"ratio portal/floor      : {figures['portal'] / figures['floor']:.2f}")
    print(f"rerun (queues nothing)  : {figures['rerun_s']:.2f} s")
    print(f"CPU per notice          : {figures['cpu_us']:.0f} µs portal process,")
    print(f"{figures['pg_cpu_us']:>28.0f} µs PostgreSQL (its bench server processes)")
    met = "met" if figures["portal"] >= TARGET else "MISSED"
    print(f"target >= {TARGET:,}/s   : {met}")


if __name__ == "__main__":
    main()
