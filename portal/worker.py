"""The worker loop behind `portal outbox work` and `portal jobs work`: turns of work, and what it
does when a part it needs is away (docs/operations.md).

A turn is: one pass of due messages (each message its own transaction), one due job, and the
staff contact changes whose hold is over, each step its own unit of work. Between turns the
worker sleeps when there was nothing to do, and pauses with a growing wait (1 s doubling to
OUTBOX_BACKOFF_MAX, with jitter) while the database or a mail server cannot be reached, instead
of exiting: a PostgreSQL restart or failover must not leave the site without anyone to send
its codes. SIGTERM and SIGINT end the loop after the message or job in hand.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app

from portal import unit_of_work
from portal.backoff import jittered
from portal.extensions import db

log = logging.getLogger(__name__)

# How often a running worker looks at the age of the queue (the alert is a log line at most
# this often, and `portal outbox status` exits 1 while it holds).
ALERT_CHECK_SECONDS = 60.0


def database_away(error: BaseException) -> bool:
    """Is this the database being unreachable (restart, failover, network), not a bug of ours?

    An IntegrityError, a bad query or a missing column is a bug: it must still end the worker
    loudly, not be retried for ever (portal.services.readiness.database_unavailable).
    """
    from portal.services.readiness import database_unavailable

    return database_unavailable(error)


@dataclass
class Pause:
    """A growing wait: 1 s, 2 s, 4 s ... up to `cap`, each cut by up to half at random so that
    workers that lost the same server do not come back to it in step."""

    cap: float
    failures: int = 0

    def next(self) -> float:
        self.failures += 1
        return jittered(min(self.cap, 2.0 ** (self.failures - 1)))

    def reset(self) -> None:
        self.failures = 0


class Wakeup:
    """The idle worker's pause: on PostgreSQL it ends as soon as a message is queued (LISTEN on
    the channel outbox.wake_workers notifies at commit), else after `seconds`.

    Why: a code or a sign-in link queued while the worker pauses would otherwise wait out the
    pause (2 s by default) on top of its delivery. The wait is in slices so that a stop request
    is seen within one; it never polls the database. If listening fails (the database away),
    the pause is the plain timed one and listening starts again on the next pause.
    """

    SLICE = 0.5  # seconds: how late a stop request may be seen while waiting

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.connection = None
        self.postgres = db.engine.dialect.name == "postgresql"

    def listen(self) -> None:
        """Start listening now (before the first turn, so a message queued during it counts)."""
        if not self.postgres or self.connection is not None:
            return
        from portal.services.outbox import WAKE_CHANNEL

        try:
            raw = db.engine.raw_connection()  # the engine's connect arguments (keepalives)
            connection = raw.driver_connection
            raw.detach()  # its own, for the worker's life: never back to the pool
            connection.autocommit = True
            connection.execute(f"LISTEN {WAKE_CHANNEL}")
        except Exception as error:  # the database away: the timed pause still works
            log.warning("outbox: cannot listen for new messages (%s)", type(error).__name__)
            return
        self.connection = connection

    def wait(self, seconds: float) -> bool:
        """Pause up to `seconds`; True when a queued message ended it, False otherwise."""
        self.listen()
        if self.connection is None:
            self.stop.wait(seconds)
            return False
        deadline = time.monotonic() + seconds
        try:
            while not self.stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                woken = list(self.connection.notifies(timeout=min(self.SLICE, left), stop_after=1))
                if woken:
                    # Several messages queued meanwhile are one reason to turn, not several.
                    list(self.connection.notifies(timeout=0))
                    return True
        except Exception as error:
            log.warning("outbox: stopped listening for new messages (%s)", type(error).__name__)
            self.close()
            self.stop.wait(max(0.0, deadline - time.monotonic()))
        return False

    def close(self) -> None:
        """Stop listening (the connection ends)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


@dataclass
class Totals:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    expired: int = 0
    jobs: int = 0
    finished: list = field(default_factory=list)  # the jobs run, for `jobs work` to report
    unreachable: dict = field(default_factory=dict)  # kind -> why, as last seen


def turn(transports, stopping: Callable[[], bool]):
    """One turn, each step its own unit of work: a pass of due messages (when transports are
    given), then one due job, then the contact changes whose hold is over. Returns (the pass's
    result or None, the job or None)."""
    from portal.services import background, contact_changes, outbox

    batch = None
    if transports is not None:
        with unit_of_work.unit():
            batch = outbox.deliver_batch(transports, stopping=stopping)
    # One job a turn, also while mail is waiting: a new-link request must not wait for a whole
    # campaign to go out. A long job (an import) holds this worker meanwhile; others go on.
    job = None
    if not stopping():
        with unit_of_work.unit():
            job = background.run_one()
    # A staff contact change that waited out its hold applies on the next turn, not only when
    # someone next acts on that customer.
    with unit_of_work.unit():
        contact_changes.settle_due()
    return batch, job


class Worker:
    """Turns until stopped (or, with `once`, until a turn finds nothing to do)."""

    def __init__(self, transports=None, *, once: bool = False, idle_seconds: float = 2.0):
        self.transports = transports
        self.once = once
        self.idle_seconds = idle_seconds
        self.stop = threading.Event()
        self.pause = Pause(current_app.config["OUTBOX_BACKOFF_MAX_TTL"].total_seconds())
        self.totals = Totals()
        self._alert_checked = 0.0
        self.wakeup = Wakeup(self.stop)

    def handle_signals(self) -> None:
        def stop(*_args):
            self.stop.set()  # finish the message or job in hand, then leave

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self) -> Totals:
        try:
            return self._run()
        finally:
            self.wakeup.close()

    def _run(self) -> Totals:
        if self.transports is not None and not self.once:
            self.wakeup.listen()  # only a worker that sends mail waits for mail to send
        while not self.stop.is_set():
            try:
                batch, job = turn(self.transports, self.stop.is_set)
                self._watch_the_queue()
            except Exception as error:
                if not database_away(error):
                    raise
                self._recover(error)
                if self.once:
                    raise
                self.stop.wait(self.pause.next())
                continue
            self._count(batch, job)
            if batch is not None and batch.unreachable and job is None:
                # A mail server is away: wait before knocking again (no try is counted meanwhile).
                if self.once:
                    break
                self.stop.wait(self.pause.next())
                continue
            self.pause.reset()
            busy = (batch is not None and batch.moved > 0) or job is not None
            if busy:
                continue
            if self.once:
                break
            if self.transports is not None:
                self.wakeup.wait(self.idle_seconds)
            else:
                self.stop.wait(self.idle_seconds)
        return self.totals

    def _count(self, batch, job) -> None:
        if batch is not None:
            for name in ("sent", "retried", "failed", "expired"):
                setattr(self.totals, name, getattr(self.totals, name) + getattr(batch, name))
            self.totals.unreachable.update(batch.unreachable)
        if job is not None:
            self.totals.jobs += 1
            self.totals.finished.append(job)

    def _recover(self, error: BaseException) -> None:
        """Drop the broken transaction and connections; the pool's pre-ping brings new ones."""
        from portal.services.readiness import reason

        log.warning(
            "database unreachable (%s: %s); the worker waits and tries again",
            type(error).__name__,
            reason(error),
        )
        with contextlib.suppress(Exception):
            db.session.rollback()
        with contextlib.suppress(Exception):
            db.session.remove()
        with contextlib.suppress(Exception):
            db.engine.dispose()

    def _watch_the_queue(self) -> None:
        """Now and then, say loudly when a message has waited too long (ALERT in the log)."""
        if self.transports is None or time.monotonic() - self._alert_checked < ALERT_CHECK_SECONDS:
            return
        self._alert_checked = time.monotonic()
        from portal.services import outbox

        with unit_of_work.unit():
            state = outbox.status()
        if state.alert:
            log.error(
                "ALERT outbox: the oldest queued message has waited %d min (alert after %d min)",
                state.waited.total_seconds() // 60,
                state.alert_after.total_seconds() // 60,
            )
