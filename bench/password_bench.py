"""Password benchmark: one argon2id hash and verify with the portal's parameters, and resets/s.

    python bench/password_bench.py [RESETS]      (default 50)

The baseline, in the same run, is argon2-cffi's own default parameters (64 MiB, 3 passes,
4 lanes); the ratio says how much cheaper the portal's (OWASP's floor) are. "Resets per second"
runs the whole password change (rules, common-password list, previous-password check, hash,
session rotation, notice and audit in the database) one after another on one core.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    resets = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    from argon2 import PasswordHasher
    from flask_migrate import upgrade

    from portal import create_app
    from portal.config import new_data_key
    from portal.extensions import db
    from portal.models import Customer
    from portal.services import passwords, sessions
    from portal.services.incidents import create_incident
    from portal.services.outbox import Transports  # noqa: F401 (imports the mail stack up front)

    folder = tempfile.mkdtemp()
    app = create_app(
        {
            "PORTAL_ENV": "testing",
            "PORTAL_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            "PORTAL_DATA_KEYS": new_data_key(),
            "PORTAL_BASE_URL": "https://portal.example.test",
            "PORTAL_DATABASE_URL": f"sqlite:///{folder}/bench.db",
        }
    )
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        create_incident(
            slug="bench", title="Bench incident", discovered_on=date(2026, 1, 1), actor="bench"
        )
        customer = Customer(external_id="B-1", locale="en", region="US-CA")
        customer.name = "Bench Person"
        customer.email = "bench.person@example.com"
        customer.email_index = b"\0" * 16
        db.session.add(customer)
        db.session.commit()

        config = app.config
        portal_hasher = passwords.hasher()
        default_hasher = PasswordHasher()
        secret = "correct horse battery staple"  # noqa: S105 (a sample, not a credential)
        portal_hash = portal_hasher.hash(secret)
        default_hash = default_hasher.hash(secret)
        hash_s = _timed(lambda: portal_hasher.hash(secret), 20)
        verify_s = _timed(lambda: portal_hasher.verify(portal_hash, secret), 20)
        base_hash_s = _timed(lambda: default_hasher.hash(secret), 10)
        base_verify_s = _timed(lambda: default_hasher.verify(default_hash, secret), 10)

        token = sessions.open_session(customer, verified_at=customer.created_at)
        start = time.perf_counter()
        for n in range(resets):
            new = f"{secret} number {n} of the bench run"
            token = passwords.change_password(customer, new, new, keep_token=token)
        reset_s = (time.perf_counter() - start) / resets

    params = (
        f"m={config['ARGON2_MEMORY_KIB']} KiB, t={config['ARGON2_TIME_COST']}, "
        f"p={config['ARGON2_PARALLELISM']}"
    )
    print(f"argon2id, portal ({params}):")
    print(f"  hash   {hash_s * 1000:7.1f} ms    verify {verify_s * 1000:7.1f} ms")
    print("argon2id, argon2-cffi default (m=65536 KiB, t=3, p=4), the baseline:")
    print(f"  hash   {base_hash_s * 1000:7.1f} ms    verify {base_verify_s * 1000:7.1f} ms")
    print(f"ratio portal/default hash time: {hash_s / base_hash_s:.2f}")
    print(f"whole reset: {reset_s * 1000:.1f} ms -> {1 / reset_s:.1f} resets per second, one core")


if __name__ == "__main__":
    main()
