"""Creating incidents from the command line."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from portal.extensions import db
from portal.models import Incident


def test_create_an_incident(runner, app):
    result = runner.invoke(
        args=[
            "incident",
            "create",
            "--slug",
            "acme-2026",
            "--title",
            "Customer records accessed",
            "--discovered",
            "2026-10-09",
            "--occurred",
            "2026-10-02",
            "--contact-phone",
            "1-800-555-0199",
        ]
    )
    assert result.exit_code == 0, result.output
    incident = db.session.scalar(select(Incident))
    assert (incident.slug, incident.discovered_on, incident.occurred_on) == (
        "acme-2026",
        date(2026, 10, 9),
        date(2026, 10, 2),
    )
    assert incident.contact_phone == "1-800-555-0199"
    assert incident.status == "investigating"


def test_bad_incident_input_is_refused_and_changes_nothing(runner, app):
    runner.invoke(
        args=[
            "incident",
            "create",
            "--slug",
            "acme-2026",
            "--title",
            "First",
            "--discovered",
            "2026-10-09",
        ]
    )
    cases = [
        (
            ["--slug", "acme-2026", "--title", "Again", "--discovered", "2026-10-09"],
            "already exists",
        ),
        (
            ["--slug", "Bad Slug!", "--title", "T", "--discovered", "2026-10-09"],
            "lowercase letters",
        ),
        (["--slug", "ok-slug", "--title", " ", "--discovered", "2026-10-09"], "title is required"),
        (["--slug", "ok-slug", "--title", "T", "--discovered", "09/10/2026"], "Invalid value"),
    ]
    for args, message in cases:
        result = runner.invoke(args=["incident", "create", *args])
        assert result.exit_code != 0
        assert message in result.output
    assert [i.title for i in db.session.scalars(select(Incident))] == ["First"]
