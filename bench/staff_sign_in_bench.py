"""Staff sign-in timing: a wrong password for a real address against an unknown address.

    python bench/staff_sign_in_bench.py [SAMPLES] [DATABASE_URL]      (default 200, SQLite)

Give a PostgreSQL URL (an empty database of your own: its tables are dropped and created) to
measure where the difference was found (AUTH-06). Each sample is what POST /staff/login does
after the form: the service call and the commit the request's edge makes. Real and unknown are
interleaved so drift in the machine's load falls on both. It prints both medians and their
difference; the baseline is the spread of the real address against itself (two halves of its
own samples), so a difference within that is noise.

argon2 runs with small parameters here: both paths verify one hash by design (a dummy one for an
unknown address), and at full cost its tens of milliseconds of scheduler noise on a shared
machine would bury the few milliseconds of database work this measures.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "lantern orchard velvet compass"  # noqa: S105 (a sample, not a credential)


def main() -> None:
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    url = sys.argv[2] if len(sys.argv) > 2 else f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    from flask_migrate import upgrade

    from portal import create_app
    from portal.config import new_data_key
    from portal.extensions import db
    from portal.services import staff

    app = create_app(
        {
            "PORTAL_ENV": "testing",
            "PORTAL_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            "PORTAL_DATA_KEYS": new_data_key(),
            "PORTAL_BASE_URL": "https://portal.example.test",
            "PORTAL_DATABASE_URL": url,
            "PORTAL_ARGON2_TIME_COST": "1",
            "PORTAL_ARGON2_MEMORY_KIB": "1024",
        }
    )
    with app.app_context():
        if db.engine.dialect.name == "postgresql":  # the database given is wiped first
            with db.engine.begin() as connection:
                connection.exec_driver_sql("DROP SCHEMA public CASCADE")
                connection.exec_driver_sql("CREATE SCHEMA public")
        upgrade(directory=str(ROOT / "migrations"))
        link = staff.invite("real.agent@example.com", "agent", actor="bench")
        staff.accept_invitation(link.rsplit("/", 1)[1], PASSWORD, PASSWORD)
        db.session.commit()

        def attempt(address: str) -> float:
            start = time.perf_counter()
            with contextlib.suppress(staff.SignInFailed):
                staff.sign_in(address, "not the password at all")
            db.session.commit()  # the edge commits a request it answered
            elapsed = time.perf_counter() - start
            # Never let the account lock: a locked real account is another path.
            member = staff.by_email("real.agent@example.com")
            member.failed_logins, member.locked_until = 0, None
            db.session.commit()
            return elapsed

        for _ in range(10):  # warm the pool, the caches and argon2's memory
            attempt("real.agent@example.com")
            attempt("nobody@example.com")
        real, unknown = [], []
        for n in range(samples):
            # Alternate which goes first, so neither always follows the reset's commit.
            pair = (("r", "real.agent@example.com"), ("u", "nobody@example.com"))
            for kind, address in pair if n % 2 else pair[::-1]:
                (real if kind == "r" else unknown).append(attempt(address))
        db.engine.dispose()

    ms = 1000
    real_median, unknown_median = statistics.median(real), statistics.median(unknown)
    noise = abs(statistics.median(real[::2]) - statistics.median(real[1::2]))
    print(f"database: {url.split(':', 1)[0]}")
    print(f"samples: {samples} each")
    print(f"real address, wrong password: median {real_median * ms:.2f} ms")
    print(f"unknown address:              median {unknown_median * ms:.2f} ms")
    print(f"difference (real - unknown):  {(real_median - unknown_median) * ms:+.2f} ms")
    print(f"baseline (real against itself): {noise * ms:.2f} ms")


if __name__ == "__main__":
    main()
