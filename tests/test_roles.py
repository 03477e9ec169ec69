"""Roles: a staff member holds several; each route says which roles may use it; the four-eyes
rule on the console pages (communications drafts, legal approves, then it goes out)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Approval, AuditEvent, IncidentUpdate, Notice, OutboxMessage
from portal.models.staff import STAFF_ROLES
from portal.services import background
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.web.access import STAFF, access_of
from tests.conftest import customer_row
from tests.customer_flow import csrf_from
from tests.staff_flow import confirm_it_is_you, member, set_up

STALE = 6 * 60  # seconds: older than the five minutes a sensitive act allows

# Who may use the routes this work added (the walk below checks every staff route's roles).
EXPECTED = {
    "admin.approval_list": {"admin", "legal", "communications", "security", "support_lead"},
    "admin.approval": {"admin", "legal", "communications", "security", "support_lead"},
    "admin.approve": {"legal"},
    "admin.override": {"admin"},
    "admin.campaign_submit": {"admin"},
    "admin.letters_submit": {"admin"},
    "admin.update_submit": {"communications", "admin"},
    "admin.incident_updates": {"admin", "communications", "legal"},
    "admin.new_update": {"communications"},
    "admin.edit_update": {"communications", "admin"},
    "admin.publish_update": {"communications", "admin"},
    "admin.correct_update": {"admin"},
    "admin.set_roles": {"admin"},
    "admin.campaign_confirm": {"admin", "legal"},
    "admin.campaign_act": {"admin"},
    "admin.console": {"admin"},
    "staff.queue": {"agent", "admin", "support_lead"},
    "staff.reauth": set(STAFF_ROLES),
}


def test_every_staff_route_names_known_roles_and_the_new_ones_name_the_right_ones(app):
    declared = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if access_of(view) == STAFF:
            roles = set(view.roles)
            assert roles and roles <= set(STAFF_ROLES), rule.endpoint
            declared[rule.endpoint] = roles
    for endpoint, roles in EXPECTED.items():
        assert declared[endpoint] == roles, endpoint


@pytest.fixture
def team(app, clock):
    """Four people in four browsers: an admin, a second admin, communications, legal."""
    people = {}
    for name, role, extra in (
        ("admin", "admin", ()),
        ("admin2", "admin", ()),
        ("comms", "communications", ()),
        ("legal", "legal", ()),
    ):
        client = app.test_client()
        set_up(app, client, f"{name}@example.com", role, clock, roles=extra)
        people[name] = client
    return people


def test_a_member_without_a_desk_role_lands_on_the_approvals_and_reaches_no_console(team):
    legal = team["legal"]
    page = legal.get("/admin/approvals")
    assert page.status_code == 200 and "Waiting for legal" in page.get_data(as_text=True)
    assert 'href="/staff/cases"' not in page.get_data(as_text=True)
    assert legal.get("/admin/").status_code == 403
    assert legal.get("/staff/cases").status_code == 403
    assert legal.get("/admin/staff").status_code == 403
    assert team["admin"].get("/admin/approvals").status_code == 200


def test_each_member_of_the_team_reaches_the_incidents_response_from_the_approvals(team, incident):
    db.session.commit()
    pages = {name: team[name].get("/admin/approvals").get_data(as_text=True) for name in team}
    for name, page in pages.items():
        for link in ("updates", "playbook", "investigation"):
            path = f"/admin/incidents/acme-2026/{link}"
            assert f'href="{path}"' in page, (name, link)
            assert team[name].get(path).status_code == 200, (name, link)
    report = 'href="/admin/incidents/acme-2026/report"'
    assert report in pages["legal"] and report in pages["admin"]
    assert report not in pages["comms"]  # the report is for admins and legal
    assert team["comms"].get("/admin/incidents/acme-2026/report").status_code == 403


def _draft(comms, title="Forensics finished", body="No further access.", es="Ningún acceso."):
    page = comms.get("/admin/incidents/acme-2026/updates")
    comms.post(
        "/admin/incidents/acme-2026/updates",
        data={"csrf_token": csrf_from(page), "title": title, "body": body, "body_es": es},
    )
    return db.session.scalars(select(IncidentUpdate)).one(), csrf_from(page)


def _published(client) -> str:
    return client.get("/incidents/acme-2026").get_data(as_text=True)


def test_communications_drafts_legal_approves_then_it_is_published(app, team, incident, write_csv):
    import_customers(incident, write_csv([customer_row(1)]), actor="test")
    queue_notices(incident, actor="test")  # announced: the incident has its public page
    db.session.commit()
    comms, legal, admin = team["comms"], team["legal"], team["admin"]
    draft, token = _draft(comms)
    public = app.test_client()

    # An admin alone cannot publish it; nor can communications before legal approved it.
    for client in (admin, comms):
        own = csrf_from(client.get("/admin/incidents/acme-2026/updates"))
        refused = client.post(f"/admin/updates/{draft.id}/publish", data={"csrf_token": own})
        shown = client.get(refused.headers["Location"]).get_data(as_text=True)
        assert "Legal has not approved this exactly as it is now." in shown
    assert "Forensics finished" not in _published(public)
    # An admin cannot approve either: the route is legal's.
    comms.post(f"/admin/updates/{draft.id}/submit", data={"csrf_token": token})
    asked = db.session.scalars(select(Approval)).one()
    own = csrf_from(admin.get("/admin/approvals"))
    refused = admin.post(f"/admin/approvals/{asked.id}/approve", data={"csrf_token": own})
    assert refused.status_code == 403

    page = legal.get("/admin/incidents/acme-2026/updates").get_data(as_text=True)
    assert "Waiting for legal" in page and "Ningún acceso." in page
    review = legal.get(f"/admin/approvals/{asked.id}").get_data(as_text=True)
    assert "No further access." in review and "Ningún acceso." in review  # every language
    legal.post(
        f"/admin/approvals/{asked.id}/approve",
        data={"csrf_token": csrf_from(legal.get("/admin/approvals"))},
    )
    page = comms.get("/admin/incidents/acme-2026/updates").get_data(as_text=True)
    assert "Approved" in page and "legal@example.com" in page

    comms.post(f"/admin/updates/{draft.id}/publish", data={"csrf_token": token})
    assert "Forensics finished" in _published(public)
    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"approval.submitted", "approval.approved", "update.published"} <= actions


def test_a_change_after_approval_returns_the_update_to_draft(app, team, incident):
    comms, legal = team["comms"], team["legal"]
    draft, token = _draft(comms)
    comms.post(f"/admin/updates/{draft.id}/submit", data={"csrf_token": token})
    asked = db.session.scalars(select(Approval)).one()
    legal.post(
        f"/admin/approvals/{asked.id}/approve",
        data={"csrf_token": csrf_from(legal.get("/admin/approvals"))},
    )

    comms.post(
        f"/admin/updates/{draft.id}/edit",
        data={"csrf_token": token, "title": "Forensics finished", "body": "One server was read."},
    )
    page = comms.get("/admin/incidents/acme-2026/updates").get_data(as_text=True)
    assert "Not approved yet" in page and "Ask legal to approve" in page
    refused = comms.post(f"/admin/updates/{draft.id}/publish", data={"csrf_token": token})
    assert "Legal has not approved" in comms.get(refused.headers["Location"]).get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Approval, asked.id).state == "superseded"
    assert db.session.get(IncidentUpdate, draft.id).published_at is None


def test_legal_never_approves_what_they_drafted(app, clock, incident):
    both = app.test_client()
    set_up(app, both, "both@example.com", "communications", clock, roles=("legal",))
    draft, token = _draft(both)
    both.post(f"/admin/updates/{draft.id}/submit", data={"csrf_token": token})
    asked = db.session.scalars(select(Approval)).one()
    answer = both.post(f"/admin/approvals/{asked.id}/approve", data={"csrf_token": token})
    shown = both.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Someone other than the person who drafted it must approve it." in shown
    db.session.expire_all()
    assert db.session.get(Approval, asked.id).state == "pending"


def _people(incident, write_csv):
    rows = [customer_row(1), customer_row(2, locale="es", region="US-TX"), customer_row(3)]
    import_customers(incident, write_csv(rows), actor="t")
    db.session.commit()


def test_legal_approves_the_campaign_with_its_counts_and_messages_then_it_sends(
    app, team, incident, write_csv
):
    admin, legal = team["admin"], team["legal"]
    _people(incident, write_csv)
    page = admin.get("/admin/incidents/acme-2026/campaign/confirm")
    assert "Not approved yet" in page.get_data(as_text=True)
    token = csrf_from(page)
    refused = admin.post(
        "/admin/incidents/acme-2026/campaign/send", data={"csrf_token": token, "expected": "3"}
    )
    assert refused.headers["Location"] == "/admin/incidents/acme-2026/campaign/confirm"
    assert "Legal has not approved" in admin.get(refused.headers["Location"]).get_data(as_text=True)
    asked = admin.post("/admin/incidents/acme-2026/campaign/submit", data={"csrf_token": token})
    review = legal.get(asked.headers["Location"]).get_data(as_text=True)
    # Pinned: per language and region, the count and the message as the preview shows it.
    assert "US-TX" in review and "Notice of Data Breach" in review
    assert re.search(r"<dt>waiting</dt><dd>2</dd>", review) and re.search(
        r"<dt>total</dt><dd>3</dd>", review
    )
    approval_id = int(asked.headers["Location"].rsplit("/", 1)[1])
    legal.post(
        f"/admin/approvals/{approval_id}/approve",
        data={"csrf_token": csrf_from(legal.get("/admin/approvals"))},
    )
    page = admin.get("/admin/incidents/acme-2026/campaign/confirm")
    assert "Approved" in page.get_data(as_text=True)
    started = admin.post(
        "/admin/incidents/acme-2026/campaign/send", data={"csrf_token": token, "expected": "3"}
    )
    assert started.headers["Location"].startswith("/admin/jobs/")
    background.run_one()
    db.session.commit()  # the job's own unit of work, as the worker's loop ends it
    assert len(db.session.scalars(select(Notice)).all()) == 3
    duties = admin.get("/admin/obligations").get_data(as_text=True)
    assert "Notices approved by legal@example.com" in duties  # evidence for the duties


def test_an_emergency_override_takes_two_admins_each_proving_it_again_and_is_loud(
    app, team, incident, write_csv, clock
):
    admin, admin2 = team["admin"], team["admin2"]
    _people(incident, write_csv)
    token = csrf_from(admin.get("/admin/incidents/acme-2026/campaign/confirm"))
    asked = admin.post("/admin/incidents/acme-2026/campaign/submit", data={"csrf_token": token})
    approval_id = int(asked.headers["Location"].rsplit("/", 1)[1])
    clock.tick(STALE)
    stale = admin.post(
        f"/admin/approvals/{approval_id}/override",
        data={"csrf_token": token, "reason": "The regulator's deadline is today at noon"},
    )
    assert stale.headers["Location"].startswith("/staff/reauth")
    confirm_it_is_you(admin, stale, "admin@example.com", clock)
    # The same admin cannot be the second pair of eyes.
    admin.post(f"/admin/approvals/{approval_id}/override", data={"csrf_token": token})
    db.session.expire_all()
    assert db.session.get(Approval, approval_id).state == "pending"
    asked_again = admin2.post(
        f"/admin/approvals/{approval_id}/override",
        data={"csrf_token": csrf_from(admin2.get("/admin/approvals"))},
    )
    confirm_it_is_you(admin2, asked_again, "admin2@example.com", clock)
    db.session.expire_all()
    assert db.session.get(Approval, approval_id).state == "overridden"
    alerts = [m.subject for m in db.session.scalars(select(OutboxMessage))]
    assert "[portal alert] Emergency override confirmed: campaign" in alerts
    page = admin.get(f"/admin/approvals/{approval_id}").get_data(as_text=True)
    assert "admin@example.com, admin2@example.com" in page and "regulator" in page
    token = csrf_from(admin.get("/admin/incidents/acme-2026/campaign/confirm"))
    started = admin.post(
        "/admin/incidents/acme-2026/campaign/send", data={"csrf_token": token, "expected": "3"}
    )
    assert started.headers["Location"].startswith("/admin/jobs/")


def test_the_admin_gives_roles_after_proving_it_again_and_it_is_audited(app, team, clock):
    admin = team["admin"]
    target = member("comms@example.com")
    page = admin.get("/admin/staff")
    assert 'name="role_legal" value="yes"' in page.get_data(as_text=True)
    token = csrf_from(page)
    clock.tick(STALE)
    asked = admin.post(
        f"/admin/staff/{target.public_id}/roles",
        data={"csrf_token": token, "role_communications": "yes", "role_security": "yes"},
    )
    assert asked.status_code == 302, asked.get_data(as_text=True)[-3000:]
    assert asked.headers["Location"].startswith("/staff/reauth")
    assert member("comms@example.com").roles == ("communications",)
    confirm_it_is_you(admin, asked, "admin@example.com", clock)
    assert member("comms@example.com").roles == ("communications", "security")
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "staff.roles_changed")
    ).one()
    assert '"after":["communications","security"]' in event.details
    # Never the admin role away from oneself (nobody could give it back).
    me = member("admin@example.com")
    answer = admin.post(
        f"/admin/staff/{me.public_id}/roles", data={"csrf_token": token, "role_legal": "yes"}
    )
    assert "You cannot take the admin role" in admin.get(answer.headers["Location"]).get_data(
        as_text=True
    )
    assert member("admin@example.com").roles == ("admin",)
    comms = team["comms"]
    own = csrf_from(comms.get("/admin/approvals"))
    taken = comms.post(
        f"/admin/staff/{me.public_id}/roles", data={"csrf_token": own, "role_admin": "yes"}
    )
    assert taken.status_code == 403


def test_the_invite_command_keeps_its_interface_and_takes_more_roles(app, runner):
    kept = runner.invoke(args=["staff", "invite", "--email", "a@example.com", "--role", "agent"])
    assert kept.exit_code == 0 and "/staff/setup/" in kept.output
    assert member("a@example.com").roles == ("agent",)
    both = runner.invoke(
        args=[
            "staff",
            "invite",
            "--email",
            "l@example.com",
            "--role",
            "legal",
            "--role",
            "security",
        ]
    )
    assert both.exit_code == 0, both.output
    assert member("l@example.com").roles == ("legal", "security")
    wrong = runner.invoke(args=["staff", "invite", "--email", "x@example.com", "--role", "boss"])
    assert wrong.exit_code != 0
