"""The import's work taken apart: the cost a row of each piece, measured alone.

    python bench/import_pieces.py [ROWS] [--pg URL]

Python pieces run in this process on a generated file (CPU µs a row, best of three). With
--pg, the server's pieces run in a scratch schema of that database: COPY into staging, the
customer upsert and the exposure upsert, each with and without the indexes and foreign keys
the real tables have, so the report can say what they cost.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.import_bench import generate  # noqa: E402


def best(function, repeat: int = 3) -> float:
    """The lowest CPU seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        function()
        times.append(time.process_time() - started)
    return min(times)


def python_pieces(path: Path, rows: int) -> dict[str, float]:
    """µs a row of each piece of the Python side."""
    from portal.config import new_data_key
    from portal.crypto import DataVault
    from portal.models import Customer, Exposure
    from portal.models.customer import new_public_ids
    from portal.models.sealed import context
    from portal.services import imports
    from portal.validation import email_address, normalise_email, normalise_name, phone_number

    results: dict[str, float] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        records = list(csv.reader(handle))[1:]
    stripped = [[f.strip() for f in r] for r in records]

    def parse():
        with path.open(newline="", encoding="utf-8") as handle:
            for _ in csv.reader(handle):
                pass

    results["csv parse (csv.reader)"] = best(parse)

    def records_fn():
        for _ in imports._records(path):
            pass

    results["_records (parse, line numbers, bad bytes, strip)"] = best(records_fn)
    results["  of which strip of 7 fields"] = best(
        lambda: [[f.strip() for f in r] for r in records]
    )
    emails = [r[2] for r in stripped]
    phones = [r[3] for r in stripped]
    names = [r[1] for r in stripped]
    results["email_address()"] = best(lambda: [email_address(e) for e in emails])
    results["phone_number()"] = best(lambda: [phone_number(p) for p in phones])
    # Every column _check_row reads, the optional ones empty as a file without them gives.
    padding = [""] * (len(imports.ALL_COLUMNS) - len(imports.COLUMNS))
    stripped = [r + padding for r in stripped]
    results["_check_row (all validation, Row built)"] = best(
        lambda: [imports._check_row(i, r) for i, r in enumerate(stripped)]
    )
    checked = [imports._check_row(i, r)[0] for i, r in enumerate(stripped)]

    def scan():
        report = imports.ImportReport()
        scan = imports._Scan(path, report)
        for _ in scan.rows():
            pass
        scan.finish()

    results["whole scan (validate(): read + check + duplicates)"] = best(scan)

    vault = DataVault([new_data_key()]).bulk()
    seal, index = vault.seal, vault.index
    binding = b"0123456789abcdef01234567"
    name_ctx = context(Customer, "name_sealed", "").encode() + binding
    encoded_names = [n.encode() for n in names]
    encoded_emails = [e.encode() for e in emails]
    results["seal name (1)"] = best(lambda: [seal(n, name_ctx) for n in encoded_names])
    results["seal email (1)"] = best(lambda: [seal(e, name_ctx) for e in encoded_emails])
    results["seal phone (1)"] = best(lambda: [seal(p.encode(), name_ctx) for p in phones])
    frag_ctx = context(Exposure, "fragment_sealed", "").encode()
    results["seal fragment (1, with its binding)"] = best(
        lambda: [
            seal(
                b"4242", frag_ctx + Exposure.binding("0123456789abcdef01234567", 1, "ssn").encode()
            )
            for _ in range(rows)
        ]
    )
    purpose = b"email\x00"
    results["blind index email (normalise + hmac)"] = best(
        lambda: [index(normalise_email(e), purpose) for e in emails]
    )
    results["blind index name (normalise + hmac)"] = best(
        lambda: [index(normalise_name(n), purpose) for n in names]
    )
    results["blind index phone (hmac)"] = best(lambda: [index(p, purpose) for p in phones])
    results["  of which hmac.digest alone"] = best(lambda: [index(e, purpose) for e in emails])
    results["new_public_ids"] = best(lambda: new_public_ids(rows))

    class Fake(imports._Writer):
        def __init__(self):
            self.vault = vault
            self.name_context = context(Customer, "name_sealed", "").encode()
            self.email_context = context(Customer, "email_sealed", "").encode()
            self.phone_context = context(Customer, "phone_sealed", "").encode()
            self.fragment_context = frag_ctx
            self.email_index = imports._index_of(Customer.email_index)
            self.name_index = imports._index_of(Customer.name_index)
            self.phone_index = imports._index_of(Customer.phone_index)
            self.incident_id = 1
            self.report = imports.ImportReport()

    fake = Fake()
    ids = new_public_ids(rows)
    results["_customer (3 seals, 3 indexes, tuple)"] = best(
        lambda: [fake._customer(i, ids[i], row) for i, row in enumerate(checked)]
    )
    mapping = {row.external_id: (i, ids[i]) for i, row in enumerate(checked)}
    results["_exposures (3 a row, ~1.2 fragment seals)"] = best(
        lambda: fake._exposures(checked, mapping, {})
    )
    return {name: seconds * 1e6 / rows for name, seconds in results.items()}


def pg_pieces(path: Path, rows: int, url: str) -> dict[str, float]:
    """µs a row (wall, server included) of COPY and the upserts, with and without indexes."""
    import psycopg

    from portal.config import new_data_key
    from portal.crypto import DataVault
    from portal.models.customer import new_public_ids
    from portal.services import imports

    vault = DataVault([new_data_key()]).bulk()
    with path.open(newline="", encoding="utf-8") as handle:
        records = list(csv.reader(handle))[1:]
    padding = [""] * (len(imports.ALL_COLUMNS) - len(imports.COLUMNS))
    checked = [imports._check_row(i, r + padding)[0] for i, r in enumerate(records)]
    ids = new_public_ids(rows)
    customers = []
    exposures: list[list[tuple]] = []
    for i, row in enumerate(checked):
        if i % imports.BATCH_SIZE == 0:
            exposures.append([])
        b = ids[i].encode()
        customers.append(
            (
                i + 1,
                row.external_id,
                ids[i],
                vault.seal(row.full_name.encode(), b),
                vault.seal(row.email.encode(), b),
                vault.index(row.email, b"e\x00"),
                vault.seal(row.phone.encode(), b),
                row.locale,
                row.region,
                vault.index(row.full_name, b"n\x00"),
                vault.index(row.phone, b"p\x00"),
            )
        )
        for data_class, fragment in row.exposures.items():
            exposures[-1].append(
                (i + 1, data_class, vault.seal(fragment.encode(), b) if fragment else None)
            )
    batch = imports.BATCH_SIZE
    results: dict[str, float] = {}
    types = imports._PostgresWriter._STAGE_TYPES
    customer_table = (
        "CREATE TABLE customer (id bigint PRIMARY KEY, public_id varchar(32) UNIQUE, "
        "external_id varchar(128) UNIQUE, name_sealed bytea, email_sealed bytea, "
        "email_index bytea, phone_sealed bytea, name_index bytea, phone_index bytea, "
        "locale varchar(16), locale_chosen_at timestamptz, region varchar(8), "
        "created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now())"
    )
    blind = (
        "CREATE INDEX ON customer (email_index); CREATE INDEX ON customer (name_index); "
        "CREATE INDEX ON customer (phone_index)"
    )
    exposure_table = (
        "CREATE TABLE exposure (id serial PRIMARY KEY, customer_id bigint {fk}, "
        "incident_id int {ifk}, data_class varchar(32), fragment_sealed bytea, "
        "created_at timestamptz DEFAULT now(), "
        "CONSTRAINT uq_exposure_once UNIQUE (customer_id, incident_id, data_class)); "
        "CREATE INDEX ON exposure (incident_id, customer_id)"
    )
    with psycopg.connect(url) as conn:
        cur = conn.cursor()

        def setup(blind_indexes: bool, foreign_keys: bool):
            cur.execute("DROP SCHEMA IF EXISTS pieces CASCADE; CREATE SCHEMA pieces")
            cur.execute("SET search_path = pieces")
            cur.execute(
                "CREATE TABLE incident (id int PRIMARY KEY); INSERT INTO incident VALUES (1)"
            )
            cur.execute(customer_table)
            if blind_indexes:
                cur.execute(blind)
            fk = "REFERENCES customer (id) ON DELETE CASCADE" if foreign_keys else ""
            ifk = "REFERENCES incident (id) ON DELETE CASCADE" if foreign_keys else ""
            cur.execute(exposure_table.format(fk=fk, ifk=ifk))
            cur.execute("DROP TABLE IF EXISTS import_customer, import_exposure")
            cur.execute(imports._PostgresWriter._STAGE.replace(" ON COMMIT DROP", ""))
            conn.commit()

        columns = ", ".join(imports.CUSTOMER_COLUMNS)
        plain_customers = f"INSERT INTO customer ({columns}) SELECT {columns} FROM import_customer"  # noqa: S608
        plain_exposures = (
            "INSERT INTO exposure (customer_id, incident_id, data_class, fragment_sealed) "
            "SELECT customer_id, %s, data_class, fragment_sealed FROM import_exposure"
        )

        def run(upsert: bool, exposures_too: bool, plain: bool = False) -> float:
            started = time.perf_counter()
            for start in range(0, rows, batch):
                part = customers[start : start + batch]
                cur.execute("TRUNCATE import_customer, import_exposure")
                with cur.copy("COPY import_customer FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(types[0])
                    for values in part:
                        copy.write_row(values)
                if plain:
                    cur.execute(plain_customers)
                elif upsert:
                    cur.execute(imports._PostgresWriter.UPSERT_CUSTOMERS)
                if exposures_too:
                    with cur.copy("COPY import_exposure FROM STDIN (FORMAT BINARY)") as copy:
                        copy.set_types(types[1])
                        for values in exposures[start // batch]:
                            copy.write_row(values)
                    if plain:
                        cur.execute(plain_exposures, [1])
                    elif upsert:
                        cur.execute(imports._PostgresWriter.UPSERT_EXPOSURES, [1])
            conn.commit()
            return time.perf_counter() - started

        setup(True, True)
        results["COPY customers into staging (only)"] = run(False, False)
        setup(True, True)
        results["COPY + upsert customers (all indexes)"] = run(True, False)
        setup(False, True)
        results["COPY + upsert customers (no blind indexes)"] = run(True, False)
        setup(True, True)
        results["COPY + upsert customers + exposures (as now)"] = run(True, True)
        setup(True, False)
        results["as now, exposure without foreign keys"] = run(True, True)
        setup(True, True)
        results["plain INSERT customers (all indexes)"] = run(False, False, plain=True)
        setup(True, True)
        results["plain INSERT customers + exposures"] = run(False, True, plain=True)
        setup(True, False)
        results["plain INSERT, exposure without foreign keys"] = run(False, True, plain=True)
        setup(True, True)
        run(True, True)
        results["as now again on the same rows (all conflicts)"] = run(True, True)
        cur.execute("DROP SCHEMA pieces CASCADE")
        conn.commit()
    return {name: seconds * 1e6 / rows for name, seconds in results.items()}


def main(argv: list[str]) -> None:
    url = None
    if "--pg" in argv:
        at = argv.index("--pg")
        url = argv[at + 1]
        del argv[at : at + 2]
    rows = int(argv[0]) if argv else 50_000
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "customers.csv"
        generate(path, rows)
        measured = python_pieces(path, rows)
        if url:
            measured.update(pg_pieces(path, rows, url))
    for name, micros in measured.items():
        print(f"{micros:8.2f} µs  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
