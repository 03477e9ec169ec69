"""Affected people for the browser journeys: an incident, a CSV import and their notices,
made the way an operator makes them (the services behind the `portal` commands)."""

from __future__ import annotations

import csv
import itertools
import tempfile
from pathlib import Path

from tests.browser.conftest import Live, code_in, link_in
from tests.conftest import HEADER, INCIDENT

_numbers = itertools.count(1)
SLUG = INCIDENT["slug"]


def incident(live: Live):
    """The module's incident (created once), with a support line and its hours."""
    from portal.models import Incident
    from portal.services.incidents import create_incident

    def make():
        from portal.extensions import db

        existing = db.session.query(Incident).filter_by(slug=SLUG).one_or_none()
        if existing is not None:
            return existing.id
        fields = {**INCIDENT, "contact_hours": "Monday to Friday, 8 am to 8 pm Pacific"}
        return create_incident(**fields, actor="test").id

    return live.run(make)


def notify(live: Live, *, locale: str = "en", phone: str = "", data_classes: str = "") -> dict:
    """Import one affected person and send their notice; return their details."""
    from portal.extensions import db
    from portal.models import Incident
    from portal.services.imports import import_customers
    from portal.services.notices import queue_notices

    incident(live)
    n = next(_numbers)
    person = {
        "external_id": f"B-{n:05d}",
        "full_name": f"Browser Person{n}",
        "email": f"browser{n}@example.com",
        "phone": phone,
        "locale": locale,
        "region": "US-CA",
        "data_classes": data_classes or "email_address;payment_card:4242;ssn:6789;password",
    }
    folder = Path(tempfile.mkdtemp())
    path = folder / "people.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerow([person[h] for h in HEADER])

    def load():
        found = db.session.query(Incident).filter_by(slug=SLUG).one()
        import_customers(found, path, actor="test")
        queue_notices(found, actor="test")

    live.run(load)
    subject = "Aviso" if locale == "es" else "Notice of Data Breach"
    notice = live.wait_for_mail(person["email"], subject)
    person["link"] = link_in(notice.text, live.base)
    return person


def announce(live: Live, slug: str) -> None:
    """Tell one person of the incident `slug` (its first notice queued): from then on the
    incident has its public page."""
    from portal.extensions import db
    from portal.models import Incident
    from portal.services.imports import import_customers
    from portal.services.notices import queue_notices

    n = next(_numbers)
    folder = Path(tempfile.mkdtemp())
    path = folder / "people.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerow(
            [f"A-{n:05d}", f"Told Person{n}", f"told{n}@example.com", "", "en", "US-CA", "ssn"]
        )

    def load():
        found = db.session.query(Incident).filter_by(slug=slug).one()
        import_customers(found, path, actor="test")
        queue_notices(found, actor="test")

    live.run(load)


def code_for(live: Live, person: dict, seen: int = 0) -> str:
    """The newest code sent to this person, by text when they have a phone, else by email."""
    if person["phone"]:
        return code_in(live.wait_for_text(person["phone"], seen=seen))
    subject = "código" if person["locale"] == "es" else "code"
    return code_in(live.wait_for_mail(person["email"], subject, seen=seen).text)


def signed_in(you, live: Live, person: dict):
    """`you` in `person`'s shoes, signed in the way people are: their notice's link, the code
    it sends, and on to their personal page (its page, where they land)."""
    page = you.goto(person["link"])
    you.click("button", "Send me the code")
    page.wait_for_url(live.base + "/verify")
    page.get_by_label("Verification code").fill(code_for(live, person))
    you.click("button", "Continue")
    page.wait_for_url(live.base + "/me")
    return page
