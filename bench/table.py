"""One table for `make bench`: each figure beside the floor measured in the same run.

A benchmark module offers `measure(size) -> list[Row]`, where size is "quick" (a few minutes on
two cores, all benchmarks together) or "full" (the issue's volumes: a million rows). `bench/run.py`
calls each and prints the rows as one table. The floor is the same work done by the simplest
code that could do it (a raw INSERT, a bare smtplib loop, Flask's hello world), run in the same
process and, where it matters, interleaved with the portal's runs, so that the ratio says what
the portal costs and not how busy the machine was.
"""

from __future__ import annotations

from dataclasses import dataclass

SIZES = ("quick", "full")


@dataclass(frozen=True)
class Row:
    figure: str  # what was measured, e.g. "import, PostgreSQL, 1,000,000 rows"
    value: float
    unit: str  # "rows/s", "req/s", "ms", "MB", "x"
    floor: float | None = None  # the same work by the simplest code, same run, same unit
    target: str = ""  # as a person reads it: "ratio >= 0.5", ">= 20,000 rows/s", "< 200 MB"
    met: bool | None = None  # None: reported only

    @property
    def ratio(self) -> float | None:
        if not self.floor:
            return None
        return self.value / self.floor


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def render(rows: list[Row]) -> str:
    """The rows as a Markdown table (it reads as plain text too)."""
    header = ("figure", "value", "floor (same run)", "ratio", "target", "")
    body = [
        (
            row.figure,
            _number(row.value, row.unit),
            _number(row.floor, row.unit) if row.floor is not None else "—",
            _number(row.ratio) if row.ratio is not None else "—",
            row.target or "reported",
            {True: "met", False: "MISSED", None: ""}[row.met],
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(cells) for cells in body)])
