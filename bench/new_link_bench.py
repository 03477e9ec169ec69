"""'Send me a new link' timing: a known and an unknown address, measured side by side.

    python bench/new_link_bench.py [SAMPLES]      (default 200 of each)

The requests are interleaved in random order (no drift or warm-up favours one) and compared
with a two-sided Mann-Whitney U test; each is also the other's baseline. The suite checks the
cause instead (tests/test_new_link.py: both run the same statements, the request never looks
the address up); this measures the effect.
"""

from __future__ import annotations

import csv
import math
import random
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KNOWN = "ann@example.com"
UNKNOWN = "nobody.here@example.com"


def mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, tie-corrected)."""
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(pooled)
    i = 0
    ties = 0.0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    n1, n2 = len(a), len(b)
    r1 = sum(r for r, (_v, group) in zip(ranks, pooled, strict=True) if group == 0)
    u = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    z = (u - n1 * n2 / 2) / sigma
    return math.erfc(abs(z) / math.sqrt(2))


def _check_the_statistic() -> None:
    """The statistic sees a real difference and none where there is none."""
    same = [0.001 + (i % 7) * 1e-5 for i in range(200)]
    slower = [v + 2e-4 for v in same]
    assert mann_whitney_p(same, list(reversed(same))) > 0.5
    assert mann_whitney_p(same, slower) < 1e-6


def _timings(client, samples: int) -> tuple[list[float], list[float]]:
    known, unknown = [], []
    order = random.Random(samples)
    for _ in range(samples):
        pair = [(KNOWN, known), (UNKNOWN, unknown)]
        order.shuffle(pair)
        for address, sink in pair:
            start = time.perf_counter()
            response = client.post("/link/new", data={"email": address})
            sink.append(time.perf_counter() - start)
            assert response.status_code == 302, response.status_code
    return known, unknown


def main() -> None:
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    _check_the_statistic()
    from flask_migrate import upgrade

    from portal import create_app
    from portal.config import new_data_key
    from portal.extensions import limiter
    from portal.services.imports import import_customers
    from portal.services.incidents import create_incident

    folder = Path(tempfile.mkdtemp())
    app = create_app(
        {
            "PORTAL_ENV": "testing",
            "PORTAL_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            "PORTAL_DATA_KEYS": new_data_key(),
            "PORTAL_BASE_URL": "https://portal.example.test",
            "PORTAL_DATABASE_URL": f"sqlite:///{folder}/bench.db",
        }
    )
    # A benchmark, not a test: no CSRF form round trip and no rate limit in the measured path.
    app.config["WTF_CSRF_ENABLED"] = False
    limiter.enabled = False
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        incident = create_incident(
            slug="bench", title="Bench incident", discovered_on=date(2026, 1, 1), actor="bench"
        )
        path = folder / "customers.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["external_id", "full_name", "email", "phone", "locale", "region", "data_classes"]
            )
            writer.writerow(["B-1", "Ann Bench", KNOWN, "", "en", "US-CA", "email_address"])
        import_customers(incident, path, actor="bench")

    client = app.test_client()
    _timings(client, 20)  # warm up
    known, unknown = _timings(client, samples)
    p = mann_whitney_p(known, unknown)
    print(f"POST /link/new, {samples} of each, interleaved:")
    print(f"  known address    median {statistics.median(known) * 1000:7.2f} ms")
    print(f"  unknown address  median {statistics.median(unknown) * 1000:7.2f} ms")
    print(f"ratio known/unknown: {statistics.median(known) / statistics.median(unknown):.3f}")
    verdict = "no measurable difference" if p > 0.01 else "the timings differ"
    print(f"Mann-Whitney p = {p:.4f}: {verdict} (at 1%, one run in a hundred is a false alarm)")


if __name__ == "__main__":
    main()
