"""Four-eyes approval: one person drafts, another with the approving role approves exactly what
was shown. What goes out is checked against the approval by hash, so any change after approval
needs approving again; an emergency override takes two different admins and is loud.
"""

from __future__ import annotations

import hashlib
import json

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select, update

from portal import clock
from portal.extensions import db
from portal.models import Approval, Incident, StaffMember
from portal.models.audit import staff_actor
from portal.services import audit

# subject -> (roles that may draft it, roles that may approve it). Being an admin implies no
# other role: an admin alone can neither approve a notice nor write and approve an update.
ROLES_FOR: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "campaign": (("admin",), ("legal",)),
    "letters": (("admin",), ("legal",)),
    "correction": (("admin",), ("legal",)),
    "update": (("communications",), ("legal",)),
    "remediation": (("security", "admin"), ("legal",)),
}

# The states in which an approval lets the pinned content go out.
COVERING = ("approved", "overridden")


class ApprovalError(Exception):
    """A refusal to tell the person, in words; nothing was changed."""


def canonical(pinned: dict) -> str:
    """The one JSON text of a pinned content: sorted keys, no spaces, characters as they are."""
    return json.dumps(pinned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(pinned: dict) -> str:
    """sha256 hex of the canonical JSON."""
    return hashlib.sha256(canonical(pinned).encode()).hexdigest()


def may_draft(member: StaffMember, subject: str) -> bool:
    return any(member.has_role(r) for r in ROLES_FOR[subject][0])


def may_approve(member: StaffMember, subject: str) -> bool:
    return any(member.has_role(r) for r in ROLES_FOR[subject][1])


def _open_ones(subject: str, subject_ref: str):
    return (
        Approval.subject == subject,
        Approval.subject_ref == str(subject_ref),
        Approval.state.in_(("pending", "approved", "overridden")),
    )


def current(subject: str, subject_ref: str) -> Approval | None:
    """The newest approval asked for this subject that is not superseded (any content)."""
    return db.session.scalars(
        select(Approval).where(*_open_ones(subject, subject_ref)).order_by(Approval.id.desc())
    ).first()


def submit(
    incident: Incident, subject: str, subject_ref: str, pinned: dict, *, drafter: StaffMember
) -> Approval:
    """Ask for approval of exactly `pinned`; an earlier open approval of the same thing is
    superseded (what it covered may no longer go out)."""
    if subject not in ROLES_FOR:
        raise ApprovalError(_("That cannot be put up for approval."))
    # The drafting role is checked here as well as on the route: a service called from
    # elsewhere must not let the wrong person start the four-eyes step.
    if not may_draft(drafter, subject):
        raise ApprovalError(_("Your roles do not let you put this up for approval."))
    db.session.execute(
        update(Approval)
        .where(*_open_ones(subject, subject_ref))
        .values(state="superseded")
        .execution_options(synchronize_session="fetch")
    )
    text = canonical(pinned)
    approval = Approval(
        incident_id=incident.id,
        subject=subject,
        subject_ref=str(subject_ref),
        pinned=text,
        pinned_hash=hashlib.sha256(text.encode()).hexdigest(),
        drafted_by_id=drafter.id,
        drafted_at=clock.now(),
        state="pending",
    )
    db.session.add(approval)
    db.session.flush()
    audit.record(
        "approval.submitted",
        actor=staff_actor(drafter),
        subject_type=subject,
        subject_id=str(subject_ref),
        details={"approval": approval.id, "hash": approval.pinned_hash},
    )
    return approval


def approve(approval: Approval, *, approver: StaffMember) -> Approval:
    """Approve a pending approval: by someone else than the drafter, holding the approving
    role. Refusals are audited too (someone tried)."""
    problem = None
    if approval.state != "pending":
        problem = _("This is no longer waiting for approval: it was changed or already decided.")
    elif approval.drafted_by_id == approver.id:
        # Four eyes: the person who wrote it never approves it, whatever roles they hold.
        problem = _("Someone other than the person who drafted it must approve it.")
    elif not may_approve(approver, approval.subject):
        problem = _("Only a member of the legal team can approve this.")
    if problem:
        audit.record(
            "approval.refused",
            actor=staff_actor(approver),
            subject_type=approval.subject,
            subject_id=approval.subject_ref,
            outcome="failure",
            details={"approval": approval.id},
        )
        raise ApprovalError(problem)
    approval.state = "approved"
    approval.approved_by_id = approver.id
    approval.approved_at = clock.now()
    db.session.flush()
    audit.record(
        "approval.approved",
        actor=staff_actor(approver),
        subject_type=approval.subject,
        subject_id=approval.subject_ref,
        details={"approval": approval.id, "hash": approval.pinned_hash},
    )
    return approval


def approved_for(subject: str, subject_ref: str, pinned: dict) -> Approval | None:
    """The approval that covers exactly this content now, or None: what "can it go out?" asks."""
    return db.session.scalars(
        select(Approval)
        .where(
            Approval.subject == subject,
            Approval.subject_ref == str(subject_ref),
            Approval.state.in_(COVERING),
            Approval.pinned_hash == digest(pinned),
        )
        .order_by(Approval.id.desc())
    ).first()


def for_incident(incident: Incident) -> list[Approval]:
    """Every approval asked for the incident, in time order (evidence, reports)."""
    return list(
        db.session.scalars(
            select(Approval)
            .where(Approval.incident_id == incident.id)
            .order_by(Approval.drafted_at, Approval.id)
        )
    )


def overriders(approval: Approval) -> list[int]:
    """The ids of the admins who asked for and confirmed an override (in that order)."""
    return [int(i) for i in (approval.override_by_ids or "").split(",") if i]


def request_override(approval: Approval, *, admin: StaffMember, reason: str) -> Approval:
    """The first admin asks to let it go out without legal's approval; a second must confirm."""
    reason = (reason or "").strip()
    if not admin.has_role("admin"):
        raise ApprovalError(_("Only an admin can ask for an emergency override."))
    if approval.state != "pending":
        raise ApprovalError(
            _("This is no longer waiting for approval: it was changed or already decided.")
        )
    if len(reason) < 10:
        raise ApprovalError(_("Give the reason for the override (at least 10 characters)."))
    approval.override_by_ids = str(admin.id)
    approval.override_reason = reason[:2000]
    db.session.flush()
    audit.record(
        "approval.override_requested",
        actor=staff_actor(admin),
        subject_type=approval.subject,
        subject_id=approval.subject_ref,
        outcome="success",
        details={"approval": approval.id},
    )
    _alert(approval, "asked for")
    return approval


def confirm_override(approval: Approval, *, admin: StaffMember) -> Approval:
    """A second, different admin confirms the override: the content may go out, loudly."""
    first = overriders(approval)
    if not admin.has_role("admin"):
        raise ApprovalError(_("Only an admin can confirm an emergency override."))
    if approval.state != "pending" or len(first) != 1:
        raise ApprovalError(_("There is no override waiting for confirmation."))
    if first[0] == admin.id:
        # Two different people, or it is one person overriding the four-eyes rule alone.
        raise ApprovalError(_("A second, different admin must confirm the override."))
    approval.override_by_ids = f"{first[0]},{admin.id}"
    approval.state = "overridden"
    approval.approved_at = clock.now()
    db.session.flush()
    audit.record(
        "approval.overridden",
        actor=staff_actor(admin),
        subject_type=approval.subject,
        subject_id=approval.subject_ref,
        outcome="success",
        details={"approval": approval.id, "hash": approval.pinned_hash},
    )
    _alert(approval, "confirmed")
    return approval


def _alert(approval: Approval, what: str) -> None:
    """Tell the response team at once (the alert address), as the audit trail's own alerts do."""
    from portal.mail.compose import compose_alert
    from portal.services import outbox

    outbox.queue_message(
        compose_alert,
        to=current_app.config["ALERT_EMAIL"],
        locale="en",  # the response team reads alerts in English
        dedupe_key=f"approval:override:{approval.id}:{what}",
        subject=f"Emergency override {what}: {approval.subject}",
        text=(
            f"An emergency override of the legal approval was {what} for a {approval.subject} "
            f"of incident {approval.incident_id} (approval {approval.id}) at "
            f"{clock.now():%Y-%m-%d %H:%M} UTC. Reason given: {approval.override_reason}\n"
            "Check it in the audit trail."
        ),
    )


def staff_by_id(ids) -> dict[int, StaffMember]:
    """The staff members named by approvals, in one query."""
    ids = {i for i in ids if i}
    if not ids:
        return {}
    return {m.id: m for m in db.session.scalars(select(StaffMember).where(StaffMember.id.in_(ids)))}
