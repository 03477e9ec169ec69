"""The audit trail: every import, notice run and delivery recorded; tampering is found."""

from __future__ import annotations

import ast
import hashlib
import hmac
import itertools
import json
import re
import secrets
from datetime import UTC, datetime

import pytest
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError

from portal import ROOT
from portal.config import new_data_key
from portal.extensions import db
from portal.models import AuditEvent
from portal.services import audit
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import AUDIT_KEY, SECRET_KEY, base_env, customer_row, pg_url
from tests.customer_flow import link_path, messages_to


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


def test_the_database_refuses_to_truncate_history(history):
    if db.session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE (its DELETE fires the row trigger)")
    # TRUNCATE fires no row trigger: even the table's owner must not wipe it in one statement.
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(text("TRUNCATE audit_event"))
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


# --- finding 5 of issue 12: the chain survives routine operations, and a lost tail shows ---

NEW_SECRET = "a-brand-new-secret-key-with-enough-length-0123456789"


def _in(other_app, *args):
    """Run `portal ...` against another app (the same database, another configuration)."""
    with other_app.app_context():
        result = other_app.test_cli_runner().invoke(args=list(args))
        db.session.remove()
    return result


def _record_in(other_app, action: str) -> None:
    with other_app.app_context():
        audit.record(action, actor="test")
        db.session.commit()
        db.session.remove()


def test_the_chain_survives_the_readmes_signing_key_rotation(history, env, make_app):
    # The README's rotation, finished: the new signing key, and the old one gone from fallbacks.
    rotated = make_app({**env, "PORTAL_SECRET_KEY": NEW_SECRET, "PORTAL_SECRET_KEY_FALLBACKS": ""})
    _record_in(rotated, "test.after_rotation")
    result = _in(rotated, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert "intact (4 events)" in result.output


def test_an_audit_key_rotation_starts_a_segment_that_the_old_key_still_verifies(
    history, env, make_app
):
    newest = new_data_key()
    rotated = make_app({**env, "PORTAL_AUDIT_KEYS": f"{newest},{AUDIT_KEY}"})
    _record_in(rotated, "test.after_rotation")
    old_id, new_id = audit.key_id(audit._decode(AUDIT_KEY)), audit.key_id(audit._decode(newest))
    db.session.expire_all()
    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [e.key_id for e in events] == [old_id, old_id, old_id, new_id]
    assert events[3].prev_hash == events[2].hash  # the new segment links to the old head

    result = _in(rotated, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert "intact (4 events)" in result.output
    assert f"events {events[0].id}-{events[2].id}: 3 (key {old_id}, verify-only)" in result.output
    assert f"events {events[3].id}-{events[3].id}: 1 (key {new_id}, signing)" in result.output

    # The old segment really is checked with the old key: without it, it cannot be verified.
    forgotten = make_app({**env, "PORTAL_AUDIT_KEYS": newest})
    result = _in(forgotten, "audit", "verify")
    assert result.exit_code == 1
    assert f"Broken at event {events[0].id}: it was signed with audit key {old_id}" in (
        result.output
    )


@pytest.fixture
def anchored(history, env, make_app, tmp_path):
    """The history, checkpointed to an anchor file by `portal audit checkpoint`."""
    anchor = tmp_path / "audit-anchor.jsonl"
    operator = make_app({**env, "PORTAL_AUDIT_ANCHOR_FILE": str(anchor)})
    result = _in(operator, "audit", "checkpoint")
    assert result.exit_code == 0, result.output
    assert f"Checkpoint of 3 events appended to {anchor}" in result.output
    return operator, anchor


def test_a_checkpoint_line_is_signed_and_names_the_head(anchored, history):
    _operator, anchor = anchored
    (line,) = anchor.read_text().splitlines()
    checkpoint = json.loads(line)
    assert checkpoint["count"] == 3
    assert checkpoint["head"] == history[2].hash
    assert checkpoint["key"] == audit.key_id(audit._decode(AUDIT_KEY))
    assert re.fullmatch(r"[0-9a-f]{64}", checkpoint["sig"])


def test_deleting_the_newest_events_is_reported_against_the_checkpoint(anchored, history):
    operator, _anchor = anchored
    _bypass_append_only("DELETE FROM audit_event WHERE id >= :id", {"id": history[1].id})
    result = _in(operator, "audit", "verify")
    assert result.exit_code == 1
    assert "Broken: 2 events missing since the checkpoint of " in result.output


def test_a_wiped_table_is_reported_broken(anchored):
    operator, _anchor = anchored
    _bypass_append_only("DELETE FROM audit_event", {})
    result = _in(operator, "audit", "verify")
    assert result.exit_code == 1
    assert "Broken: 3 events missing since the checkpoint of " in result.output


def test_a_chain_rebuilt_after_a_wipe_does_not_pass_for_the_old_one(anchored, history):
    operator, _anchor = anchored
    _bypass_append_only("DELETE FROM audit_event", {})
    for n in range(4):
        _record_in(operator, f"test.rebuilt.{n}")
    result = _in(operator, "audit", "verify")
    assert result.exit_code == 1
    assert "it is not the head recorded at the checkpoint of" in result.output


def test_events_after_the_checkpoint_are_fine_and_a_new_checkpoint_covers_them(anchored):
    operator, anchor = anchored
    _record_in(operator, "test.later")
    assert "intact (4 events)" in _in(operator, "audit", "verify").output
    assert _in(operator, "audit", "checkpoint").exit_code == 0
    assert len(anchor.read_text().splitlines()) == 2
    assert "All 4 events of the checkpoint of" in _in(operator, "audit", "verify").output


def test_a_forged_checkpoint_is_refused(anchored):
    operator, anchor = anchored
    checkpoint = json.loads(anchor.read_text())
    anchor.write_text(json.dumps({**checkpoint, "count": 1}) + "\n")
    result = _in(operator, "audit", "verify")
    assert result.exit_code == 1
    assert "its signature is wrong" in result.output


def test_a_checkpoint_is_not_written_over_a_broken_chain(anchored, history):
    operator, anchor = anchored
    _bypass_append_only("DELETE FROM audit_event WHERE id = :id", {"id": history[2].id})
    result = _in(operator, "audit", "checkpoint")
    assert result.exit_code == 1
    assert "1 event missing" in result.output
    assert "No checkpoint was written" in result.output
    assert len(anchor.read_text().splitlines()) == 1
    # The operators hear of it at once, even though the command itself fails.
    alerts = [m for m in messages_to("notices@example.test") if "does not verify" in m.row.subject]
    assert len(alerts) == 1 and "1 event missing" in alerts[0].text


def test_checkpoints_can_go_to_the_alert_address_and_be_checked_from_the_message(history, runner):
    result = runner.invoke(args=["audit", "checkpoint", "--email"])
    assert result.exit_code == 0, result.output
    (message,) = messages_to("notices@example.test")
    assert message.row.subject == "[portal alert] Audit checkpoint: 3 events"
    line = message.text.strip().splitlines()[-1]
    _bypass_append_only("DELETE FROM audit_event WHERE id = :id", {"id": history[2].id})
    result = runner.invoke(args=["audit", "verify", "--anchor", line])
    assert result.exit_code == 1
    assert "Broken: 1 event missing since the checkpoint of" in result.output


def test_a_checkpoint_needs_somewhere_to_go(history, runner):
    result = runner.invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 1
    assert "PORTAL_AUDIT_ANCHOR_FILE" in result.output


def test_audit_events_record_the_client_address_through_the_proxy(
    database_url, make_app, write_csv
):
    proxied = make_app(base_env(database_url, PORTAL_PROXY_HOPS="1"))
    with proxied.app_context():
        from portal.services.incidents import create_incident
        from tests.conftest import INCIDENT

        incident = create_incident(**INCIDENT, actor="test")
        import_customers(incident, write_csv([customer_row(1)]), actor="test")
        queue_notices(incident, actor="test")
        db.session.commit()
        path = link_path(customer_row(1)["email"])
        proxied.test_client().get(
            path,
            headers={"X-Forwarded-For": "198.51.100.23"},
            environ_base={"REMOTE_ADDR": "10.0.0.2"},
        )
        db.session.expire_all()
        opened = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "link.opened"))
        assert [e.client_addr for e in opened] == ["198.51.100.23"]
        # Outside a request there is no client.
        assert {e.client_addr for e in db.session.scalars(select(AuditEvent))} == {
            "198.51.100.23",
            "",
        }
        db.session.remove()


def test_the_client_address_is_part_of_what_the_chain_signs(history, runner):
    _bypass_append_only(
        "UPDATE audit_event SET client_addr = '192.0.2.1' WHERE id = :id", {"id": history[1].id}
    )
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert f"Broken at event {history[1].id}: its contents were changed" in result.output


# --- events written before the chain had its own keys ---

CHAIN_KEYS = "5a7c0de1f2b3"  # audit chain: its own keys, the client's address


def _legacy_event(prev: str, n: int) -> dict:
    """An event as the code before CHAIN_KEYS wrote it: signed with the key derived from the
    signing key, over the fields without key id or client address."""
    key = hmac.new(SECRET_KEY.encode(), b"portal audit chain v1", hashlib.sha256).digest()
    row = {
        "occurred_at": datetime(2026, 11, 1, 12, n, tzinfo=UTC),
        "actor": "cli:ann",
        "action": f"legacy.{n}",
        "subject_type": "",
        "subject_id": "",
        "request_id": "run-0",
        "outcome": "success",
        "details": "{}",
        "prev_hash": prev,
    }
    fields = [
        prev,
        row["occurred_at"].isoformat(),
        *(row[k] for k in ("actor", "action", "subject_type", "subject_id", "request_id")),
        row["outcome"],
        row["details"],
    ]
    row["hash"] = hmac.new(key, "\x1f".join(fields).encode(), hashlib.sha256).hexdigest()
    return row


def _migrate_to(revision: str, step) -> None:
    db.session.remove()
    step(revision=revision)
    db.session.remove()


def test_events_written_before_the_upgrade_keep_verifying(app, env, make_app):
    before = ScriptDirectory(str(ROOT / "migrations")).get_revision(CHAIN_KEYS).down_revision
    _migrate_to(before, downgrade)
    try:
        prev = audit.GENESIS
        for n in range(2):
            row = _legacy_event(prev, n)
            db.session.execute(
                text(
                    "INSERT INTO audit_event (occurred_at, actor, action, subject_type, "
                    "subject_id, request_id, outcome, details, prev_hash, hash) VALUES "
                    "(:occurred_at, :actor, :action, :subject_type, :subject_id, :request_id, "
                    ":outcome, :details, :prev_hash, :hash)"
                ),
                row,
            )
            prev = row["hash"]
        db.session.commit()
    finally:
        _migrate_to("head", upgrade)

    assert db.session.scalars(select(AuditEvent.key_id)).all() == ["legacy", "legacy"]
    audit.record("test.after_upgrade", actor="test")
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "intact (3 events)" in result.output
    assert "(legacy key)" in result.output

    # The runbook: add the legacy key to PORTAL_AUDIT_KEYS, then rotate the signing key away.
    legacy = app.test_cli_runner().invoke(args=["audit", "legacy-key"]).output.split()
    rotated = make_app(
        {**env, "PORTAL_SECRET_KEY": NEW_SECRET, "PORTAL_AUDIT_KEYS": f"{AUDIT_KEY},{legacy[0]}"}
    )
    assert "intact (3 events)" in _in(rotated, "audit", "verify").output
    without = make_app({**env, "PORTAL_SECRET_KEY": NEW_SECRET})
    result = _in(without, "audit", "verify")
    assert result.exit_code == 1
    assert "legacy key is not in PORTAL_AUDIT_KEYS" in result.output


def test_a_legacy_event_after_newer_ones_is_refused(history, runner):
    """A retired (perhaps leaked) signing key must not be able to extend the chain."""
    row = _legacy_event(history[-1].hash, 9)
    db.session.execute(
        text(
            "INSERT INTO audit_event (occurred_at, actor, action, subject_type, subject_id, "
            "request_id, outcome, details, prev_hash, hash, key_id, client_addr) VALUES "
            "(:occurred_at, :actor, :action, :subject_type, :subject_id, :request_id, "
            ":outcome, :details, :prev_hash, :hash, 'legacy', '')"
        ),
        row,
    )
    db.session.commit()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert "it claims the legacy format after newer events" in result.output


# --- the app's database role can only append (PostgreSQL) ---


def _deploy_grants(role: str) -> list[str]:
    """The grants for the app role, exactly as docs/deploy.md gives them."""
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    block = doc.split("-- app role grants: begin")[1].split("-- app role grants: end")[0]
    sql = "\n".join(ln for ln in block.splitlines() if not ln.strip().startswith("--"))
    statements = [s.strip() for s in sql.split(";") if s.strip()]
    assert any("REVOKE UPDATE, DELETE, TRUNCATE" in s for s in statements)
    return [s.replace("portal_app", role) for s in statements]


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("UPDATE audit_event SET actor = 'x'", "permission denied"),
        ("DELETE FROM audit_event", "permission denied"),
        ("TRUNCATE audit_event", "permission denied"),
        ("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only", "must be owner"),
        ("ALTER TABLE audit_event DISABLE TRIGGER ALL", "must be owner"),
        ("DROP TRIGGER audit_event_append_only ON audit_event", "must be owner"),
        ("DROP TABLE audit_event", "must be owner"),
    ],
)
def test_the_least_privilege_app_role_can_append_and_nothing_else(history, statement, refusal):
    if db.session.get_bind().dialect.name != "postgresql":
        pytest.skip("database roles are a PostgreSQL matter")
    role = f"portal_app_{secrets.token_hex(4)}"
    db.session.commit()
    admin = db.engine.connect()
    try:
        with admin.begin():
            admin.execute(text(f"CREATE ROLE {role} NOLOGIN"))
            for grant in _deploy_grants(role):
                admin.execute(text(grant))
        db.session.execute(text(f"SET LOCAL ROLE {role}"))
        assert db.session.scalar(text("SELECT current_user")) == role
        audit.record("test.as_app_role", actor="test")  # INSERT (and SELECT the head): allowed
        with pytest.raises(DBAPIError, match=refusal), db.session.begin_nested():
            db.session.execute(text(statement))
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 4
    finally:
        db.session.rollback()
        with admin.begin():
            admin.execute(text(f"DROP OWNED BY {role}"))
            admin.execute(text(f"DROP ROLE {role}"))
        admin.close()


# --- the chain's lock: held for the append and the commit, not for the whole request ---


@pytest.mark.skipif(not pg_url(), reason="the chain's lock is PostgreSQL's (advisory lock)")
def test_recording_an_event_does_not_hold_the_chains_lock_until_the_commit(app, incident):
    """Every request that records an event (a link opened, a code typed) once held the one lock
    of the whole chain from that moment to its commit, its page's rendering included: on notice
    day every instance's requests queued behind one another. Now the lock is taken as the
    transaction commits."""
    db.session.commit()
    before = db.session.scalar(select(func.count()).select_from(AuditEvent))
    audit.record("test.first", actor="test", subject_type="test", subject_id="1")
    audit.record("test.second", actor="test", subject_type="test", subject_id="2")
    db.session.flush()
    other = create_engine(pg_url())
    try:
        with other.connect() as conn:
            free = conn.execute(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": audit._CHAIN_LOCK}
            ).scalar()
            conn.rollback()
        assert free, "another transaction could not take the chain's lock before the commit"
        db.session.commit()
    finally:
        other.dispose()
    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(3)).all()
    assert [e.action for e in events[:2]] == ["test.second", "test.first"]
    assert events[0].prev_hash == events[1].hash and events[1].prev_hash == events[2].hash
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == before + 2


def test_events_of_a_transaction_rolled_back_are_not_kept(app, incident):
    db.session.commit()
    before = db.session.scalar(select(func.count()).select_from(AuditEvent))
    audit.record("test.undone", actor="test")
    db.session.rollback()
    audit.record("test.kept", actor="test")
    db.session.commit()
    actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert "test.undone" not in actions and actions[-1] == "test.kept"
    assert len(actions) == before + 1


def test_a_read_of_the_chain_in_the_transaction_sees_its_own_events(app, incident):
    audit.record("test.seen", actor="test", subject_type="test", subject_id="x")
    seen = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "test.seen"))
    assert seen is not None and seen.hash and seen.prev_hash
    db.session.commit()
    assert (
        db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "test.seen")
        )
        == 1
    )
