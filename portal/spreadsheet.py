"""What every CSV the portal writes for people to open in a spreadsheet has in common."""

from __future__ import annotations

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection: a name of
# "=HYPERLINK(...)" in an export would run on the provider's or the mail house's machine).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def cell(value: str) -> str:
    """`value` as a cell a spreadsheet shows as text, never runs."""
    return "'" + value if value.startswith(_FORMULA) else value
