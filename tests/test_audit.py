"""The audit trail: every import, notice run and delivery recorded; tampering is found."""

from __future__ import annotations

import ast
import itertools

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from portal import ROOT
from portal.extensions import db
from portal.models import AuditEvent
from portal.services import audit
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import customer_row


@pytest.fixture
def history(app, incident, write_csv):
    import_customers(incident, write_csv([customer_row(1), customer_row(2)]), actor="cli:ann")
    queue_notices(incident, actor="cli:ann")
    return db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()


def test_each_act_is_recorded_in_a_chain(history, runner):
    assert [e.action for e in history] == [
        "incident.created",
        "customers.imported",
        "notices.queued",
    ]
    assert history[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(history))
    assert all(e.request_id.startswith("run-") for e in history)
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0
    assert "intact (3 events)" in result.output


def _bypass_append_only(statement: str, params: dict) -> None:
    """What a DBA could do: switch the guard off and edit history directly."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
        db.session.execute(text(statement), params)
        db.session.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only"))
    else:
        db.session.execute(text("DROP TRIGGER audit_event_no_update"))
        db.session.execute(text("DROP TRIGGER audit_event_no_delete"))
        db.session.execute(text(statement), params)
    db.session.commit()


def test_an_edited_event_is_named_by_verify(history, runner):
    _bypass_append_only(
        "UPDATE audit_event SET actor = 'cli:mallory' WHERE id = :id", {"id": history[1].id}
    )
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert f"Broken at event {history[1].id}: its contents were changed" in result.output


def test_a_deleted_event_is_named_by_verify(history, runner):
    _bypass_append_only("DELETE FROM audit_event WHERE id = :id", {"id": history[1].id})
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert f"Broken at event {history[2].id}: does not follow" in result.output


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_event SET actor = 'x'",
        "DELETE FROM audit_event",
    ],
)
def test_the_database_refuses_to_change_history(history, statement):
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(text(statement))
    db.session.rollback()
    assert len(db.session.scalars(select(AuditEvent)).all()) == 3


def test_the_chain_survives_a_signing_key_rotation(history, app, runner):
    old = app.config["SECRET_KEY"]
    app.config["SECRET_KEY"] = "a-brand-new-secret-key-with-enough-length-0123"
    app.config["SECRET_KEY_FALLBACKS"] = [old]
    audit.record("test.after_rotation", actor="test")
    db.session.commit()
    result = runner.invoke(args=["audit", "verify"])
    assert "intact (4 events)" in result.output


def test_every_actor_is_named_where_the_trail_defines_them():
    """Acts are recorded under portal.models.audit's names (Actor, customer_actor ...), never a
    string spelled out at the call: the admin's filter and the reports rely on one spelling."""
    spelled = []
    for path in sorted((ROOT / "portal").rglob("*.py")):
        if path == ROOT / "portal/models/audit.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.keyword)
                and node.arg == "actor"
                and isinstance(node.value, ast.Constant | ast.JoinedStr)
            ):
                spelled.append(f"{path.relative_to(ROOT)}:{node.value.lineno}")
    assert not spelled, "actors spelled out: " + ", ".join(spelled)
