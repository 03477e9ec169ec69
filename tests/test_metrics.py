"""The numbers: the funnel matches what happened, at a cost that does not grow with customers."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from sqlalchemy import event, select, update

from portal import clock as portal_clock
from portal.extensions import db
from portal.models import Customer, GuidanceProgress, Notice
from portal.services import metrics, protection
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import customer_row
from tests.staff_flow import set_up
from tests.test_protection import load_codes, offer_cli


def scenario(incident, write_csv, runner, tmp_path, count: int) -> None:
    """`count` affected; 8 delivered, 6 opened, 4 verified, 3 viewed the plan, 2 ticked a step,
    1 reset a password, 2 enrolled."""
    rows = [customer_row(n, email=f"p{n}@example.com", phone="") for n in range(1, count + 1)]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    notices = db.session.scalars(select(Notice).order_by(Notice.id)).all()
    now = portal_clock.now()
    for i, notice in enumerate(notices):
        notice.sent_at = now if i < 8 else None
        notice.opened_at = now if i < 6 else None
        notice.verified_at = now if i < 4 else None
    customers = db.session.scalars(select(Customer).order_by(Customer.id)).all()
    for c in customers[:3]:
        c.plan_viewed_at = now
    for c in customers[:2]:
        db.session.add(GuidanceProgress(customer_id=c.id, step_id="scam-watch", done_at=now))
    customers[0].password_changed_at = now
    db.session.commit()
    offer = offer_cli(runner)
    load_codes(runner, tmp_path, ["CODE-AAAA-1", "CODE-BBBB-2"])
    for c in customers[:2]:
        protection.enroll(offer, c)


def test_the_funnel_matches_the_scenario(app, runner, incident, write_csv, tmp_path, clock):
    scenario(incident, write_csv, runner, tmp_path, 10)
    f = metrics.funnel(incident)
    assert f.counts == {
        "affected": 10,
        "delivered": 8,
        "mailed": 0,
        "opened": 6,
        "verified": 4,
        "plan_viewed": 3,
        "steps_done": 2,
        "password_reset": 1,
        "enrolled": 2,
    }
    assert f.percent("verified") == 40.0

    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    page = admin.get("/admin/metrics").get_data(as_text=True)
    assert "<svg" in page and "<table" in page
    assert "4 (40.0%)" in page
    download = admin.get("/admin/metrics.csv")
    assert download.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(download.get_data(as_text=True))))
    assert {
        "incident": "acme-2026",
        "stage": "enrolled",
        "count": "2",
        "percent_of_affected": "20.0",
    } in rows


def _page_queries(app, admin) -> int:
    count = []
    listener = lambda *args: count.append(1)  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        assert admin.get("/admin/metrics").status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    return len(count)


def test_the_metrics_page_costs_the_same_for_more_customers(
    app, runner, incident, write_csv, tmp_path, clock
):
    scenario(incident, write_csv, runner, tmp_path, 10)
    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    admin.get("/admin/metrics")
    small = _page_queries(app, admin)
    more = [customer_row(n, email=f"q{n}@example.com", phone="") for n in range(100, 400)]
    import_customers(incident, write_csv(more), actor="test")
    queue_notices(incident, actor="test")
    db.session.execute(update(Notice).values(opened_at=portal_clock.now()))
    db.session.commit()
    assert _page_queries(app, admin) == small
    assert metrics.funnel(incident).counts["opened"] == 310


def test_the_metrics_page_counts_todays_csp_reports(app, clock):
    import json

    admin = app.test_client()
    set_up(app, admin, "admin.csp@example.com", "admin", clock)
    report = {"csp-report": {"effective-directive": "img-src", "blocked-uri": "https://x.test/a"}}
    for _ in range(2):
        sent = app.test_client().post(
            "/csp-report", data=json.dumps(report), content_type="application/csp-report"
        )
        assert sent.status_code == 204
    page = admin.get("/admin/metrics").get_data(as_text=True)
    assert "(CSP reports)</td><td>2</td>" in page


def test_the_metrics_page_says_when_messages_have_waited_too_long(app, clock):
    """Issue 13: the queue's age, and the alert an operator acts on (a worker down, a mail server
    unreachable), on the console as well as from `portal outbox status`."""
    from portal.services import outbox

    admin = app.test_client()
    set_up(app, admin, "admin.queue@example.com", "admin", clock)
    row = outbox.enqueue_email(
        dedupe_key="waiting", recipient="a@example.com", subject="s", text="t", html="<p>h</p>"
    )
    db.session.commit()
    calm = admin.get("/admin/metrics").get_data(as_text=True)
    row.created_at = portal_clock.now() - timedelta(minutes=20)  # queued 20 minutes ago
    db.session.commit()
    alarmed = admin.get("/admin/metrics").get_data(as_text=True)

    assert "Longest wait in the queue</td>\n      <td>0 minutes" in calm
    assert "is a worker running" not in calm
    assert "20 minutes" in alarmed and "is a worker running" in alarmed
