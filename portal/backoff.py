"""When to try again: one rule for a message that did not go and a job that failed."""

from __future__ import annotations

import random
from datetime import timedelta

from flask import current_app


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with jitter: about base * 2^(attempts-1), at most the cap."""
    config = current_app.config
    base = config["OUTBOX_RETRY_BASE_TTL"].total_seconds()
    cap = config["OUTBOX_RETRY_MAX_TTL"].total_seconds()
    delay = min(cap, base * 2 ** (attempts - 1))
    # Jitter spreads retries so that a recovered server is not hit by every worker at once;
    # it needs no unpredictability, so the plain generator is right here.
    return timedelta(seconds=delay * random.uniform(0.5, 1.0))  # noqa: S311


def jittered(seconds: float) -> float:
    """`seconds` cut by up to half at random: workers that lost the same server (or database)
    do not all come back to it at the same moment."""
    return seconds * random.uniform(0.5, 1.0)  # noqa: S311 (spread, not a secret)
