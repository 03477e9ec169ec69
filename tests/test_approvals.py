"""Four-eyes approval: one person drafts, another with the approving role approves exactly what
was shown; a change needs approving again; an override takes two admins and is loud."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Approval, AuditEvent, StaffMember
from portal.services import approvals
from portal.services.approvals import ApprovalError
from portal.services.staff import invite

PINNED = {
    "text": {"en": "We found a problem.", "es": "Encontramos un problema."},
    "counts": {"en": {"US-CA": 3}, "es": {"US-TX": 1}},
}


def person(email: str, *roles: str) -> StaffMember:
    invite(email, roles[0], actor="test", roles=roles)
    return db.session.scalars(select(StaffMember)).all()[-1]


@pytest.fixture
def team(app):
    return {
        "admin": person("admin@example.com", "admin"),
        "admin2": person("admin2@example.com", "admin"),
        "legal": person("legal@example.com", "legal"),
        "comms": person("comms@example.com", "communications"),
        "admin_legal": person("both@example.com", "admin", "legal"),
    }


def actions() -> list[str]:
    return [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_a_member_holds_several_roles_and_admin_implies_no_other(team):
    assert team["admin_legal"].roles == ("admin", "legal")
    assert team["admin_legal"].has_role("legal")
    assert not team["admin"].has_role("legal")
    assert not team["admin"].has_role("communications")
    assert team["admin"].role == "admin" and team["legal"].role == "agent"


def test_legal_approves_what_an_admin_drafted_and_only_that_content_may_go_out(team, incident):
    approval = approvals.submit(incident, "campaign", "notice", PINNED, drafter=team["admin"])
    assert approval.state == "pending"
    assert approvals.approved_for("campaign", "notice", PINNED) is None
    approvals.approve(approval, approver=team["legal"])
    assert approval.approved_by_id == team["legal"].id and approval.approved_at is not None
    assert approvals.approved_for("campaign", "notice", PINNED) == approval
    # A different text, or different counts, is not what legal approved.
    changed = {**PINNED, "counts": {"en": {"US-CA": 4}, "es": {"US-TX": 1}}}
    assert approvals.approved_for("campaign", "notice", changed) is None
    assert approvals.approved_for("campaign", "other", PINNED) is None
    assert {"approval.submitted", "approval.approved"} <= set(actions())


def test_the_drafter_never_approves_their_own_draft_even_holding_legal(team, incident):
    approval = approvals.submit(incident, "campaign", "notice", PINNED, drafter=team["admin_legal"])
    with pytest.raises(ApprovalError, match="other than the person who drafted"):
        approvals.approve(approval, approver=team["admin_legal"])
    assert approval.state == "pending"
    assert "approval.refused" in actions()


def test_an_admin_without_the_legal_role_cannot_approve(team, incident):
    approval = approvals.submit(incident, "letters", "batch", PINNED, drafter=team["admin"])
    with pytest.raises(ApprovalError, match="legal"):
        approvals.approve(approval, approver=team["admin2"])
    assert approvals.approved_for("letters", "batch", PINNED) is None


def test_updates_are_drafted_by_communications_not_by_an_admin(team, incident):
    with pytest.raises(ApprovalError):
        approvals.submit(incident, "update", "1", PINNED, drafter=team["admin"])
    approval = approvals.submit(incident, "update", "1", PINNED, drafter=team["comms"])
    approvals.approve(approval, approver=team["legal"])
    assert approvals.approved_for("update", "1", PINNED) == approval


def test_a_new_submission_supersedes_the_earlier_approval(team, incident):
    first = approvals.submit(incident, "update", "1", PINNED, drafter=team["comms"])
    approvals.approve(first, approver=team["legal"])
    changed = {**PINNED, "text": {"en": "We found a bigger problem."}}
    second = approvals.submit(incident, "update", "1", changed, drafter=team["comms"])
    db.session.refresh(first)
    assert first.state == "superseded"
    assert approvals.approved_for("update", "1", PINNED) is None
    assert approvals.approved_for("update", "1", changed) is None
    with pytest.raises(ApprovalError, match="no longer waiting"):
        approvals.approve(first, approver=team["legal"])
    approvals.approve(second, approver=team["legal"])
    assert approvals.approved_for("update", "1", changed) == second
    assert approvals.for_incident(incident) == [first, second]


def test_an_emergency_override_takes_two_different_admins_and_alerts(team, incident, outbox):
    approval = approvals.submit(incident, "campaign", "notice", PINNED, drafter=team["admin"])
    with pytest.raises(ApprovalError, match="reason"):
        approvals.request_override(approval, admin=team["admin"], reason="")
    with pytest.raises(ApprovalError, match="admin"):
        approvals.request_override(approval, admin=team["legal"], reason="Regulator deadline today")
    approvals.request_override(approval, admin=team["admin"], reason="Regulator deadline today")
    assert approvals.approved_for("campaign", "notice", PINNED) is None
    with pytest.raises(ApprovalError, match="different admin"):
        approvals.confirm_override(approval, admin=team["admin"])
    approvals.confirm_override(approval, admin=team["admin2"])
    assert approval.state == "overridden"
    assert approvals.overriders(approval) == [team["admin"].id, team["admin2"].id]
    assert approvals.approved_for("campaign", "notice", PINNED) == approval
    assert {"approval.override_requested", "approval.overridden"} <= set(actions())
    subjects = [m.row.subject for m in outbox()]
    assert any("Emergency override confirmed" in s for s in subjects), subjects


def test_pinned_content_is_kept_as_canonical_json_with_its_hash(team, incident):
    approval = approvals.submit(incident, "campaign", "notice", PINNED, drafter=team["admin"])
    same = {"counts": PINNED["counts"], "text": PINNED["text"]}  # key order does not matter
    assert approval.pinned_hash == approvals.digest(same)
    assert db.session.get(Approval, approval.id).pinned == approvals.canonical(PINNED)


def test_every_subject_names_who_drafts_and_who_approves():
    from portal.models.approval import APPROVAL_SUBJECTS

    assert set(approvals.ROLES_FOR) == set(APPROVAL_SUBJECTS)
    assert all(approve == ("legal",) for _draft, approve in approvals.ROLES_FOR.values())
