"""One queue of jobs and one worker loop: every job runs once, a dead worker's job runs again, a
new-link request outlives a passing failure, and the queue knows its handlers only by name."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal import ROOT
from portal.cli import work_turn
from portal.extensions import db
from portal.models import AuditEvent, Job, OutboxMessage
from portal.services import background
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.services.verification import request_new_link
from tests.conftest import base_env, customer_row, pg_url
from tests.customer_flow import link_path, messages_to

KNOWN = "ann@example.com"


@pytest.fixture
def notified(app, incident, write_csv):
    import_customers(incident, write_csv([customer_row(1, email=KNOWN, phone="")]), actor="test")
    queue_notices(incident, actor="test")
    db.session.commit()


def ask_for_a_new_link(address: str) -> Job:
    """What POST /link/new does, committed as the request's end commits it."""
    request_new_link(address)
    db.session.commit()
    return db.session.scalars(select(Job).order_by(Job.id.desc())).first()


def new_links_to(address: str) -> list:
    return [m for m in messages_to(address) if "new link" in m.row.subject]


def first_run_interrupted(kind: str, monkeypatch, error: BaseException) -> None:
    """The handler of kind raises error on its first run, then does its real work."""
    real = background.HANDLERS[kind]
    runs = []

    def run(payload, progress):
        runs.append(1)
        if len(runs) == 1:
            raise error
        return real.run(payload, progress)

    monkeypatch.setitem(background.HANDLERS, kind, background.Registered(run, real.retry))


def test_a_new_link_request_is_a_job_and_its_link_arrives_when_the_worker_runs(app, notified):
    old_link = link_path(KNOWN)
    job = ask_for_a_new_link(KNOWN)
    assert (job.kind, job.status) == ("new_link", "queued")
    assert db.session.scalars(select(OutboxMessage.kind).distinct()).all() == ["email"]

    _batch, ran = work_turn()
    assert (ran.public_id, ran.status) == (job.public_id, "done")
    assert len(new_links_to(KNOWN)) == 1 and link_path(KNOWN) != old_link
    assert work_turn() == (None, None)  # it ran once


def test_a_job_whose_worker_died_is_run_again_once_it_is_stale(app, notified, clock, monkeypatch):
    job = ask_for_a_new_link(KNOWN)
    first_run_interrupted("new_link", monkeypatch, KeyboardInterrupt())  # the process is killed
    with pytest.raises(KeyboardInterrupt):
        work_turn()
    db.session.expire_all()
    assert db.session.get(Job, job.id).status == "running"

    # Another worker leaves it alone while its worker may still be at it ...
    clock.move(background.STALE - timedelta(minutes=1))
    assert work_turn() == (None, None)
    # ... and takes it once it is stale.
    clock.move(timedelta(minutes=2))
    _batch, ran = work_turn()
    assert (ran.public_id, ran.status, ran.attempts) == (job.public_id, "done", 2)
    assert len(new_links_to(KNOWN)) == 1


def test_a_new_link_request_that_fails_is_tried_again_later(app, notified, clock, monkeypatch):
    job = ask_for_a_new_link(KNOWN)
    first_run_interrupted("new_link", monkeypatch, ConnectionError("the database went away"))

    _batch, failed = work_turn()
    assert (failed.public_id, failed.status, failed.attempts) == (job.public_id, "queued", 1)
    assert failed.next_attempt_at > clock.now()
    assert work_turn() == (None, None)  # not before its time
    assert new_links_to(KNOWN) == []

    clock.move_to(failed.next_attempt_at + timedelta(seconds=1))
    _batch, ran = work_turn()
    assert (ran.public_id, ran.status, ran.attempts) == (job.public_id, "done", 2)
    assert len(new_links_to(KNOWN)) == 1


def test_a_new_link_request_that_keeps_failing_ends_failed_and_audited(
    app, notified, clock, monkeypatch
):
    app.config["OUTBOX_MAX_ATTEMPTS"] = 2
    job = ask_for_a_new_link(KNOWN)

    def broken(payload, progress):
        raise ConnectionError("the database went away")

    monkeypatch.setitem(background.HANDLERS, "new_link", background.Registered(broken, True))
    work_turn()
    clock.move(timedelta(hours=2))
    _batch, ran = work_turn()
    assert (ran.public_id, ran.status, ran.attempts) == (job.public_id, "failed", 2)
    assert background.report(ran) == {"error": "ConnectionError"}
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "job.finished")).one()
    assert (event.subject_id, event.outcome) == (job.public_id, "failure")


def test_outbox_work_once_runs_the_jobs_and_delivers_what_they_mail(
    runner, app, notified, smtp_server
):
    sink, controller = smtp_server
    app.config["SMTP_URL"] = f"smtp://{controller.hostname}:{controller.port}"
    ask_for_a_new_link(KNOWN)

    result = runner.invoke(args=["outbox", "work", "--once"])

    assert result.exit_code == 0, result.output
    assert "Sent 2, retrying 0, failed 0, expired 0." in result.output  # the notice, the link
    assert "Ran 1 job(s)." in result.output
    subjects = [email.message_from_bytes(m.content)["Subject"] for m in sink.messages]
    assert sum("new link" in s for s in subjects) == 1


def test_jobs_work_once_runs_jobs_only(runner, app, notified):
    job = ask_for_a_new_link(KNOWN)

    result = runner.invoke(args=["jobs", "work", "--once"])

    assert result.exit_code == 0, result.output
    assert f"Job new_link {job.public_id}: done." in result.output
    assert [m.row.status for m in new_links_to(KNOWN)] == ["queued"]  # for the outbox worker


def fresh_python(*args: str, timeout: int = 300, **kwargs) -> subprocess.Popen:
    """A new interpreter that imports this checkout's portal (not an installed copy)."""
    env = {**os.environ, **kwargs.pop("env", {}), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, **kwargs
    )


def printed(code: str) -> list[str]:
    process = fresh_python("-c", code)
    out = process.communicate(timeout=120)[0]
    assert process.returncode == 0, out
    return out.splitlines()


@pytest.mark.slow
def test_the_queue_knows_its_handlers_by_name_and_nothing_imports_in_a_circle(database_url):
    services = "sorted(n for n in sys.modules if n.startswith('portal.services.'))"
    lines = printed(
        "import sys\n"
        "from portal import create_app\n"
        "from portal.services import background\n"
        f"print({services})\n"
        "print(sorted(background.HANDLERS))\n"
        f"create_app({base_env(database_url)!r})\n"
        "print(sorted(background.HANDLERS))\n"
    )
    # The queue alone loads no module that owns a job: it learns them when the app is made.
    assert lines[0] == str(["portal.services.audit", "portal.services.background"])
    assert lines[1] == "[]"
    assert lines[2] == str(
        [
            "build_letters",
            "import_customers",
            "new_link",
            "notify_update",
            "retention",
            "send_notices",
            "validate_import",
        ]
    )
    # The outbox knows neither the queue nor the work: verification uses both, nothing uses it.
    # (It signs the links of a templated message when it sends it: tokens, a leaf, is all.)
    (outbox_alone,) = printed(f"import sys, portal.services.outbox\nprint({services})")
    assert outbox_alone == str(
        ["portal.services.audit", "portal.services.outbox", "portal.services.tokens"]
    )
    (verification,) = printed(f"import sys, portal.services.verification\nprint({services})")
    assert "portal.services.verification" in verification


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.skipif(not pg_url(), reason="needs PORTAL_TEST_DATABASE_URL (PostgreSQL)")
def test_two_workers_run_each_of_200_jobs_exactly_once(app, database_url, incident, write_csv):
    count = 200
    rows = [customer_row(n, phone="") for n in range(1, count + 1)]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    for n in range(1, count + 1):
        request_new_link(f"person{n}@example.com")
    db.session.commit()

    command = ("-c", "from portal.cli import main; main()", "jobs", "work", "--once")
    workers = [fresh_python(*command, env=base_env(database_url)) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]

    assert all(w.returncode == 0 for w in workers), outputs
    db.session.expire_all()
    jobs = db.session.scalars(select(Job)).all()
    assert len(jobs) == count
    assert {(j.status, j.attempts) for j in jobs} == {("done", 1)}
    finished = db.session.scalars(
        select(AuditEvent.subject_id).where(AuditEvent.action == "job.finished")
    ).all()
    assert sorted(finished) == sorted(j.public_id for j in jobs)
    # Each customer got one new link: no request ran twice.
    links = db.session.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.dedupe_key.like("newlink:%"))
    )
    assert links == count
    ran_by = [out.count(": done.") for out in outputs]
    assert sum(ran_by) == count
    assert min(ran_by) > 0, f"one worker did nothing: {ran_by}"
