"""The response playbook: a reviewed template of phases and tasks, and each incident's tasks."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import cache
from pathlib import Path

from flask_babel import gettext as _
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Incident, PlaybookTask
from portal.models.audit import staff_actor
from portal.models.playbook import TASK_STATUSES
from portal.models.staff import STAFF_ROLES
from portal.services import audit

TEMPLATE = Path(__file__).resolve().parent.parent / "playbook" / "playbook.toml"
# The roles a task may name as its owner: the response team's.
OWNER_ROLES = STAFF_ROLES
NOTES_MAX = 4000


class PlaybookError(Exception):
    """A request about a task that cannot be carried out; nothing was changed."""


@dataclass(frozen=True)
class Phase:
    id: str
    name: str


@dataclass(frozen=True)
class TaskTemplate:
    id: str
    phase: str
    title: str
    owner: str
    due_hours: int
    source: str
    duties: tuple[str, ...] = ()


@dataclass(frozen=True)
class Template:
    version: int
    as_of: str
    reviewed_by: str
    sources: tuple[str, ...]
    phases: tuple[Phase, ...]
    tasks: tuple[TaskTemplate, ...]

    def task(self, task_id: str) -> TaskTemplate | None:
        return next((t for t in self.tasks if t.id == task_id), None)


def parse(text: str, duty_ids: set[str]) -> Template:
    """The template from its TOML text, checked: a mistake refuses the whole file (a task
    dropped or owned by no one would go unnoticed in the middle of a response)."""
    raw = tomllib.loads(text)
    try:
        phases = tuple(Phase(p["id"], p["name"]) for p in raw["phases"])
        tasks = tuple(
            TaskTemplate(
                t["id"],
                t["phase"],
                t["title"],
                t["owner"],
                int(t["due_hours"]),
                t["source"],
                tuple(t.get("duties", ())),
            )
            for t in raw["tasks"]
        )
        version, as_of = int(raw["version"]), str(raw["as_of"])
        sources = tuple(raw["sources"])
        reviewed_by = str(raw["reviewed_by"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the playbook is missing or mistypes a field: {exc}") from None
    if not sources or not reviewed_by.strip():
        raise ValueError("the playbook names no source or no reviewer")
    phase_ids = [p.id for p in phases]
    if len(set(phase_ids)) != len(phase_ids) or len({t.id for t in tasks}) != len(tasks):
        raise ValueError("the playbook names a phase or a task twice")
    for t in tasks:
        if t.phase not in phase_ids:
            raise ValueError(f"task {t.id}: unknown phase {t.phase!r}")
        if t.owner not in OWNER_ROLES:
            raise ValueError(f"task {t.id}: unknown owner role {t.owner!r}")
        if t.due_hours <= 0 or not t.source.strip() or not t.title.strip():
            raise ValueError(f"task {t.id}: no due time, title or source")
        unknown = set(t.duties) - duty_ids
        if unknown:
            raise ValueError(f"task {t.id}: unknown duties {sorted(unknown)}")
    return Template(version, as_of, reviewed_by, sources, phases, tasks)


@cache
def template() -> Template:
    """The reviewed playbook, read once and checked."""
    from portal.services.obligations import catalogue

    duty_ids = {d.id for d in catalogue()[1]}
    return parse(TEMPLATE.read_text(encoding="utf-8"), duty_ids)


def init_app(app) -> None:
    """Read and check the playbook at start: a broken file stops the app with its reason."""
    try:
        template()
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise RuntimeError(f"The playbook ({TEMPLATE}) is not valid: {exc}") from exc


@dataclass(frozen=True)
class Task:
    """One task of one incident: the template's, with what was recorded."""

    incident: Incident
    template: TaskTemplate
    due_at: datetime
    record: PlaybookTask | None

    @property
    def id(self) -> str:
        return self.template.id

    @property
    def status(self) -> str:
        return self.record.status if self.record else "open"

    @property
    def notes(self) -> str:
        return self.record.notes if self.record else ""

    @property
    def overdue(self) -> bool:
        return self.status == "open" and self.due_at < clock.now()


def due_at(incident: Incident, task: TaskTemplate) -> datetime:
    """Counted from the first moment of the discovery day (UTC), as the legal clock counts."""
    start = datetime.combine(incident.discovered_on, time.min, tzinfo=UTC)
    return start + timedelta(hours=task.due_hours)


def tasks_for(incident: Incident) -> list[Task]:
    """Every task of the playbook for this incident, in the template's order (one query)."""
    records = {
        r.task_id: r
        for r in db.session.scalars(
            select(PlaybookTask).where(PlaybookTask.incident_id == incident.id)
        )
    }
    return [Task(incident, t, due_at(incident, t), records.get(t.id)) for t in template().tasks]


def overdue(incidents: list[Incident]) -> list[Task]:
    """Open tasks past their due time, across the incidents that are not closed."""
    return [
        task
        for incident in incidents
        if incident.status != "closed"
        for task in tasks_for(incident)
        if task.overdue
    ]


def holds(member, role: str) -> bool:
    """Whether a staff member holds a role."""
    return member.has_role(role)


def may_update(member, task: TaskTemplate) -> bool:
    """The task's owner role, or an admin (who runs the incident)."""
    return holds(member, task.owner) or holds(member, "admin")


def update_task(
    incident: Incident, task_id: str, *, status: str, notes: str, member
) -> PlaybookTask:
    """Record a task's status and notes, by its owner role or an admin; audited."""
    task = template().task(task_id)
    if task is None:
        raise PlaybookError(_("That task is not in the playbook."))
    # Only the role that owns the work (or the admin running the incident) says it is done.
    if not may_update(member, task):
        raise PlaybookError(_("Only the task's owner role or an admin can update it."))
    if status not in TASK_STATUSES:
        raise PlaybookError(_("Choose open, done or not needed."))
    notes = (notes or "").strip()
    if len(notes) > NOTES_MAX:
        raise PlaybookError(_("The notes are too long (at most 4,000 characters)."))
    record = db.session.scalar(
        select(PlaybookTask).where(
            PlaybookTask.incident_id == incident.id, PlaybookTask.task_id == task_id
        )
    )
    before = record.status if record else "open"
    record = record or PlaybookTask(incident_id=incident.id, task_id=task_id)
    actor = staff_actor(member)
    record.status, record.notes = status, notes
    record.updated_by, record.updated_at = actor, clock.now()
    db.session.add(record)
    audit.record(
        "playbook.task_updated",
        actor=actor,
        subject_type="incident",
        subject_id=incident.slug,
        details={"task": task_id, "from": before, "to": status},
    )
    db.session.flush()
    return record
