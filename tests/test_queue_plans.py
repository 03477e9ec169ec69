"""Queueing notices and the outbox's claim read by index at any size (issue 14, acceptance 2).

On PostgreSQL only: the plans are PostgreSQL's. The tables get enough rows, and statistics, for
the planner to choose as it would on notice day; a sequential scan of customer, exposure, notice
or outbox_message in any of these statements would read the whole table for every batch (every
claim), and a million notices would take hours again.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text

from portal import clock
from portal.extensions import db
from portal.services import notices, outbox
from tests.conftest import pg_url

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not pg_url(), reason="needs PORTAL_TEST_DATABASE_URL (PostgreSQL)"),
]

LARGE_TABLES = {"customer", "exposure", "notice", "outbox_message"}
CUSTOMERS = 60_000


def _fill(incident_id: int) -> None:
    """CUSTOMERS affected customers with three exposures each; a third of them notified, and
    their messages queued, sent and failed as a campaign leaves them (placeholder bytes: a plan
    does not open a sealed value)."""
    db.session.execute(
        text(
            "INSERT INTO customer (public_id, external_id, name_sealed, email_sealed,"
            " email_index, locale, region)"
            " SELECT md5(g::text), 'C-' || g, '\\x00', '\\x00', decode(md5(g::text), 'hex'),"
            " 'en', 'US-CA' FROM generate_series(1, :n) AS g"
        ),
        {"n": CUSTOMERS},
    )
    db.session.execute(
        text(
            "INSERT INTO exposure (customer_id, incident_id, data_class)"
            " SELECT customer.id, :incident, k FROM customer"
            " CROSS JOIN unnest(ARRAY['email_address', 'ssn', 'full_name']) AS k"
        ),
        {"incident": incident_id},
    )
    db.session.execute(
        text(
            "INSERT INTO notice (public_id, customer_id, incident_id, reference_code,"
            " link_nonce, queued_at) SELECT md5('n' || id), id, :incident,"
            " upper(substr(md5('r' || id), 1, 12)), 'nonce', now() FROM customer WHERE id % 3 = 0"
        ),
        {"incident": incident_id},
    )
    db.session.execute(
        text(
            "INSERT INTO outbox_message (kind, dedupe_key, message_id, recipient_sealed, subject,"
            " body_sealed, locale, status, attempts, next_attempt_at, last_error, notice_id,"
            " created_at)"
            " SELECT 'email', 'notice:' || public_id, '<m' || id || '@x>', '\\x00', 's', '\\x00',"
            " 'en', CASE WHEN id % 10 = 0 THEN 'queued' WHEN id % 10 = 1 THEN 'failed'"
            " ELSE 'sent' END, 1, now() - interval '1 day', '', id, now() FROM notice"
        ),
    )
    for table in LARGE_TABLES:
        db.session.execute(text(f"ANALYZE {table}"))


def _scans(statement, params: dict) -> list[str]:
    """The tables the statement's plan reads from start to end (Seq Scan nodes)."""
    connection = db.session.connection()
    compiled = statement.compile(dialect=connection.dialect)
    state = compiled.construct_expanded_state({**compiled.params, **params})
    (plan,) = connection.exec_driver_sql(
        "EXPLAIN (FORMAT JSON) " + state.statement, state.parameters
    ).one()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    found = []

    def walk(node: dict) -> None:
        if node.get("Node Type") == "Seq Scan":
            found.append(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def test_queueing_and_the_claim_read_no_large_table_from_start_to_end(app, incident):
    _fill(incident.id)
    after = CUSTOMERS // 2  # half-way through a run: the keyset, not the table, bounds a batch
    batch = {"incident_id": incident.id, "after": after}
    count = notices.BATCH_SIZE
    now = clock.now()
    statements = {
        "next customers": (notices._NEXT_CUSTOMERS, {**batch, "limit": count}),
        "their exposures": (notices._UNNOTIFIED_EXPOSURES, {**batch, "last": after + count}),
        "codes taken": (notices._TAKEN_CODES, {"codes": "ABCDEFGHJKMN,BCDEFGHJKMNP"}),
        "notices and messages": (
            notices._INSERT_BATCH,
            {
                "public_id": "p1,p2",
                "customer_id": f"{after + 1},{after + 2}",
                "reference_code": "ABCDEFGHJKMN,BCDEFGHJKMNP",
                "link_nonce": "n1,n2",
                "message_id": "<1@x>,<2@x>",
                "template_id": "1,1",
                "sealed": b"\x00\x01",
                "sealed_at": "1,3",
                "recipient_length": "1,0",
                "body_length": "1,0",
                "incident_id": incident.id,
                "now": now,
            },
        ),
        "outbox claim": (outbox.claim_statement(now + timedelta(seconds=1), 20, ["email"]), {}),
        "outbox claim of codes first": (
            outbox.claim_statement(now + timedelta(seconds=1), 20, ["email"], urgent=True),
            {},
        ),
    }
    for name, (statement, params) in statements.items():
        scanned = set(_scans(statement, params)) & LARGE_TABLES
        assert not scanned, f"{name}: sequential scan of {sorted(scanned)}"
