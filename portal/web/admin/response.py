"""Admin: the response team's workspace for an incident: the playbook's tasks, the assessment
and investigation record, and the after-action report."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal.i18n import translated_text
from portal.services import after_action, investigation, obligations, playbook
from portal.web.access import staff
from portal.web.admin.blueprint import bp
from portal.web.admin.common import current_actor, incident_or_404
from portal.web.admin.forms import (
    ROLE_LABELS,
    TASK_STATUS_LABELS,
    FindingForm,
    RemediationForm,
    ScopeForm,
    TaskForm,
)
from portal.web.admin.metrics import STAGE_LABELS
from portal.web.staff.forms import ActionForm

# The whole response team reads the workspace; each change is checked against the member's
# roles in the service (a task's owner role or an admin; the record: security or an admin).
TEAM = ("admin", "legal", "communications", "security", "support_lead")
# The report names every approver and is meant for the board and the regulators.
REPORT_READERS = ("admin", "legal")


@bp.get("/incidents/<slug>/playbook")
@staff(*TEAM)
def playbook_tasks(slug: str):
    item = incident_or_404(slug)
    tasks = playbook.tasks_for(item)
    member = current_user.staff
    return render_template(
        "admin/playbook.html",
        incident=item,
        template=playbook.template(),
        tasks=tasks,
        forms={
            t.id: TaskForm(prefix=t.id, data={"status": t.status, "notes": t.notes})
            for t in tasks
            if playbook.may_update(member, t.template)
        },
        status_labels=TASK_STATUS_LABELS,
        role_labels=ROLE_LABELS,
        # The legal duties a notify task carries out, where they apply, with their state.
        duties={s.duty.id: s for s in obligations.for_incident(item)},
    )


@bp.post("/incidents/<slug>/playbook/<task_id>")
@staff(*TEAM)
def update_task(slug: str, task_id: str):
    item = incident_or_404(slug)
    if playbook.template().task(task_id) is None:
        abort(404)
    form = TaskForm(prefix=task_id)
    if form.validate_on_submit():
        try:
            playbook.update_task(
                item,
                task_id,
                status=form.status.data,
                notes=form.notes.data or "",
                member=current_user.staff,
            )
        except playbook.PlaybookError as exc:
            flash(str(exc), "error")
        else:
            flash(_("Task saved."), "info")
    else:
        flash(_("Choose open, done or not needed; notes up to 4,000 characters."), "error")
    return redirect(url_for("admin.playbook_tasks", slug=slug) + f"#task-{task_id}")


@bp.get("/incidents/<slug>/investigation")
@staff(*TEAM)
def investigation_record(slug: str):
    item = incident_or_404(slug)
    actions = investigation.actions(item)
    member = current_user.staff
    return render_template(
        "admin/investigation.html",
        incident=item,
        timeline=investigation.timeline(item),
        scope=investigation.scope(item),
        findings=investigation.findings(item),
        actions=[(a, investigation.approval_state(a), _action_form(a)) for a in actions],
        scope_form=ScopeForm(obj=item),
        finding_form=FindingForm(),
        new_action=RemediationForm(prefix="new"),
        action=ActionForm(),
        role_labels=ROLE_LABELS,
        may_report=any(playbook.holds(member, r) for r in REPORT_READERS),
        # The button only; approvals.approve checks the role (and that it is not the drafter).
        may_approve=playbook.holds(member, "legal"),
    )


def _action_form(a) -> RemediationForm:
    data = {
        "title": a.title,
        "owner": a.owner,
        "due_on": a.due_on,
        "done_on": a.done_on,
        "public": a.public,
        "public_text": a.public_text,
        "public_text_es": translated_text(a, "es").get("public_text", ""),
    }
    return RemediationForm(prefix=f"a{a.id}", data=data)


def _back(slug: str, anchor: str = ""):
    return redirect(url_for("admin.investigation_record", slug=slug) + anchor)


@bp.post("/incidents/<slug>/investigation/scope")
@staff(*TEAM)
def save_scope(slug: str):
    item = incident_or_404(slug)
    form = ScopeForm()
    if not form.validate_on_submit():
        flash(_("Check the texts (at most 2,000 characters) and the date."), "error")
        return _back(slug, "#scope")
    try:
        investigation.update_scope(
            item,
            systems=form.affected_systems.data or "",
            data_sets=form.affected_data_sets.data or "",
            contained_on=form.contained_on.data,
            member=current_user.staff,
        )
    except investigation.InvestigationError as exc:
        flash(str(exc), "error")
    else:
        flash(_("Saved."), "info")
    return _back(slug, "#scope")


@bp.post("/incidents/<slug>/investigation/findings")
@staff(*TEAM)
def add_finding(slug: str):
    item = incident_or_404(slug)
    form = FindingForm()
    if not form.validate_on_submit():
        flash(_("Write the finding (at most 2,000 characters)."), "error")
        return _back(slug, "#findings")
    try:
        investigation.add_finding(item, form.text.data, member=current_user.staff)
    except investigation.InvestigationError as exc:
        flash(str(exc), "error")
    return _back(slug, "#findings")


def _save_action(item, action, form: RemediationForm):
    try:
        return investigation.save_action(
            item,
            action,
            title=form.title.data,
            owner=form.owner.data,
            due_on=form.due_on.data,
            done_on=form.done_on.data,
            public=form.public.data,
            text_en=form.public_text.data or "",
            text_es=form.public_text_es.data or "",
            member=current_user.staff,
        )
    except investigation.InvestigationError as exc:
        flash(str(exc), "error")
        return None


@bp.post("/incidents/<slug>/investigation/actions")
@staff(*TEAM)
def add_action(slug: str):
    item = incident_or_404(slug)
    form = RemediationForm(prefix="new")
    if not form.validate_on_submit():
        flash(_("Describe the action and check its dates and texts."), "error")
        return _back(slug, "#actions")
    saved = _save_action(item, None, form)
    return _back(slug, f"#action-{saved.id}" if saved else "#actions")


def _action_of(item, action_id: int):
    action = investigation.get_action(action_id)
    if action is None or action.incident_id != item.id:
        abort(404)  # not this incident's: the URL names another incident's action
    return action


@bp.post("/incidents/<slug>/investigation/actions/<int:action_id>")
@staff(*TEAM)
def edit_action(slug: str, action_id: int):
    item = incident_or_404(slug)
    action = _action_of(item, action_id)
    form = RemediationForm(prefix=f"a{action_id}")
    if not form.validate_on_submit():
        flash(_("Describe the action and check its dates and texts."), "error")
    elif _save_action(item, action, form):
        flash(_("Saved."), "info")
    return _back(slug, f"#action-{action_id}")


def _public_step(slug: str, action_id: int, step, done: str):
    """Send an action's public text to legal, or approve it: the same form, another step."""
    item = incident_or_404(slug)
    action = _action_of(item, action_id)
    if ActionForm().validate_on_submit():
        try:
            step(item, action, member=current_user.staff)
        except investigation.InvestigationError as exc:
            flash(str(exc), "error")
        else:
            flash(done, "info")
    return _back(slug, f"#action-{action_id}")


@bp.post("/incidents/<slug>/investigation/actions/<int:action_id>/submit")
@staff(*TEAM)
def submit_action(slug: str, action_id: int):
    return _public_step(
        slug, action_id, investigation.submit_public, _("Sent to legal for approval.")
    )


@bp.post("/incidents/<slug>/investigation/actions/<int:action_id>/approve")
@staff(*TEAM)
def approve_action(slug: str, action_id: int):
    return _public_step(
        slug, action_id, investigation.approve_public, _("Approved: customers now see it.")
    )


@bp.get("/incidents/<slug>/report")
@staff(*REPORT_READERS)
def report(slug: str):
    item = incident_or_404(slug)
    return render_template(
        "admin/report.html",
        report=after_action.build(item),
        labels=STAGE_LABELS,
        action=ActionForm(),
    )


@bp.post("/incidents/<slug>/report.pdf")
@staff(*REPORT_READERS)
def report_pdf(slug: str):
    # A POST (its CSRF token checked), not a link: each download is recorded in the audit trail.
    item = incident_or_404(slug)
    if not ActionForm().validate_on_submit():
        abort(400)
    body = after_action.pdf(after_action.build(item), {k: str(v) for k, v in STAGE_LABELS.items()})
    after_action.record_download(item, actor=current_actor(), kind="pdf")
    return (
        body,
        200,
        {
            "Content-Type": "application/pdf",
            "Content-Disposition": f'attachment; filename="after-action-{item.slug}.pdf"',
            "Cache-Control": "no-store",
        },
    )
