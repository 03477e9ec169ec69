"""Two imports, or two notice runs, for one incident at once: the second waits (a worker's job)
or says so and changes nothing (a command); never a traceback, never a half-done run."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, select, text

from portal import ROOT, unit_of_work
from portal.extensions import db
from portal.models import Customer, Job, Notice, OutboxMessage
from portal.services import background, runs
from portal.services.imports import import_customers
from tests.approval_flow import approve_campaign
from tests.conftest import base_env, customer_row, pg_url

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not pg_url(), reason="PostgreSQL only: SQLite lets one writer in at a time by itself"
    ),
]

BUSY = {
    "import": "Another import into incident acme-2026 is running. Nothing was imported",
    "notices": "Notices for incident acme-2026 are being queued by another run. Nothing was "
    "queued by this one",
}


def count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model))


def committed_customers(incident, write_csv, n: int = 3):
    import_customers(incident, write_csv([customer_row(i) for i in range(1, n + 1)]), actor="t")
    approve_campaign(incident)
    unit_of_work.commit()


def test_an_import_while_another_runs_says_so_and_writes_nothing(runner, incident, write_csv):
    unit_of_work.commit()
    path = write_csv([customer_row(1), customer_row(2)])

    with runs.held(runs.IMPORT, incident.id):  # another import, in another process
        result = runner.invoke(args=["customers", "import", "--incident", "acme-2026", str(path)])

    assert result.exit_code == 1
    assert BUSY["import"] in result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    assert count(Customer) == 0
    result = runner.invoke(args=["customers", "import", "--incident", "acme-2026", str(path)])
    assert result.exit_code == 0, result.output  # once it is over, the same command works


def test_notices_sent_while_another_run_queues_them_says_so_and_queues_nothing(
    runner, incident, write_csv
):
    committed_customers(incident, write_csv)

    with runs.held(runs.NOTICES, incident.id):
        result = runner.invoke(args=["notices", "send", "--incident", "acme-2026"])

    assert result.exit_code == 1
    assert BUSY["notices"] in result.output
    assert (count(Notice), count(OutboxMessage)) == (0, 0)
    result = runner.invoke(args=["notices", "send", "--incident", "acme-2026"])
    assert "Queued 3 notice(s)." in result.output


def test_a_campaign_job_goes_after_the_other_run_then_queues_what_is_left(
    app, incident, write_csv, clock
):
    committed_customers(incident, write_csv)
    job = background.submit("send_notices", {"incident_id": incident.id, "actor": "t"}, actor="t")
    unit_of_work.commit()
    other, incident_id = create_engine(pg_url()), incident.id
    held, release = threading.Event(), threading.Event()

    def other_run():
        with other.connect() as connection:
            params = {"operation": runs.NOTICES, "incident": incident_id}
            connection.execute(text("SELECT pg_advisory_lock(:operation, :incident)"), params)
            held.set()
            release.wait(30)
            connection.execute(text("SELECT pg_advisory_unlock(:operation, :incident)"), params)

    thread = threading.Thread(target=other_run)
    thread.start()
    assert held.wait(30)
    waiting = background.run_one()  # the other run holds the lock: back to the queue, later
    unit_of_work.commit()
    assert (waiting.status, waiting.attempts) == ("queued", 0)
    assert waiting.next_attempt_at > clock.now() and count(Notice) == 0
    release.set()  # the other run ends
    thread.join()
    other.dispose()
    clock.move(timedelta(minutes=1))
    background.run_one()
    unit_of_work.commit()

    db.session.expire_all()
    assert db.session.get(Job, job.id).status == "done"
    assert count(Notice) == 3


def _cli(env: dict, *args: str) -> subprocess.Popen:
    code = "import sys; from portal.cli import main; sys.argv[0] = 'portal'; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["import", "notices"])
def test_two_commands_at_once_one_runs_the_other_says_so(
    database_url, incident, write_csv, command
):
    rows = 4000
    path = write_csv([customer_row(n, phone="") for n in range(1, rows + 1)])
    if command == "notices":
        import_customers(incident, path, actor="t")
        approve_campaign(incident)
    unit_of_work.commit()
    args = {
        "import": ["customers", "import", "--incident", "acme-2026", str(path)],
        "notices": ["notices", "send", "--incident", "acme-2026"],
    }[command]
    env = base_env(database_url)

    processes = [_cli(env, *args), _cli(env, *args)]
    outputs = [process.communicate(timeout=300)[0] for process in processes]

    for process, output in zip(processes, outputs, strict=True):
        assert "Traceback" not in output
        assert process.returncode == 0 or (process.returncode == 1 and BUSY[command] in output), (
            output
        )
    assert 0 in [process.returncode for process in processes]
    assert count(Customer) == rows
    if command == "notices":
        assert (count(Notice), count(OutboxMessage)) == (rows, rows)
