"""The notice-day herd (bench/herd.py) walks the portal's real way in, and counts what goes wrong.

A small herd, in this process: the portal served over HTTP by werkzeug, the outbox worker in a
thread delivering to the herd's own SMTP sink, and the herd's people reading their links and
codes from it. The benchmark runs the same code against gunicorn; this keeps its path true to
the portal's pages (a renamed route, a new form field, a changed redirect or message would
make every person of the herd fail, and these tests with them).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import pytest
from aiosmtpd.controller import Controller
from werkzeug.serving import make_server

from bench import herd
from bench.herd_sink import Sink
from portal.mail.smtp import SMTPTransport
from portal.services.outbox import Transports
from tests.approval_flow import approve_campaign
from tests.conftest import BASE_URL, base_env, free_port

PEOPLE = 4


@pytest.fixture
def env(database_url):
    # Behind one proxy, as the benchmark runs the portal: each person's own address counts.
    return base_env(database_url, PORTAL_PROXY_HOPS="1")


@dataclass
class Site:
    port: int
    mailbox: herd.Mailbox
    links: dict[str, str]


def _keep_working(app, transports, stopped: threading.Event, workers: list) -> None:
    from portal.worker import Worker

    with app.app_context():
        worker = Worker(transports, idle_seconds=0.05)
        worker.stop = stopped
        workers.append(worker)
        worker.run()


@pytest.fixture
def site(app, runner, incident, tmp_path):
    """PEOPLE noticed customers (the herd's own), the portal serving, mail reaching the sink."""
    customers = tmp_path / "customers.csv"
    herd._write_customers(customers, range(PEOPLE))
    for args in (
        ["customers", "import", "--incident", incident.slug, str(customers)],
        ["notices", "send", "--incident", incident.slug],
    ):
        if args[0] == "notices":
            approve_campaign(incident)
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output

    reading, writing = os.pipe()
    out, incoming = os.fdopen(writing, "w"), os.fdopen(reading)
    mailbox = herd.Mailbox(incoming)
    controller = Controller(Sink(BASE_URL, out), hostname="127.0.0.1", port=free_port())
    controller.start()
    transports = Transports(email=SMTPTransport(f"smtp://127.0.0.1:{controller.port}"))
    stopped, workers = threading.Event(), []
    worker = threading.Thread(target=_keep_working, args=(app, transports, stopped, workers))
    worker.start()
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    try:
        deadline = time.monotonic() + 30
        while mailbox.link_count() < PEOPLE and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mailbox.link_count() == PEOPLE, "the notices did not reach the sink"
        yield Site(server.server_port, mailbox, dict(mailbox.links))
    finally:
        server.shutdown()
        serving.join()
        stopped.set()
        worker.join()
        transports.close()
        controller.stop()
        out.close()  # the mailbox reads to the end, then stops
        mailbox.reader.join()
        incoming.close()


def test_each_person_of_a_small_herd_walks_from_the_notice_link_to_the_plan(site):
    result = herd.herd(range(PEOPLE), 2, 60, site.links, site.mailbox, site.port)

    tally = result.tally
    assert dict(tally.errors) == {}
    assert (tally.started, tally.verified, tally.finished) == (PEOPLE, PEOPLE, PEOPLE)
    assert {step: len(times) for step, times in tally.timings.items()} == {
        step: PEOPLE for step in herd.STEPS
    }
    # Every code came through the sink, after the button that asked for it.
    assert len(tally.delays) == PEOPLE and all(delay >= 0 for delay in tally.delays)
    table = {row.figure.split(" (")[0]: row for row in herd.rows(result)}
    assert table["herd: errors"].value == 0 and table["herd: errors"].met is True


def test_an_error_page_counts_with_its_status_and_ends_that_persons_walk(site):
    links = dict(site.links)
    links[herd.email_of(1)] = "/a/not-a-link-we-signed"

    result = herd.herd(range(3), 2, 60, links, site.mailbox, site.port)

    tally = result.tally
    assert dict(tally.errors) == {("link page", "404"): 1}
    assert (tally.started, tally.verified, tally.finished) == (3, 2, 2)
    errors = next(row for row in herd.rows(result) if row.figure.startswith("herd: errors"))
    assert errors.value == 1 and errors.met is False
    assert "link page 404 x1" in errors.figure
    finished = next(row for row in herd.rows(result) if "whole path" in row.figure)
    assert finished.value == 2 and finished.met is False


def test_a_person_whose_code_never_comes_is_an_error_not_a_wait_for_ever(site, monkeypatch):
    monkeypatch.setattr(herd, "CODE_PATIENCE_S", 0.0)
    mailbox = herd.Mailbox(iter(()))  # a sink that receives nothing

    result = herd.herd(range(1), 1, 60, site.links, mailbox, site.port)

    assert dict(result.tally.errors) == {("code", "no code in the sink within 0 s"): 1}
    assert result.tally.verified == 0


def test_people_without_a_link_in_hand_walk_once_their_notice_reaches_the_sink(site):
    # As with --while-sending: nobody is handed a link; each reads it from their own notice.
    result = herd.herd(range(PEOPLE), 2, 60, None, site.mailbox, site.port)

    assert dict(result.tally.errors) == {}
    assert result.tally.finished == PEOPLE


def test_a_person_whose_notice_never_comes_is_an_error_not_a_wait_for_ever(site, monkeypatch):
    monkeypatch.setattr(herd, "NOTICE_PATIENCE_S", 0.0)
    mailbox = herd.Mailbox(iter(()))

    result = herd.herd(range(1), 1, 60, None, mailbox, site.port)

    assert dict(result.tally.errors) == {("link page", "no notice in the sink within 0 s"): 1}
