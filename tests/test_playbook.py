"""The response playbook: a reviewed template every incident's tasks come from, the console's
page of tasks, and overdue tasks on the console's front page."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, PlaybookTask
from portal.services import playbook
from portal.services.demo import load_demo
from portal.services.obligations import catalogue
from tests.customer_flow import csrf_from
from tests.staff_flow import set_up

DUTIES = {d.id for d in catalogue()[1]}


def test_the_playbook_has_every_phase_a_response_needs_with_sources_and_a_version(app):
    t = playbook.template()
    assert [p.id for p in t.phases] == [
        "assess",
        "contain",
        "notify",
        "investigate",
        "remediate",
        "review",
    ]
    assert t.version >= 1 and t.as_of and t.sources and t.reviewed_by
    assert {task.phase for task in t.tasks} == {p.id for p in t.phases}
    # The notify phase carries out the legal duties of the obligations catalogue.
    notify = [task for task in t.tasks if task.phase == "notify"]
    assert {"gdpr-authority", "gdpr-individuals"} <= {d for task in notify for d in task.duties}


GOOD = """
version = 2
as_of = "2026-11-28"
reviewed_by = "Counsel"
sources = ["NIST SP 800-61r3"]
[[phases]]
id = "assess"
name = "Assess"
[[tasks]]
id = "a"
phase = "assess"
title = "Look"
owner = "security"
due_hours = 24
source = "NIST"
"""


@pytest.mark.parametrize(
    "change, reason",
    [
        (('owner = "security"', 'owner = "janitor"'), "unknown owner role"),
        (('phase = "assess"', 'phase = "later"'), "unknown phase"),
        (("due_hours = 24", "due_hours = 0"), "no due time"),
        (('source = "NIST"', 'source = ""'), "no due time, title or source"),
        (('sources = ["NIST SP 800-61r3"]', "sources = []"), "no source"),
        (("due_hours = 24", 'due_hours = 24\nduties = ["made-up"]'), "unknown duties"),
        (('reviewed_by = "Counsel"\n', ""), "missing or mistypes"),
    ],
)
def test_a_broken_playbook_is_refused_with_its_reason(change, reason):
    assert playbook.parse(GOOD, DUTIES).tasks[0].owner == "security"
    with pytest.raises(ValueError, match=reason):
        playbook.parse(GOOD.replace(*change), DUTIES)


def test_a_broken_playbook_file_stops_the_app_with_a_clear_message(
    env, make_app, tmp_path, monkeypatch
):
    broken = tmp_path / "playbook.toml"
    broken.write_text(GOOD.replace('owner = "security"', 'owner = "nobody"'), encoding="utf-8")
    monkeypatch.setattr(playbook, "TEMPLATE", broken)
    playbook.template.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"The playbook .* is not valid: task a"):
            make_app(env)
    finally:
        playbook.template.cache_clear()


@pytest.fixture
def demo(app):
    load_demo(actor="test")
    db.session.commit()


def _tasks_page(client, slug="acme-2026") -> str:
    page = client.get(f"/admin/incidents/{slug}/playbook")
    assert page.status_code == 200
    return page.get_data(as_text=True)


def test_the_demo_incidents_tasks_appear_with_their_owners_and_due_times(app, demo, client, clock):
    set_up(app, client, "boss@example.com", "admin", clock)
    text = _tasks_page(client)
    for task in playbook.template().tasks:
        block = re.search(rf'<li id="task-{task.id}".*?</li>', text, re.S)
        assert block, task.id
        assert task.title in block[0]
        # Due times count from the discovery date, 9 October 2026.
        due = datetime(2026, 10, 9, tzinfo=UTC) + playbook.timedelta(hours=task.due_hours)
        assert due.strftime("%Y-%m-%d %H:%M") in block[0]
    assert "Owner: Security" in text and "Owner: Legal" in text and "Owner: Support lead" in text


def test_an_overdue_task_is_on_the_console_front_page_until_it_is_done(app, demo, client, clock):
    set_up(app, client, "boss@example.com", "admin", clock)
    clock.move_to(datetime(2026, 10, 10, 12, tzinfo=UTC))  # a day and a half after discovery
    front = client.get("/admin/").get_data(as_text=True)
    assert "Playbook tasks overdue" in front
    assert "Establish what data was exposed" in front  # 24 hours: overdue
    assert "Judge the impact" not in front  # 48 hours: not yet

    page = client.get("/admin/incidents/acme-2026/playbook")
    response = client.post(
        "/admin/incidents/acme-2026/playbook/assess-data",
        data={
            "assess-data-csrf_token": csrf_from(page),
            "assess-data-status": "done",
            "assess-data-notes": "Customer table and the CRM export.",
        },
    )
    assert response.status_code == 302
    assert "Establish what data was exposed" not in client.get("/admin/").get_data(as_text=True)
    text = _tasks_page(client)
    block = re.search(r'<li id="task-assess-data".*?</li>', text, re.S)[0]
    assert "Customer table and the CRM export." in block and "overdue" not in block
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "playbook.task_updated")
    ).one()
    assert '"to":"done"' in event.details and event.subject_id == "acme-2026"


def test_a_task_update_needs_the_csrf_token_and_a_known_status(app, demo, client, clock):
    set_up(app, client, "boss@example.com", "admin", clock)
    url = "/admin/incidents/acme-2026/playbook/assess-data"
    assert client.post(url, data={"assess-data-status": "done"}).status_code == 400
    page = client.get("/admin/incidents/acme-2026/playbook")
    token = csrf_from(page)
    bad = client.post(url, data={"assess-data-csrf_token": token, "assess-data-status": "maybe"})
    assert bad.status_code == 302
    assert db.session.scalar(select(PlaybookTask)) is None
    unknown = client.post(
        "/admin/incidents/acme-2026/playbook/no-such-task",
        data={"no-such-task-csrf_token": token, "no-such-task-status": "done"},
    )
    assert unknown.status_code == 404


def test_an_agent_cannot_open_or_update_the_playbook(app, demo, client, clock):
    set_up(app, client, "agent@example.com", "agent", clock)
    assert client.get("/admin/incidents/acme-2026/playbook").status_code == 403


def test_only_the_owner_role_or_an_admin_may_update_a_task(app, demo):
    from portal.models import Incident

    incident = db.session.scalar(select(Incident))

    class Member:
        public_id = "x" * 32

        def __init__(self, *roles):
            self.roles = roles

        def has_role(self, role):
            return role in self.roles

    with pytest.raises(playbook.PlaybookError, match="owner role or an admin"):
        playbook.update_task(
            incident, "assess-impact", status="done", notes="", member=Member("security")
        )
    playbook.update_task(
        incident, "assess-data", status="not_needed", notes="", member=Member("security")
    )
    playbook.update_task(incident, "assess-impact", status="done", notes="", member=Member("admin"))
    statuses = {t.id: t.status for t in playbook.tasks_for(incident)}
    assert statuses["assess-data"] == "not_needed" and statuses["assess-impact"] == "done"


def test_a_notify_task_shows_the_legal_duties_it_carries_out_and_their_state(
    app, demo, client, clock
):
    set_up(app, client, "boss@example.com", "admin", clock)
    clock.move_to(datetime(2026, 10, 20, tzinfo=UTC))
    text = _tasks_page(client)
    block = re.search(r'<li id="task-notify-regulators".*?</li>\s*</ul>', text, re.S)[0]
    # The demo has a reader in Germany: the GDPR's 72 hours apply, and have run out.
    assert "GDPR: notify the lead supervisory authority" in block
    assert "Overdue" in block
    assert "UK GDPR" not in block  # nobody in the United Kingdom: the ICO duty does not apply
