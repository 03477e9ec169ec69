"""The after-action report of an incident: what happened, what was done and by whom, and what is
still open; one set of facts for the printable page and the PDF."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _

from portal import clock
from portal.models import Incident
from portal.services import audit, investigation, metrics, obligations, playbook
from portal.services.letters import _plain


@dataclass(frozen=True)
class ApprovalLine:
    subject: str
    subject_ref: str
    state: str
    drafted_by: str
    drafted_at: datetime
    approved_by: str  # the approver, or the two admins of an override
    approved_at: datetime | None


@dataclass(frozen=True)
class Report:
    incident: Incident
    made_at: datetime
    timeline: investigation.Timeline
    scope: investigation.Scope
    funnel: metrics.Funnel
    duties: list[obligations.DutyStatus]
    approvals: list[ApprovalLine]
    findings: list
    actions: list
    tasks: list[playbook.Task]

    @property
    def open_tasks(self) -> list[playbook.Task]:
        return [t for t in self.tasks if t.status == "open"]

    @property
    def open_actions(self) -> list:
        return [a for a in self.actions if a.done_on is None]

    @property
    def open_duties(self) -> list[obligations.DutyStatus]:
        return [d for d in self.duties if not d.closed]


def _names(ids: set[int]) -> dict[int, str]:
    """Staff members by id, as the report names them: their work address (one query)."""
    from portal.services import approvals

    return {i: m.email for i, m in approvals.staff_by_id(ids).items()}


def _approvals(incident: Incident) -> list[ApprovalLine]:
    from portal.services import approvals

    found = approvals.for_incident(incident)
    ids: set[int] = set()
    for a in found:
        ids |= {a.drafted_by_id, a.approved_by_id, *approvals.overriders(a)}
    names = _names(ids)
    lines = []
    for a in found:
        overriders = approvals.overriders(a)
        if a.approved_by_id is not None:
            approver = names.get(a.approved_by_id, "?")
        elif overriders:
            approver = _(
                "override by %(names)s", names=" + ".join(names.get(i, "?") for i in overriders)
            )
        else:
            approver = ""
        lines.append(
            ApprovalLine(
                a.subject,
                a.subject_ref,
                a.state,
                names.get(a.drafted_by_id, "?"),
                a.drafted_at,
                approver,
                a.approved_at,
            )
        )
    return lines


def build(incident: Incident) -> Report:
    """Every fact of the report; a bounded number of aggregate queries."""
    return Report(
        incident,
        clock.now(),
        investigation.timeline(incident),
        investigation.scope(incident),
        metrics.funnel(incident),
        obligations.for_incident(incident),
        _approvals(incident),
        investigation.findings(incident),
        investigation.actions(incident),
        playbook.tasks_for(incident),
    )


def record_download(incident: Incident, *, actor: str, kind: str) -> None:
    """Each download of the report is in the audit trail (it leaves the portal)."""
    audit.record(
        "report.downloaded",
        actor=actor,
        subject_type="incident",
        subject_id=incident.slug,
        details={"format": kind},
    )


# --- PDF -------------------------------------------------------------------------------------


def _when(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def _new_pdf():
    """A letter-sized document with page numbers in its footer."""
    # fpdf2 is loaded when a PDF is made, not with the module: it adds 22 MB (measured, max
    # RSS) to every process that creates the app, among them a million-row import's, which
    # must stay under 200 MB, and the web workers, which never make a PDF.
    from fpdf import FPDF

    class _Pdf(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("Helvetica", size=8)
            self.cell(0, 5, f"{self.page_no()}", align="C")

    return _Pdf(format="letter", unit="mm")


def pdf(report: Report, labels: dict[str, str]) -> bytes:
    """The report as a PDF (fpdf2). Helvetica at 10-11 pt: its latin-1 covers every letter of
    Spanish (á é í ó ú ñ ü ¿ ¡); other marks are written as their plain equivalents."""
    doc = _new_pdf()
    doc.set_auto_page_break(auto=True, margin=18)
    doc.set_margins(20, 15, 20)
    doc.set_creator("portal")
    doc.set_title(_plain(_("After-action report: %(title)s", title=report.incident.title)))
    doc.add_page()

    def heading(text: str) -> None:
        doc.ln(2)
        doc.set_font("Helvetica", "B", 13)
        doc.multi_cell(0, 7, _plain(text), new_x="LMARGIN", new_y="NEXT")
        doc.set_font("Helvetica", size=10)

    def line(text: str) -> None:
        doc.multi_cell(0, 5, _plain(text), new_x="LMARGIN", new_y="NEXT")

    i, t = report.incident, report.timeline
    doc.set_font("Helvetica", "B", 16)
    doc.multi_cell(
        0,
        8,
        _plain(_("After-action report: %(title)s", title=i.title)),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    doc.set_font("Helvetica", size=10)
    line(_("Incident %(slug)s, made %(when)s", slug=i.slug, when=_when(report.made_at)))

    heading(_("Timeline"))
    line(
        _("Occurred: %(first)s to %(last)s", first=_when(t.occurred_on), last=_when(t.occurred_to))
    )
    line(_("Discovered: %(date)s", date=_when(t.discovered_on)))
    line(_("Contained: %(date)s", date=_when(t.contained_on)))
    line(_("First notice sent: %(date)s", date=_when(t.first_notice_at)))
    line(_("Everyone notified: %(date)s", date=_when(t.notified_on)))

    heading(_("Scope"))
    line(_("People affected: %(count)d", count=report.scope.affected))
    line(_("Systems: %(text)s", text=report.scope.systems or "-"))
    line(_("Data sets: %(text)s", text=report.scope.data_sets or "-"))
    line(", ".join(f"{k}: {n}" for k, n in report.scope.by_class))
    line(", ".join(f"{r or '?'}: {n}" for r, n in report.scope.by_region))

    heading(_("The response in numbers"))
    for stage, count in report.funnel.counts.items():
        line(f"{labels.get(stage, stage)}: {count} ({report.funnel.percent(stage)}%)")

    heading(_("Legal duties"))
    for d in report.duties:
        if d.done:
            state = _("met %(date)s (%(how)s)", date=_when(d.done.done_on), how=d.done.how)
        elif d.by_campaign:
            state = _("met by the notices, %(date)s", date=_when(d.notified))
        else:
            state = _("open, due %(date)s", date=_when(d.due_at))
        line(f"{d.duty.name}: {state}")

    heading(_("Approvals"))
    if not report.approvals:
        line(_("None recorded."))
    for a in report.approvals:
        line(
            _(
                "%(subject)s %(ref)s: drafted by %(drafter)s at %(drafted)s; %(state)s by "
                "%(approver)s at %(approved)s",
                subject=a.subject,
                ref=a.subject_ref,
                drafter=a.drafted_by,
                drafted=_when(a.drafted_at),
                state=a.state,
                approver=a.approved_by or "-",
                approved=_when(a.approved_at),
            )
        )

    heading(_("Root-cause findings"))
    for f in report.findings or []:
        line(f"- {f.text} ({_when(f.recorded_at)})")
    if not report.findings:
        line(_("None recorded."))

    heading(_("Remediation actions"))
    for a in report.actions:
        line(
            f"- {a.title} [{a.owner}] "
            + _("due %(due)s, done %(done)s", due=_when(a.due_on), done=_when(a.done_on))
        )
    if not report.actions:
        line(_("None recorded."))

    heading(_("Open items"))
    for task in report.open_tasks:
        mark = _("OVERDUE") + " " if task.overdue else ""
        line(f"- {mark}{task.template.title} [{task.template.owner}], {_when(task.due_at)}")
    for a in report.open_actions:
        line(f"- {a.title} [{a.owner}], {_when(a.due_on)}")
    for d in report.open_duties:
        line(f"- {d.duty.name}, {_when(d.due_at)}")
    return bytes(doc.output())
