"""Letters benchmark: `portal letters build` for many people on PostgreSQL.

    python bench/letters_bench.py [PEOPLE] [BATCH_SIZE]     (default 100,000 and 500)

A database of its own is made (and dropped) as bench/queue_bench.py does; the people and their
exposures are written with its COPY helpers, then each gets a sealed postal address (COPY into a
temporary table, one UPDATE). The incident requires postal notice, so everyone gets a letter.

Prints, in the same run:
- the floor: fpdf2 alone laying out the same letter (one person's text) for a sample of letters,
  no database, no sealing: the least the PDF library does per letter;
- the portal: `letters.build` for everyone, letters/s and the ratio to the floor;
- peak RSS (VmHWM) before the build and after it: flat memory means the build adds little
  over what making the people already took, whatever the number of letters.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.queue_bench import make_app, make_customers, make_incident, scratch_database  # noqa: E402

SAMPLE = 1_000


def peak_rss_mb() -> float:
    """The process's peak resident set so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Reset VmHWM (Linux: write 5 to clear_refs), so the build's own peak is measured."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def add_addresses(count: int) -> None:
    from portal.extensions import db
    from portal.models import Customer
    from portal.models.sealed import seal

    connection = db.engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT public_id FROM customer ORDER BY id")
        ids = [row[0] for row in cursor.fetchall()]
        cursor.execute("CREATE TEMP TABLE bench_address (p text, a bytea, c bytea, z bytea)")
        with cursor.copy("COPY bench_address (p, a, c, z) FROM STDIN") as copy:
            for n, public_id in enumerate(ids):
                copy.write_row(
                    (
                        public_id,
                        seal(
                            Customer, "address_line1_sealed", public_id, f"{n % 9000 + 1} Main St"
                        ),
                        seal(Customer, "city_sealed", public_id, "San Francisco"),
                        seal(Customer, "postal_code_sealed", public_id, "94110"),
                    )
                )
        cursor.execute(
            "UPDATE customer SET address_line1_sealed = a, city_sealed = c, postal_code_sealed = z"
            " FROM bench_address WHERE customer.public_id = p"
        )
        cursor.execute("UPDATE incident SET postal_notice = true")
        cursor.execute("ANALYZE customer")
        connection.commit()
    finally:
        connection.close()


def floor(out: Path) -> float:
    """Letters/s of fpdf2 alone laying out SAMPLE copies of one letter."""
    from portal.extensions import db
    from portal.models import Incident
    from portal.services.letters import _Printer

    incident = db.session.query(Incident).one()
    printer = _Printer(incident)
    person = {
        "address": ["Person 1 Example", "1 Main St", "San Francisco, CA 94110"],
        "code": "ABCD-EFGH-JKMN",
        "code_label": "Your reference code",
        "start_line": "Go to https://portal.example.test/start and type your reference code.",
        "genuine_line": "Check this letter at https://portal.example.test/genuine.",
    }
    text = (
        "What Happened\n" + "Someone used a stolen password to read part of our data. " * 6 + "\n\n"
    ) * 8
    start = time.perf_counter()
    for batch in range(0, SAMPLE, 500):
        pdf = printer.new_document()
        for _n in range(batch, min(batch + 500, SAMPLE)):
            printer.letter(pdf, person, text)
        pdf.output(str(out / f"floor-{batch}.pdf"))
    return SAMPLE / (time.perf_counter() - start)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    batch_size = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    from flask_migrate import upgrade

    from portal import ROOT as PORTAL_ROOT
    from portal.extensions import db
    from portal.services import letters

    with scratch_database("bench_letters") as url, tempfile.TemporaryDirectory() as out:
        app = make_app(url)
        with app.app_context():
            upgrade(directory=str(PORTAL_ROOT / "migrations"))
            incident = make_incident()
            make_customers(incident.id, count)
            add_addresses(count)
            db.session.expire_all()
            floor_rate = floor(Path(out))
            db.session.expire_all()
            incident = db.session.merge(incident)
            before = peak_rss_mb()
            reset_peak()
            start = time.perf_counter()
            built, files, _manifest = letters.build(
                incident, out, batch_size=batch_size, actor="bench"
            )
            db.session.commit()
            elapsed = time.perf_counter() - start
            after = peak_rss_mb()
            size = sum(f.stat().st_size for f in files) / 1e6
            assert built == count, (built, count)
            db.session.remove()
            db.engine.dispose()
    rate = built / elapsed
    print(
        f"letters: {built:,} in {len(files)} PDF(s) of {batch_size} ({size:,.0f} MB), "
        f"{elapsed:,.1f} s"
    )
    print(f"floor (fpdf2 alone, {SAMPLE:,} letters): {floor_rate:,.0f} letters/s")
    print(f"portal build: {rate:,.0f} letters/s, ratio to floor {rate / floor_rate:.2f}")
    print(f"peak RSS: {before:,.0f} MB before the build, {after:,.0f} MB during it")


if __name__ == "__main__":
    main()
