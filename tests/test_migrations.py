"""The migrations build exactly the schema the models describe, and carry the data along."""

from __future__ import annotations

import json
import secrets

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, insert, select
from sqlalchemy.orm import load_only

from portal import ROOT, clock
from portal.extensions import db
from portal.models import Job, OutboxMessage
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.services.verification import request_new_link
from tests.conftest import customer_row
from tests.customer_flow import messages_to, run_jobs


def test_models_and_migrations_agree(app):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


QUEUE = "27f94b5142e7"  # one job queue: new-link requests leave the outbox
# The outbox's columns at the revision before QUEUE (later ones are not there yet).
_OUTBOX_COLUMNS_THEN = (
    "kind",
    "dedupe_key",
    "message_id",
    "recipient_sealed",
    "subject",
    "body_sealed",
    "locale",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
)


def _then(row: OutboxMessage) -> dict:
    """The row's values for those columns, the model's defaults filled in as a flush would."""
    values = {name: getattr(row, name) for name in _OUTBOX_COLUMNS_THEN}
    return values | {"locale": "en", "attempts": 0, "last_error": ""}


def test_new_link_requests_queued_in_the_outbox_become_jobs_and_their_links_arrive(
    app, incident, write_csv
):
    people = [customer_row(1, email="ann@example.com"), customer_row(2, email="bob@example.com")]
    import_customers(incident, write_csv(people), actor="test")
    queue_notices(incident, actor="test")
    request_new_link("ann@example.com")  # a job today; the downgrade carries it to the outbox
    db.session.commit()
    before = ScriptDirectory(str(ROOT / "migrations")).get_revision(QUEUE).down_revision

    _migrate_to(before, downgrade)
    try:
        # As the code before this revision queued the request: an outbox row of kind "job".
        for status, address in (("queued", "bob@example.com"), ("sent", "ann@example.com")):
            row = OutboxMessage(
                kind="job",
                dedupe_key=f"newlink-request:{secrets.token_hex(16)}",
                message_id=secrets.token_hex(16),
                subject="new_link",
                status=status,
                next_attempt_at=clock.now(),
            )
            row.recipient = ""
            row.body = json.dumps({"email": address})
            # Written with the columns of that revision only: the model has gained some since.
            db.session.execute(insert(OutboxMessage.__table__).values(_then(row)))
        db.session.commit()
        old_jobs = db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.kind == "job")
            .options(load_only(*(getattr(OutboxMessage, c) for c in _OUTBOX_COLUMNS_THEN)))
        )
        assert sorted((r.status, json.loads(r.body)["email"]) for r in old_jobs) == [
            ("queued", "ann@example.com"),
            ("queued", "bob@example.com"),
            ("sent", "ann@example.com"),
        ]
    finally:
        _migrate_to("head", upgrade)

    jobs = db.session.scalars(select(Job)).all()
    assert sorted((j.kind, j.status, j.payload["email"]) for j in jobs) == [
        ("new_link", "queued", "ann@example.com"),
        ("new_link", "queued", "bob@example.com"),
    ]
    assert db.session.scalars(select(OutboxMessage.kind).distinct()).all() == ["email"]
    run_jobs(app)
    for address in ("ann@example.com", "bob@example.com"):
        assert len([m for m in messages_to(address) if "new link" in m.row.subject]) == 1


def _migrate_to(revision: str, step) -> None:
    db.session.remove()  # no transaction of ours may hold a table the migration alters
    step(revision=revision)
    db.session.remove()


OPTIONAL_EMAIL = "f4b8d2e6a1c9"  # a customer's email is optional: the customer table rebuilt


def _row_counts() -> dict[str, int]:
    from sqlalchemy import inspect, text

    from tests.conftest import TABLES

    present = set(inspect(db.engine).get_table_names())  # tables of later revisions may be gone
    return {
        table: db.session.scalar(text(f"SELECT count(*) FROM {table}"))  # noqa: S608
        for table in TABLES
        if table != "alembic_version" and table in present
    }


def test_making_email_optional_keeps_every_customer_notice_and_verification(
    app, incident, write_csv
):
    from portal.models import Challenge, Customer, Exposure, Notice
    from portal.services.verification import start_from_reference

    people = [customer_row(n) for n in range(1, 4)]
    import_customers(incident, write_csv(people), actor="test")
    queue_notices(incident, actor="test")
    notice = db.session.scalars(select(Notice)).first()
    start_from_reference(notice.reference_code)  # a verification under way
    incident_id = incident.id
    db.session.commit()
    before = _row_counts()
    assert min(before[t] for t in ("customer", "exposure", "notice", "challenge")) > 0
    previous = ScriptDirectory(str(ROOT / "migrations")).get_revision(OPTIONAL_EMAIL)

    _migrate_to(previous.down_revision, downgrade)  # the rebuild runs both ways
    try:
        down = _row_counts()  # the tables of later revisions are gone for now
        assert down == {table: count for table, count in before.items() if table in down}
    finally:
        _migrate_to("head", upgrade)

    assert _row_counts() == before
    assert db.session.scalar(select(func.count()).select_from(Challenge)) == before["challenge"]
    assert {e.customer.external_id for e in db.session.scalars(select(Exposure))} == {
        "C-00001",
        "C-00002",
        "C-00003",
    }
    # Foreign keys are enforced again after the migration: a notice of no customer is refused.
    from sqlalchemy.exc import IntegrityError

    orphan = Notice(
        customer_id=999_999, incident_id=incident_id, reference_code="X", link_nonce="n" * 32
    )
    db.session.add(orphan)
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Customer)) == 3


ROLES = "f1a2b3c4d5e6"  # staff roles (several per member) and four-eyes approvals


def test_every_staff_member_keeps_their_role_when_roles_become_several(app):
    from sqlalchemy import inspect

    from portal.models import StaffMember
    from portal.services.staff import invite

    invite("agent@example.com", "agent", actor="test")
    invite("boss@example.com", "admin", actor="test")
    db.session.commit()
    before = ScriptDirectory(str(ROOT / "migrations")).get_revision(ROLES).down_revision
    _migrate_to(before, downgrade)
    try:
        columns = [c["name"] for c in inspect(db.engine).get_columns("staff_member")]
        assert "roles" not in columns
    finally:
        _migrate_to("head", upgrade)
    held = {m.email: (m.role, m.roles) for m in db.session.scalars(select(StaffMember))}
    assert held == {
        "agent@example.com": ("agent", ("agent",)),
        "boss@example.com": ("admin", ("admin",)),
    }
