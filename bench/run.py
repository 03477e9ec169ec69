"""`make bench`: every benchmark, each beside its floor from the same run, as one table.

    python bench/run.py [--quick | --full] [NAME ...]

--quick (the default) finishes in a few minutes on two cores; --full runs the issue's volumes (a
million rows) and takes longer. NAME picks benchmarks by module name (e.g. `pages import`).
Each benchmark module offers `measure(size) -> list[bench.table.Row]`; its own `main()` still
runs it alone with more detail.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.table import SIZES, Row, render  # noqa: E402

# In the order the table reads: what a person waits for first, then the bulk paths.
BENCHMARKS = {
    "pages": "bench.pages_bench",
    "import": "bench.import_bench",
    "queue": "bench.queue_bench",
    "outbox": "bench.outbox_bench",
    "herd": "bench.herd",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", dest="size", action="store_const", const="quick")
    group.add_argument("--full", dest="size", action="store_const", const="full")
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], metavar="NAME")
    args = parser.parse_args(argv)
    size = args.size or "quick"
    assert size in SIZES
    rows: list[Row] = []
    started = time.perf_counter()
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(BENCHMARKS[name])
        print(f"== {name} ({size})", flush=True)
        measured = module.measure(size)
        print(render(measured), flush=True)
        rows.extend(measured)
    print(f"\n== make bench --{size}: {time.perf_counter() - started:.0f} s on this machine\n")
    print(render(rows))
    return 1 if any(row.met is False for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
