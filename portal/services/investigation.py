"""The assessment and investigation record of an incident: scope, timeline, findings, and the
remediation actions (marked public and approved, they feed the customers' "What we are doing")."""

from __future__ import annotations

import hmac
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from flask_babel import gettext as _
from sqlalchemy import and_, bindparam, cast, func, select

from portal import clock
from portal.extensions import db
from portal.i18n import with_translation
from portal.models import Customer, Exposure, Finding, Incident, RemediationAction
from portal.models.audit import staff_actor
from portal.services import audit
from portal.services.playbook import OWNER_ROLES, holds

TEXT_MAX = 2000
# Who writes the record: the investigators, and the admin running the incident. The public
# text of an action is approved by legal (portal.services.approvals, subject 'remediation').
RECORD_ROLES = ("security", "admin")


class InvestigationError(Exception):
    """A change to the record that cannot be made; nothing was changed."""


def _may_write(member) -> None:
    if not any(holds(member, role) for role in RECORD_ROLES):
        raise InvestigationError(
            _("Only security or an admin can change the investigation record.")
        )


# --- The timeline: one place the console, the report and the public pages read ---------------


@dataclass(frozen=True)
class Timeline:
    occurred_on: date | None
    occurred_to: date | None
    discovered_on: date
    contained_on: date | None
    # The day the campaign finished notifying everyone affected (None until then), and when
    # its first notice left.
    notified_on: date | None
    first_notice_at: datetime | None


def timeline(incident: Incident) -> Timeline:
    """The incident's dates, with "notified" taken from the notice campaign (never typed)."""
    from portal.services.notices import affected_count
    from portal.services.obligations import evidence, notified_on

    campaign = evidence(incident).campaign
    affected = int(db.session.scalar(select(affected_count(incident.id))) or 0)
    return Timeline(
        incident.occurred_on,
        incident.occurred_to,
        incident.discovered_on,
        incident.contained_on,
        notified_on(affected, campaign),
        campaign.first_sent_at,
    )


# --- Scope -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    systems: str
    data_sets: str
    affected: int
    by_class: list[tuple[str, int]]
    by_region: list[tuple[str, int]]


def scope(incident: Incident) -> Scope:
    """What the team wrote, and the counts computed from the import (two aggregate queries)."""
    from portal.services.notices import data_classes_involved

    rows = db.session.execute(
        select(Customer.region, func.count(func.distinct(Customer.id)))
        .join(Exposure, Exposure.customer_id == Customer.id)
        .where(Exposure.incident_id == incident.id)
        .group_by(Customer.region)
    ).all()
    by_region = sorted(((r or "", int(n)) for r, n in rows), key=lambda rn: (-rn[1], rn[0]))
    return Scope(
        incident.affected_systems,
        incident.affected_data_sets,
        sum(n for _r, n in by_region),
        data_classes_involved(incident),
        by_region,
    )


def update_scope(
    incident: Incident, *, systems: str, data_sets: str, contained_on: date | None, member
) -> None:
    """The systems and data sets involved, and the day the breach was contained."""
    _may_write(member)
    systems, data_sets = (systems or "").strip(), (data_sets or "").strip()
    if len(systems) > TEXT_MAX or len(data_sets) > TEXT_MAX:
        raise InvestigationError(_("Each text can be at most 2,000 characters."))
    began = incident.occurred_on or incident.discovered_on
    if contained_on is not None and contained_on < began:
        raise InvestigationError(_("The breach cannot be contained before it began."))
    if contained_on is not None and contained_on > clock.now().date():
        raise InvestigationError(_("The day it was contained cannot be in the future."))
    incident.affected_systems, incident.affected_data_sets = systems, data_sets
    incident.contained_on = contained_on
    audit.record(
        "investigation.scope",
        actor=staff_actor(member),
        subject_type="incident",
        subject_id=incident.slug,
        details={"contained_on": contained_on.isoformat() if contained_on else None},
    )
    db.session.flush()


# --- Findings --------------------------------------------------------------------------------


def findings(incident: Incident) -> list[Finding]:
    return list(
        db.session.scalars(
            select(Finding)
            .where(Finding.incident_id == incident.id)
            .order_by(Finding.recorded_at, Finding.id)
        )
    )


def add_finding(incident: Incident, text: str, *, member) -> Finding:
    """A root-cause finding (a vulnerability, what the access logs show); audited."""
    _may_write(member)
    text = (text or "").strip()
    if not text or len(text) > TEXT_MAX:
        raise InvestigationError(_("Write the finding (at most 2,000 characters)."))
    finding = Finding(
        incident_id=incident.id,
        text=text,
        recorded_by=staff_actor(member),
        recorded_at=clock.now(),
    )
    db.session.add(finding)
    db.session.flush()
    audit.record(
        "investigation.finding",
        actor=staff_actor(member),
        subject_type="incident",
        subject_id=incident.slug,
        details={"finding": finding.id},
    )
    return finding


# --- Remediation actions ---------------------------------------------------------------------


def actions(incident: Incident) -> list[RemediationAction]:
    return list(
        db.session.scalars(
            select(RemediationAction)
            .where(RemediationAction.incident_id == incident.id)
            .order_by(RemediationAction.id)
        )
    )


def get_action(action_id: int) -> RemediationAction | None:
    return db.session.get(RemediationAction, action_id)


def pinned(action: RemediationAction) -> dict:
    """Exactly what customers would read: the text in each language and the done date."""
    es = ((action.translations or {}).get("es") or {}).get("public_text", "")
    return {
        "text": {"en": action.public_text, "es": es},
        "done_on": action.done_on.isoformat() if action.done_on else None,
    }


def _pending(action: RemediationAction):
    """The approval asked for this action's public text and not yet decided, if any."""
    from portal.services import approvals

    found = approvals.current("remediation", str(action.id))
    return found if found is not None and found.state == "pending" else None


def _checked(title: str, owner: str, due_on, done_on, public: bool, en: str, es: str):
    title, en, es = (title or "").strip(), (en or "").strip(), (es or "").strip()
    if not title or len(title) > 300:
        raise InvestigationError(_("Describe the action (at most 300 characters)."))
    if owner not in OWNER_ROLES:
        raise InvestigationError(_("Choose the role that owns the action."))
    if done_on is not None and done_on > clock.now().date():
        raise InvestigationError(_("The day it was done cannot be in the future."))
    if len(en) > TEXT_MAX or len(es) > TEXT_MAX:
        raise InvestigationError(_("Each text can be at most 2,000 characters."))
    # Customers read it in their language: a public action needs both texts.
    if public and not (en and es):
        raise InvestigationError(_("A public action needs its text in English and in Spanish."))
    return title, en, es


def save_action(
    incident: Incident,
    action: RemediationAction | None,
    *,
    title: str,
    owner: str,
    due_on: date | None,
    done_on: date | None,
    public: bool,
    text_en: str,
    text_es: str,
    member,
) -> RemediationAction:
    """Add an action or change one. What customers would read is hashed again, so a change to
    an approved action hides it from them until it is approved again."""
    from portal.services import approvals

    _may_write(member)
    today = clock.now().date()
    title, en, es = _checked(title, owner, due_on, done_on, public, text_en, text_es)
    if action is None:
        action = RemediationAction(
            incident_id=incident.id, created_on=today, created_by=staff_actor(member)
        )
        db.session.add(action)
    action.title, action.owner, action.due_on, action.done_on = title, owner, due_on, done_on
    action.public, action.public_text = public, en
    action.translations = with_translation(action, "es", {"public_text": es})
    action.public_hash = approvals.digest(pinned(action))
    action.updated_at = clock.now()
    db.session.flush()
    audit.record(
        "remediation.saved",
        actor=staff_actor(member),
        subject_type="incident",
        subject_id=incident.slug,
        details={"action": action.id, "public": public, "done": done_on is not None},
    )
    return action


def submit_public(incident: Incident, action: RemediationAction, *, member):
    """Ask legal to approve exactly the public text as it stands now."""
    from portal.services import approvals

    _may_write(member)
    if not action.public:
        raise InvestigationError(_("Mark the action public first."))
    try:
        return approvals.submit(
            incident, "remediation", str(action.id), pinned(action), drafter=member
        )
    except approvals.ApprovalError as exc:
        raise InvestigationError(str(exc)) from None


def _same(a: str, b: str) -> bool:
    # Digests of public text, not secrets; compared in constant time all the same (one rule for
    # every digest comparison is easier to keep than a list of exceptions).
    return hmac.compare_digest(a or "", b or "")


def approve_public(incident: Incident, action: RemediationAction, *, member):
    """Legal approves the pending request for this action's public text (someone else drafted
    it); refused when the text changed since it was asked."""
    from portal.services import approvals

    pending = _pending(action)
    if pending is None:
        raise InvestigationError(_("Nothing is waiting for approval for this action."))
    if not _same(pending.pinned_hash, action.public_hash):
        raise InvestigationError(_("The text changed since approval was asked: ask again."))
    try:
        return approvals.approve(pending, approver=member)
    except approvals.ApprovalError as exc:
        raise InvestigationError(str(exc)) from None


def approval_state(action: RemediationAction) -> str:
    """'approved' (customers see it), 'pending', or 'draft' (never asked, or changed since)."""
    from portal.services import approvals

    if approvals.approved_for("remediation", str(action.id), pinned(action)) is not None:
        return "approved"
    pending = _pending(action)
    if pending is not None and _same(pending.pinned_hash, action.public_hash):
        return "pending"
    return "draft"


def _public_query():
    from portal.models.approval import Approval

    # An approval covers the action only while it pins what the action says now.
    return (
        select(RemediationAction)
        .join(
            Approval,
            and_(
                Approval.subject == "remediation",
                Approval.subject_ref == cast(RemediationAction.id, Approval.subject_ref.type),
                Approval.pinned_hash == RemediationAction.public_hash,
                Approval.state.in_(("approved", "overridden")),
            ),
        )
        .where(
            RemediationAction.incident_id.in_(bindparam("incident_ids", expanding=True)),
            RemediationAction.public.is_(True),
        )
        .order_by(RemediationAction.done_on.desc(), RemediationAction.id.desc())
        .distinct()
    )


def public_actions(incident_ids: list[int]) -> dict[int, list[RemediationAction]]:
    """The approved public actions of these incidents, most recently done first (one query)."""
    found: dict[int, list[RemediationAction]] = defaultdict(list)
    if incident_ids:
        for action in db.session.scalars(_public_query(), {"incident_ids": incident_ids}):
            found[action.incident_id].append(action)
    return found
