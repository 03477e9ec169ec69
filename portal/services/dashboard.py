"""What a verified customer sees: every incident that touched them, with their own data."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select

from portal.extensions import db
from portal.models import (
    DATA_CLASSES,
    Customer,
    Exposure,
    Incident,
    IncidentUpdate,
    ProtectionOffer,
)
from portal.models import sealed as sealed_
from portal.models.data_class import DataClass
from portal.services import plan, protection


@dataclass
class ExposedItem:
    data_class: DataClass
    fragment: str | None

    @property
    def line(self) -> str:
        return self.data_class.describe(self.fragment)


@dataclass
class IncidentView:
    incident: Incident
    exposed: list[ExposedItem] = field(default_factory=list)
    updates: list[IncidentUpdate] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    protection: str | None = None  # None: no offer; "offered", "enrolled" or "waiting"

    def first_steps(self, language: str) -> list:
        """The first three open steps of the plan for what this incident exposed."""
        keys = {item.data_class.key for item in self.exposed}
        return plan.build(keys, self.done, language).open_steps(3)


def for_customer(customer: Customer) -> list[IncidentView]:
    """The customer's incidents, newest first. Three queries, however much there is to show."""
    views: dict[int, IncidentView] = {}
    rows = db.session.execute(
        select(Exposure.data_class, Exposure.fragment_sealed, Incident)
        .join(Incident, Incident.id == Exposure.incident_id)
        .where(Exposure.customer_id == customer.id)
        .order_by(Incident.discovered_on.desc(), Incident.id.desc())
    )
    for data_class, sealed, incident in rows:
        view = views.setdefault(incident.id, IncidentView(incident))
        binding = Exposure.binding(customer.public_id, incident.id, data_class)
        fragment = (
            sealed_.open_text(Exposure, "fragment_sealed", binding, sealed)
            if sealed is not None
            else None
        )
        view.exposed.append(ExposedItem(DATA_CLASSES[data_class], fragment))
    for view in views.values():
        # The most sensitive first: what matters most is read first.
        view.exposed.sort(key=lambda item: (-item.data_class.sensitivity, item.data_class.key))
    if views:
        updates: dict[int, list[IncidentUpdate]] = defaultdict(list)
        for update in db.session.scalars(
            select(IncidentUpdate)
            .where(IncidentUpdate.incident_id.in_(views), IncidentUpdate.published_at.is_not(None))
            .order_by(IncidentUpdate.published_at.desc(), IncidentUpdate.id.desc())
        ):
            updates[update.incident_id].append(update)
        done = plan.done_steps(customer)
        offered = set(
            db.session.scalars(
                select(ProtectionOffer.incident_id).where(ProtectionOffer.incident_id.in_(views))
            )
        )
        statuses = protection.enrollment_statuses(customer)
        for incident_id, view in views.items():
            view.updates = updates[incident_id]
            view.done = done
            if incident_id in offered:
                view.protection = statuses.get(incident_id, "offered")
    return list(views.values())
