"""The portal's one clock: every service, view and token reads the time through `now()`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def system_time() -> datetime:
    """The machine's time, aware, in UTC."""
    return datetime.now(UTC)


# The one replaceable source. Only the tests' `clock` fixture swaps it (real time plus an
# offset it moves); callers look it up at call time, so nothing holds a copy to patch.
source: Callable[[], datetime] = system_time


def now() -> datetime:
    """The current time, aware, in UTC."""
    return source()
