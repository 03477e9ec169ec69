"""What a verified customer sees: every incident that touched them, with their own data."""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from flask import current_app
from flask_babel import format_decimal, get_locale
from sqlalchemy import and_, bindparam, func, select
from sqlalchemy import inspect as sa_inspect

from portal import clock, regions
from portal.extensions import db
from portal.models import (
    DATA_CLASSES,
    Customer,
    Enrollment,
    Exposure,
    GuidanceProgress,
    Incident,
    IncidentUpdate,
    ProtectionOffer,
)
from portal.models import sealed as sealed_
from portal.models.data_class import DataClass
from portal.services import investigation, notices, plan, protection, statements


@dataclass
class ExposedItem:
    data_class: DataClass
    fragment: str | None

    @property
    def line(self) -> str:
        return self.data_class.describe(self.fragment)


class _IncidentParts:
    """The published updates and approved public remediation actions of a page's incidents,
    read for all of them at once (a query each) the first time any is asked for: a page whose
    incident sections come from the page cache (portal/web/page_cache.py) asks for none."""

    def __init__(self, incident_ids: list[int]) -> None:
        self.incident_ids = incident_ids
        self._updates: dict[int, list[IncidentUpdate]] | None = None
        self._remediation: dict[int, list] | None = None

    def updates(self, incident_id: int) -> list[IncidentUpdate]:
        if self._updates is None:
            self._updates = defaultdict(list)
            for update in db.session.scalars(
                _PUBLISHED_UPDATES, {"incident_ids": self.incident_ids}
            ):
                self._updates[update.incident_id].append(update)
        return self._updates.get(incident_id, [])

    def remediation(self, incident_id: int) -> list:
        if self._remediation is None:
            self._remediation = investigation.public_actions(self.incident_ids)
        return self._remediation.get(incident_id, [])


@dataclass
class IncidentView:
    incident: Incident
    exposed: list[ExposedItem] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    protection: str | None = None  # None: no offer; "offered", "enrolled" or "waiting"
    region: str = ""  # where the customer lives: the steps differ by country
    parts: _IncidentParts | None = None

    @functools.cached_property
    def content(self) -> bytes:
        """`incident_content` of the incident, worked out once for the page's several parts."""
        return incident_content(self.incident)

    @property
    def updates(self) -> list[IncidentUpdate]:
        """The incident's published updates, newest first."""
        return self.parts.updates(self.incident.id) if self.parts else []

    @property
    def remediation(self) -> list:
        """Remediation actions legal approved for customers (portal.services.investigation)."""
        return self.parts.remediation(self.incident.id) if self.parts else []

    def first_steps(self, language: str) -> list:
        """The first three open steps of the plan for what this incident exposed."""
        keys = {item.data_class.key for item in self.exposed}
        return plan.build(keys, self.done, language, self.region).open_steps(3)

    def law(self, language: str) -> Law:
        """What the law where the customer lives adds to their notice, and leaves out: the
        page says what the email said.

        The same for every reader with the same incident (its whole row, `content`), place,
        language and exposed data types, so worked out once per five minutes (the affected
        count's period) for each of them in this process: nothing of the reader's is in it but
        what they share with everyone keyed alike."""
        keys = frozenset(item.data_class.key for item in self.exposed)
        period = clock.now().timestamp() // 300
        page_language = str(get_locale())  # contact_for words the contact in it
        key = (self.incident.id, self.content, self.region, language, page_language, keys, period)
        laws = current_app.extensions.setdefault(_LAWS, {})
        law = laws.get(key)
        if law is None:
            law = self._law(language, keys, period)
            if len(laws) >= _MAX_LAWS:
                laws.clear()
            laws[key] = law
        return law

    def _law(self, language: str, keys: frozenset[str], period: float) -> Law:
        inserts = statements.for_reader(self.region, language, set(keys))
        values = statements.values_for(
            self.incident,
            current_app.config["ORGANISATION_NAME"],
            statements.contact_for(self.incident, language),
            affected_count=(
                format_decimal(affected_count(self.incident.id, period))
                if "affected_count" in inserts.placeholders
                else ""
            ),
        )
        return Law(tuple(inserts.filled(values)), inserts.omit)


_LAWS = "portal.laws"
# Places, languages and sets of data types are few, but the key is the reader's: a ceiling.
_MAX_LAWS = 4096


# Every column of an incident but its translations (a dict, read apart), by attribute name.
_INCIDENT_COLUMNS = tuple(
    attr.key for attr in sa_inspect(Incident).column_attrs if attr.key != "translations"
)


def incident_content(incident: Incident) -> bytes:
    """Everything an incident row holds, as a key: an edit anywhere in it (a section, a date,
    a translation, its status) makes a new key, in every process at once. A digest, so that a
    cache of thousands of parts does not also keep thousands of copies of the incident's text."""
    values = (*(getattr(incident, name) for name in _INCIDENT_COLUMNS), incident.translations)
    return hashlib.blake2b(repr(values).encode(), digest_size=16).digest()


@dataclass(frozen=True)
class Law:
    statements: tuple
    omit: frozenset[str]


def affected_count(incident_id: int, period: float) -> int:
    """How many people an incident affected, counted at most once in five minutes by each app
    (`period` is the five minutes): only Rhode Island's statement names it, and a page must not
    count a million rows for every reader."""
    counts = current_app.extensions.setdefault("portal.affected_counts", {})
    key = (incident_id, period)
    if key not in counts:
        if len(counts) > 64:
            counts.clear()
        counts[key] = int(db.session.scalar(select(notices.affected_count(incident_id))) or 0)
    return counts[key]


# Built once: making a statement costs more CPU than running it (bound per call, by name).
_EXPOSURES = (
    select(
        Exposure.data_class,
        Exposure.fragment_sealed,
        Incident,
        ProtectionOffer.id,
        ProtectionOffer.regions,
        Enrollment.status,
        # The steps of the plan done, in the same query (one round trip less on every view of
        # the dashboard): the same value on every row, a step id a line. Uncorrelated, so the
        # database works it out once, through the (customer_id, step_id) unique index.
        select(func.aggregate_strings(GuidanceProgress.step_id, "\n"))
        .where(GuidanceProgress.customer_id == bindparam("customer_id"))
        .scalar_subquery(),
    )
    .join(Incident, Incident.id == Exposure.incident_id)
    .outerjoin(ProtectionOffer, ProtectionOffer.incident_id == Incident.id)
    .outerjoin(
        Enrollment,
        and_(
            Enrollment.offer_id == ProtectionOffer.id,
            Enrollment.customer_id == bindparam("customer_id"),
        ),
    )
    .where(Exposure.customer_id == bindparam("customer_id"))
    .order_by(Incident.discovered_on.desc(), Incident.id.desc())
)
_PUBLISHED_UPDATES = (
    select(IncidentUpdate)
    .where(
        IncidentUpdate.incident_id.in_(bindparam("incident_ids", expanding=True)),
        IncidentUpdate.published_at.is_not(None),
    )
    .order_by(IncidentUpdate.published_at.desc(), IncidentUpdate.id.desc())
)


def for_customer(customer: Customer) -> list[IncidentView]:
    """The customer's incidents, newest first. At most three queries, however much there is to
    show: the exposures with their incidents, the protection offer (a left join: one offer an
    incident, one enrollment an offer and customer, so no row is repeated) and the plan steps
    done; and, only when first asked for, the published updates and the approved public
    remediation actions."""
    views: dict[int, IncidentView] = {}
    done_ids: str | None = None
    rows = db.session.execute(_EXPOSURES, {"customer_id": customer.id})
    for data_class, sealed, incident, offer_id, offer_regions, enrollment, done_here in rows:
        done_ids = done_here  # the same on every row
        view = views.get(incident.id)
        if view is None:
            view = views[incident.id] = IncidentView(incident, region=customer.region)
            # An offer limited to other places is not offered (its page says so kindly); one
            # the customer already enrolled in stays shown, wherever they live now.
            open_here = regions.within(customer.region, regions.parse_list(offer_regions))
            if offer_id is not None and (open_here or enrollment is not None):
                view.protection = protection.shown_status(enrollment)
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
        done = plan.with_password_step(customer, set(done_ids.split("\n")) if done_ids else set())
        parts = _IncidentParts(list(views))
        for view in views.values():
            view.parts = parts
            view.done = done
    return list(views.values())
