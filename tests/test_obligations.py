"""The legal clock: which duties apply, their deadlines, and recording them as done."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import insert, select, update

from portal.extensions import db, vault
from portal.models import AuditEvent, Customer, Exposure, Incident, Notice, OutboxMessage
from portal.services import obligations
from portal.services.incidents import create_incident
from portal.services.notices import queue_notices
from tests.customer_flow import csrf_from
from tests.staff_flow import set_up

DISCOVERED = date(2026, 11, 2)  # a Monday


def add_customers(incident, region: str, count: int, classes=("email_address",), **extra) -> None:
    """Many customers at once, straight into the tables (the import is tested elsewhere)."""
    rows = []
    for n in range(count):
        public_id = f"{region}-{n:05d}".ljust(32, "0")[:32]
        rows.append(
            {
                "public_id": public_id,
                "external_id": f"{region}-{n}",
                "name_sealed": vault.seal("x", f"customer.name.{public_id}"),
                "email_sealed": vault.seal(
                    f"{region}{n}@example.com", f"customer.email.{public_id}"
                ),
                "email_index": vault.blind_index(f"{region}{n}", "email"),
                "locale": "en",
                "region": region,
                **extra,
            }
        )
    db.session.execute(insert(Customer), rows)
    ids = db.session.query(Customer.id).filter(Customer.region == region).all()
    db.session.execute(
        insert(Exposure),
        [
            {"customer_id": i, "incident_id": incident.id, "data_class": c}
            for (i,) in ids
            for c in classes
        ],
    )
    db.session.commit()


@pytest.fixture
def scenario(app):
    incident = create_incident(slug="big-2026", title="Big", discovered_on=DISCOVERED, actor="test")
    add_customers(incident, "US-CA", 600)
    add_customers(incident, "US-TX", 300)
    add_customers(incident, "DE", 5)
    return incident


def end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=UTC)


def by_id(incident) -> dict[str, obligations.DutyStatus]:
    return {s.duty.id: s for s in obligations.for_incident(incident)}


def send_notices(incident, region: str, on: datetime) -> None:
    """Queue the incident's notices and mark those of one region's residents as sent."""
    queue_notices(incident, actor="test")
    in_region = select(Customer.id).where(Customer.region == region)
    db.session.execute(
        update(Notice)
        .where(Notice.incident_id == incident.id, Notice.customer_id.in_(in_region))
        .values(sent_at=on)
    )
    sent = select(Notice.id).where(Notice.sent_at.is_not(None))
    db.session.execute(
        update(OutboxMessage).where(OutboxMessage.notice_id.in_(sent)).values(status="sent")
    )
    db.session.commit()


def test_the_duties_and_deadlines_for_a_known_scenario(scenario):
    statuses = by_id(scenario)
    assert set(statuses) == {
        "gdpr-authority",
        "gdpr-individuals",
        "ca-individuals",
        "ca-attorney-general",
        "tx-individuals",
        "tx-attorney-general",
    }
    start = datetime.combine(DISCOVERED, time.min, tzinfo=UTC)
    assert statuses["gdpr-authority"].due_at == start + timedelta(hours=72)
    assert statuses["ca-individuals"].due_at == end_of(DISCOVERED + timedelta(days=30))
    assert statuses["tx-individuals"].due_at == end_of(DISCOVERED + timedelta(days=60))
    assert statuses["tx-attorney-general"].due_at == end_of(DISCOVERED + timedelta(days=30))
    assert statuses["ca-individuals"].counts == [("US-CA", 600)]
    assert statuses["gdpr-authority"].counts == [("DE", 5)]


def test_the_ca_attorney_general_copy_counts_from_the_notices_not_from_discovery(scenario, clock):
    clock.move_to(datetime(2027, 6, 1, tzinfo=UTC))  # long after discovery
    ca_ag = by_id(scenario)["ca-attorney-general"]
    # No notice has gone: the clock has not started, so nothing is overdue or made up.
    assert ca_ag.due_at is None and ca_ag.waiting_on_notices and not ca_ag.overdue
    assert ca_ag not in obligations.attention([scenario])

    send_notices(scenario, "US-CA", datetime(2026, 11, 20, 15, 0, tzinfo=UTC))
    ca_ag = by_id(scenario)["ca-attorney-general"]
    assert ca_ag.notified == date(2026, 11, 20)
    assert ca_ag.due_at == end_of(date(2026, 12, 5))  # 15 calendar days after
    assert ca_ag.overdue  # it is June 2027 by the test's clock


def test_a_campaign_half_sent_keeps_the_ca_attorney_general_waiting(scenario):
    queue_notices(scenario, actor="test")
    one = db.session.scalar(
        select(Notice.id)
        .join(Customer, Customer.id == Notice.customer_id)
        .where(Customer.region == "US-CA")
        .limit(1)
    )
    db.session.execute(
        update(Notice).where(Notice.id == one).values(sent_at=datetime(2026, 11, 20, tzinfo=UTC))
    )
    db.session.commit()
    ca_ag = by_id(scenario)["ca-attorney-general"]
    assert ca_ag.waiting_on_notices and ca_ag.due_at is None
    ca = by_id(scenario)["ca-individuals"]
    assert not ca.by_campaign and ca.campaign.sent == 1 and ca.campaign.pending == 599


def mail_incident(**facts):
    """5 customers (WA 3 who agreed to email, OR 2 who did not say), their notices sent on
    9 November 2026 but for one Washington reader's, which failed for good."""
    incident = create_incident(
        slug="mail-2026", title="Mail", discovered_on=DISCOVERED, actor="test", **facts
    )
    add_customers(incident, "US-WA", 3, email_consent=True)
    add_customers(incident, "US-OR", 2)  # no consent to email on record
    queue_notices(incident, actor="test")
    db.session.execute(
        update(Notice)
        .where(Notice.incident_id == incident.id)
        .values(sent_at=datetime(2026, 11, 9, 10, 0, tzinfo=UTC))
    )
    washington = select(Customer.id).where(Customer.region == "US-WA")
    bounced = db.session.scalar(
        select(Notice.id).where(Notice.customer_id.in_(washington)).order_by(Notice.id).limit(1)
    )
    db.session.execute(update(Notice).where(Notice.id == bounced).values(sent_at=None))
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.notice_id == bounced)
        .values(status="failed", last_error="550 no such user")
    )
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.notice_id != bounced, OutboxMessage.notice_id.is_not(None))
        .values(status="sent")
    )
    db.session.commit()
    return incident


def test_notifying_individuals_is_done_by_the_campaign_with_its_evidence(app, clock):
    incident = mail_incident()
    clock.move_to(datetime(2027, 1, 15, tzinfo=UTC))  # past the 30 days

    statuses = by_id(incident)
    wa = statuses["wa-individuals"]
    assert wa.by_campaign and not wa.overdue and wa.notified == date(2026, 11, 9)
    assert (wa.campaign.sent, wa.campaign.failed, wa.campaign.pending) == (2, 1, 0)
    assert statuses["or-individuals"].by_campaign
    assert obligations.attention([incident]) == []

    evidence = obligations.evidence(incident)
    counted = (evidence.campaign.notices, evidence.campaign.sent, evidence.campaign.failed)
    assert counted == (5, 4, 1)
    assert evidence.letters is None  # email is enough for this incident

    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    page = admin.get("/admin/obligations").get_data(as_text=True)
    assert "notices: 2 of 3 delivered, the last on 2026-11-09" in page
    assert "1 failed (see the follow-up above)" in page
    assert "Failed for good: 1" in page and "Delivered to the mail server: 4" in page
    assert "US-WA: 3" in page and "Overdue" not in page and "need a letter" not in page


def test_where_notice_must_go_by_post_the_duty_waits_for_the_letters(app, clock):
    incident = mail_incident(postal_notice=True)
    clock.move_to(datetime(2027, 1, 15, tzinfo=UTC))  # past the 30 days (WA) and 45 (OR)

    # The two without consent, and the Washington reader whose email failed for good.
    assert obligations.evidence(incident).letters == 3
    statuses = by_id(incident)
    wa, oregon = statuses["wa-individuals"], statuses["or-individuals"]
    assert (wa.letters, oregon.letters) == (1, 2)
    assert not wa.by_campaign and wa.overdue and oregon.overdue

    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    page = admin.get("/admin/obligations").get_data(as_text=True)
    assert "3 people still need a letter" in page
    assert "1 letter still needed" in page and "2 letters still needed" in page

    # Consent on record, and the bounced address fixed and the notice sent again: no letter.
    db.session.execute(update(Customer).values(email_consent=True))
    db.session.execute(
        update(Notice)
        .where(Notice.sent_at.is_(None))
        .values(sent_at=datetime(2026, 11, 12, tzinfo=UTC))
    )
    db.session.execute(update(OutboxMessage).values(status="sent"))
    db.session.commit()
    assert obligations.evidence(incident).letters == 0
    wa = by_id(incident)["wa-individuals"]
    assert wa.by_campaign and wa.notified == date(2026, 11, 12) and not wa.overdue


def test_without_postal_notice_nobody_is_counted_for_a_letter(scenario):
    assert obligations.evidence(scenario).letters is None


def test_a_duty_without_a_fixed_time_is_never_overdue(scenario, clock):
    clock.move_to(datetime(2030, 1, 1, tzinfo=UTC))
    art34 = by_id(scenario)["gdpr-individuals"]
    assert art34.without_undue_delay and art34.due_at is None and not art34.overdue


# --- who must be told: each rule on its boundary ----------------------------------------------


def applying(app, residents: dict, health: dict | None = None, **incident_facts) -> set[str]:
    """The duties the catalogue applies to these counts (no database: the rules alone)."""
    incident = Incident(
        slug="x", title="x", discovered_on=DISCOVERED, **({"hipaa_role": "none"} | incident_facts)
    )
    facts = obligations.Facts(residents, health or {})
    return {d.id for d in obligations.catalogue()[1] if obligations._applies(d, incident, facts)}


@pytest.mark.parametrize(
    ("duty", "region", "below", "at"),
    [
        ("ca-attorney-general", "US-CA", 500, 501),  # more than 500
        ("wa-attorney-general", "US-WA", 500, 501),  # more than 500
        ("co-attorney-general", "US-CO", 499, 500),  # 500 or more
        ("fl-legal-affairs", "US-FL", 499, 500),  # 500 or more
        ("tx-attorney-general", "US-TX", 249, 250),  # 250 or more
        ("fl-credit-bureaus", "US-FL", 1000, 1001),  # more than 1,000
        ("nj-credit-bureaus", "US-NJ", 1000, 1001),
        ("ny-credit-bureaus", "US-NY", 5000, 5001),  # more than 5,000
        ("tx-credit-bureaus", "US-TX", 10000, 10001),  # more than 10,000
    ],
)
def test_a_state_threshold_applies_from_its_number(app, duty, region, below, at):
    assert duty not in applying(app, {region: below})
    assert duty in applying(app, {region: at})
    assert duty in applying(app, {region: at + 1})


def test_the_500_boundary_of_the_ca_wa_co_and_fl_regulators(app):
    regions = ("US-CA", "US-WA", "US-CO", "US-FL")
    regulators = {"ca-attorney-general", "wa-attorney-general", "co-attorney-general"}
    regulators.add("fl-legal-affairs")
    assert applying(app, dict.fromkeys(regions, 499)) & regulators == set()
    assert applying(app, dict.fromkeys(regions, 500)) & regulators == {
        "co-attorney-general",
        "fl-legal-affairs",
    }
    assert applying(app, dict.fromkeys(regions, 501)) & regulators == regulators


def test_any_resident_brings_the_states_notice_and_the_ny_and_ma_agencies(app):
    ids = applying(app, {"US-NY": 1, "US-MA": 1, "US-WA": 1, "US-OH": 1})
    assert {"ny-individuals", "ny-agencies", "ma-individuals", "ma-attorney-general"} <= ids
    assert {"ma-ocabr", "wa-individuals", "oh-individuals"} <= ids
    assert "nydfs" not in ids  # only for organisations NYDFS regulates


def test_uk_residents_bring_the_ico_and_eu_residents_the_supervisory_authority(app):
    assert {"uk-ico", "uk-individuals"} <= applying(app, {"GB": 1})
    assert {"uk-ico"} <= applying(app, {"GB-SCT": 1})
    assert "gdpr-authority" not in applying(app, {"GB-ENG": 3})
    assert {"gdpr-authority", "gdpr-individuals"} <= applying(app, {"FR": 1})
    assert "uk-ico" not in applying(app, {"FR": 1, "US-GA": 4})


HIPAA = {"hipaa-individuals", "hipaa-hhs", "hipaa-hhs-log", "hipaa-media", "hipaa-covered-entity"}


def test_hipaa_follows_the_role_not_the_data(app):
    phi = {"US-TX": 10}
    assert applying(app, phi, phi, hipaa_role="none") & HIPAA == set()
    assert applying(app, phi, phi, hipaa_role="business_associate") & HIPAA == {
        "hipaa-covered-entity"
    }
    assert applying(app, phi, phi, hipaa_role="covered_entity") & HIPAA == {
        "hipaa-individuals",
        "hipaa-hhs-log",
    }
    # A covered entity with no health data involved: HIPAA is not engaged.
    assert applying(app, phi, {}, hipaa_role="covered_entity") & HIPAA == set()


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        ({"US-TX": 499}, {"hipaa-individuals", "hipaa-hhs-log"}),
        ({"US-TX": 500}, {"hipaa-individuals", "hipaa-hhs"}),
        ({"US-TX": 501}, {"hipaa-individuals", "hipaa-hhs", "hipaa-media"}),
        # 500 in all but no state above 500: HHS now, no media.
        ({"US-TX": 250, "US-OK": 250}, {"hipaa-individuals", "hipaa-hhs"}),
        ({"US-TX": 500, "US-OK": 1}, {"hipaa-individuals", "hipaa-hhs"}),
    ],
)
def test_hipaa_counts_on_the_500_boundary(app, health, expected):
    assert applying(app, health, health, hipaa_role="covered_entity") & HIPAA == expected


def test_the_ftc_safeguards_rule_is_for_covered_organisations_from_500_consumers(app):
    assert "ftc-safeguards" not in applying(app, {"US-GA": 600})
    app.config["FTC_SAFEGUARDS_COVERED"] = True
    assert "ftc-safeguards" not in applying(app, {"US-GA": 300, "US-AL": 199})
    assert "ftc-safeguards" in applying(app, {"US-GA": 300, "US-AL": 200})
    assert "ftc-safeguards" in applying(app, {"US-GA": 300, "US-AL": 201})


# --- when: calendar days, the year's end, business days -----------------------------------------


def due(duty_id: str, **incident_facts) -> datetime | None:
    duty = next(d for d in obligations.catalogue()[1] if d.id == duty_id)
    facts = {"discovered_on": DISCOVERED} | incident_facts
    return obligations.deadline(duty, Incident(slug="x", title="x", **facts))


def test_the_hhs_log_is_due_60_days_after_the_year_of_discovery(app):
    assert due("hipaa-hhs-log") == end_of(date(2027, 3, 1))
    assert due("hipaa-hhs-log", discovered_on=date(2027, 1, 4)) == end_of(date(2028, 2, 29))
    assert due("hipaa-hhs") == end_of(DISCOVERED + timedelta(days=60))
    assert due("hipaa-covered-entity") == end_of(DISCOVERED + timedelta(days=60))


@pytest.mark.parametrize(
    ("material", "filed_by"),
    [
        (date(2026, 11, 5), date(2026, 11, 12)),  # Thu: Fri, Mon, Tue, (Wed Veterans Day) Thu
        (date(2026, 11, 6), date(2026, 11, 13)),  # Fri: Mon, Tue, (Wed 11th Veterans Day) Thu, Fri
        (date(2026, 11, 25), date(2026, 12, 2)),  # the Wednesday before Thanksgiving
        (date(2026, 11, 28), date(2026, 12, 3)),  # a Saturday: Mon, Tue, Wed, Thu
        (date(2026, 12, 22), date(2026, 12, 29)),  # Christmas on a Friday
        (date(2027, 12, 22), date(2027, 12, 29)),  # Christmas (Sat) observed on Fri 24th
        (date(2027, 12, 28), date(2028, 1, 4)),  # New Year (Sat) observed on Fri 31 Dec 2027
        (date(2022, 12, 21), date(2022, 12, 28)),  # Christmas (Sun) observed on Mon 26th
        (date(2026, 1, 14), date(2026, 1, 21)),  # Martin Luther King Jr. Day, Mon 19 Jan 2026
        (date(2026, 7, 1), date(2026, 7, 8)),  # Independence Day (Sat) observed on Fri 3 Jul
        (date(2026, 6, 17), date(2026, 6, 24)),  # Juneteenth, Fri 19 Jun 2026
    ],
)
def test_the_sec_counts_four_business_days_skipping_weekends_and_federal_holidays(
    app, material, filed_by
):
    assert due("sec-8k", materiality_on=material) == end_of(filed_by)


def test_no_sec_duty_before_a_materiality_decision(app):
    assert "sec-8k" not in applying(app, {"US-NY": 1})
    assert "sec-8k" in applying(app, {"US-NY": 1}, materiality_on=date(2026, 11, 5))


def test_federal_holidays_are_observed_on_the_nearest_weekday():
    holidays = obligations.federal_holidays
    assert date(2026, 11, 26) in holidays(2026)  # Thanksgiving, 4th Thursday
    assert date(2026, 5, 25) in holidays(2026)  # Memorial Day, last Monday
    assert date(2027, 12, 31) in holidays(2027)  # New Year's Day 2028 is a Saturday
    assert date(2028, 1, 1) not in holidays(2028)
    assert date(2023, 1, 2) in holidays(2023)  # New Year's Day 2023 is a Sunday
    assert len(holidays(2026)) == 11


# --- the page, recording, and the filing pack ---------------------------------------------------


def test_recording_a_duty_takes_it_off_the_overdue_list(app, scenario, clock):
    overdue = [s.duty.id for s in obligations.attention([scenario]) if s.overdue]
    assert "gdpr-authority" in overdue  # discovered weeks ago
    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    front = admin.get("/admin/").get_data(as_text=True)
    assert "GDPR: notify the lead supervisory authority" in front and "Overdue" in front
    page = admin.get("/admin/obligations")
    text = page.get_data(as_text=True)
    assert "Not legal advice" in text
    assert "US-CA: 600" in text and "US-TX: 300" in text
    assert "waiting on the notices" in text and "Without undue delay" in text
    response = admin.post(
        "/admin/obligations/big-2026/gdpr-authority",
        data={"csrf_token": csrf_from(page), "done_on": "2026-11-04", "how": "Filed, ref BfDI-123"},
    )
    assert response.status_code == 302
    still = [s.duty.id for s in obligations.attention([scenario]) if s.overdue]
    assert "gdpr-authority" not in still
    assert b"Filed, ref BfDI-123" in admin.get("/admin/obligations").data
    bad = admin.post(
        "/admin/obligations/big-2026/ca-individuals",
        data={"csrf_token": csrf_from(page), "done_on": "soon", "how": "x"},
    )
    assert bad.status_code == 302
    ca = next(s for s in obligations.for_incident(scenario) if s.duty.id == "ca-individuals")
    assert ca.done is None  # a bad date records nothing


def test_the_filing_pack_has_the_counts_and_a_sample_notice_and_no_personal_data(
    app, scenario, clock
):
    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    page = admin.get("/admin/obligations")
    response = admin.post(
        "/admin/obligations/big-2026/filing-pack", data={"csrf_token": csrf_from(page)}
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert "filing-pack-big-2026.zip" in response.headers["Content-Disposition"]
    pack = zipfile.ZipFile(io.BytesIO(response.data))
    assert set(pack.namelist()) == {
        "README.txt",
        "counts.csv",
        "duties.csv",
        *(
            f"sample-notice-{r}.{part}"
            for r in ("US-CA", "US-TX", "DE")
            for part in ("txt", "html")
        ),
    }
    counts = pack.read("counts.csv").decode()
    assert "US-CA,600,0,0,0" in counts and "US-TX,300,0,0,0" in counts and "DE,5,0,0,0" in counts
    notice = pack.read("sample-notice-US-CA.txt").decode()
    assert "Notice of Data Breach" in notice and obligations.SAMPLE_REFERENCE in notice
    # Each state's sample is what its residents got: Germany's carries GDPR Art. 34, not the FTC.
    german = pack.read("sample-notice-DE.txt").decode()
    assert "Article 34" in german and "Federal Trade Commission" not in german
    assert "Federal Trade Commission" in notice
    everything = b"".join(pack.read(name) for name in pack.namelist())
    assert b"@example.com" not in everything  # no customer's address
    assert b"US-CA-0" not in everything  # no customer's id
    assert "NOT LEGAL ADVICE" in pack.read("README.txt").decode()
    recorded = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "obligations.filing_pack")
    )
    assert recorded is not None and recorded.subject_id == "big-2026"


def test_the_filing_pack_needs_an_admin_and_a_csrf_token(app, scenario, clock):
    agent = app.test_client()
    set_up(app, agent, "agent@example.com", "agent", clock)
    page = agent.get("/staff/cases")
    refused = agent.post(
        "/admin/obligations/big-2026/filing-pack", data={"csrf_token": csrf_from(page)}
    )
    assert refused.status_code == 403
    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    assert admin.post("/admin/obligations/big-2026/filing-pack").status_code == 400
    stranger = app.test_client()
    assert stranger.post("/admin/obligations/big-2026/filing-pack").status_code in (302, 400, 403)
    # An export: with a proof older than five minutes, the password and code come first.
    clock.move(timedelta(minutes=6))
    stale = admin.post(
        "/admin/obligations/big-2026/filing-pack",
        data={"csrf_token": csrf_from(admin.get("/admin/obligations"))},
    )
    assert stale.status_code == 302 and "/staff/reauth" in stale.headers["Location"]
    none = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "obligations.filing_pack")
    )
    assert none is None


def test_the_catalogue_cites_its_sources():
    as_of, duties = obligations.catalogue()
    assert as_of >= "2026-11-01" and len(duties) >= 60
    assert all(d.source for d in duties)
    text = obligations.CATALOGUE.read_text(encoding="utf-8")
    assert "NOT LEGAL ADVICE" in text


# --- the demo incident, computed by hand ------------------------------------------------------

# The demo (portal.services.demo): discovered Friday 9 October 2026; found material the same
# day; a HIPAA covered entity; 12 customers: CA 2, NY 2, FL 2, WA 1 (health data), TX 1, CO 1,
# MA 1, IL 1, DE 1, and FL's second has health data too. Worked out from the statutes' rules:
#   72 hours from 9 Oct 00:00 UTC            -> 12 Oct 00:00
#   30 days from 9 Oct                       -> 8 Nov;   60 days -> 8 Dec
#   HHS log (2 people < 500): 31 Dec + 60    -> 1 Mar 2027
#   SEC: Mon 12 Oct is Columbus Day          -> Tue 13, Wed 14, Thu 15, Fri 16 Oct
#   No fixed time (GDPR Art. 34, NY agencies, MA): "without undue delay"
#   Not triggered: CA/WA/CO/FL/TX regulators (too few), credit bureaus, HIPAA HHS now and media
#   (fewer than 500), NYDFS and FTC (settings off), Illinois (no fixed time in the catalogue).
UNDUE = "Without undue delay (no fixed number of days)"
DEMO_TABLE = {
    "gdpr-authority": ("DE: 1", "2026-10-12 00:00 UTC"),
    "sec-8k": (
        "US-CA: 2 US-FL: 2 US-NY: 2 DE: 1 US-CO: 1 US-IL: 1 US-MA: 1 US-TX: 1 US-WA: 1",
        "2026-10-16 23:59 UTC",
    ),
    "ca-individuals": ("US-CA: 2", "2026-11-08 23:59 UTC"),
    "co-individuals": ("US-CO: 1", "2026-11-08 23:59 UTC"),
    "fl-individuals": ("US-FL: 2", "2026-11-08 23:59 UTC"),
    "ny-individuals": ("US-NY: 2", "2026-11-08 23:59 UTC"),
    "wa-individuals": ("US-WA: 1", "2026-11-08 23:59 UTC"),
    "hipaa-individuals": ("US-FL: 1 US-WA: 1", "2026-12-08 23:59 UTC"),
    "tx-individuals": ("US-TX: 1", "2026-12-08 23:59 UTC"),
    "hipaa-hhs-log": ("US-FL: 1 US-WA: 1", "2027-03-01 23:59 UTC"),
    "gdpr-individuals": ("DE: 1", UNDUE),
    "ma-attorney-general": ("US-MA: 1", UNDUE),
    "ma-individuals": ("US-MA: 1", UNDUE),
    "ma-ocabr": ("US-MA: 1", UNDUE),
    "ny-agencies": ("US-NY: 2", UNDUE),
}


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _rows(page: str, slug: str) -> dict[str, tuple[str, str]]:
    """{duty id: (residents cell, deadline cell's first line)} from the obligations page."""
    found = {}
    rows = re.findall(rf'<tr[^>]*id="duty-{slug}-([a-z0-9-]+)">(.*?)</tr>', page, re.S)
    for duty_id, row in rows:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        found[duty_id] = (_text(cells[1]), _text(cells[2].split("<br>")[0]))
    return found


def test_the_demo_incidents_obligations_page_matches_the_hand_computed_table(
    app, runner, clock, smtp_server
):
    clock.move_to(datetime(2026, 10, 10, 12, 0, tzinfo=UTC))
    assert runner.invoke(args=["demo"]).exit_code == 0
    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    page = admin.get("/admin/obligations").get_data(as_text=True)
    assert _rows(page, "acme-2026") == DEMO_TABLE
    # The notices are queued, not sent: the campaign has not done its duties yet.
    assert "Done by the portal" not in page
    assert "notices: 0 of 2 sent so far" in page

    # The worker sends them: every duty to notify individuals is done by the campaign, with
    # the day it finished, and none of them can be overdue any more.
    _sink, controller = smtp_server
    app.config["SMTP_URL"] = f"smtp://{controller.hostname}:{controller.port}"
    sent = runner.invoke(args=["outbox", "work", "--once"])
    assert sent.exit_code == 0, sent.output
    clock.move_to(datetime(2027, 1, 4, 12, 0, tzinfo=UTC))
    incident = db.session.scalar(select(Incident).where(Incident.slug == "acme-2026"))
    statuses = by_id(incident)
    individuals = {k for k, s in statuses.items() if s.duty.fulfilled_by == "campaign"}
    assert individuals == {
        "ca-individuals",
        "co-individuals",
        "fl-individuals",
        "ny-individuals",
        "wa-individuals",
        "tx-individuals",
        "hipaa-individuals",
        "gdpr-individuals",
        "ma-individuals",
    }
    assert all(statuses[k].by_campaign for k in individuals)
    assert all(statuses[k].notified == date(2026, 10, 10) for k in individuals)
    overdue = {k for k, s in statuses.items() if s.overdue}
    assert overdue == {"gdpr-authority", "sec-8k"}  # nobody recorded those
    evidence = obligations.evidence(incident)
    assert (evidence.campaign.notices, evidence.campaign.sent, evidence.campaign.failed) == (
        12,
        12,
        0,
    )


def test_a_wrong_catalogue_refuses_to_start(app, tmp_path, monkeypatch):
    good = obligations.CATALOGUE.read_text(encoding="utf-8")
    wrong = tmp_path / "catalogue.toml"
    monkeypatch.setattr(obligations, "CATALOGUE", wrong)
    for mistake in (
        good.replace('clock = "days"', 'clock = "weeks"', 1),
        good.replace('kind = "state"', 'kind = "sate"', 1),
        good.replace('id = "ca-individuals"', 'id = "ny-individuals"', 1),
        good.replace('setting = "FTC_SAFEGUARDS_COVERED"', 'setting = "NO_SUCH_SETTING"', 1),
    ):
        wrong.write_text(mistake, encoding="utf-8")
        obligations.catalogue.cache_clear()
        try:
            with pytest.raises(ValueError):
                obligations.init_app(app)
        finally:
            obligations.catalogue.cache_clear()


def test_a_law_enforcement_delay_is_flagged_beside_the_deadlines(app, scenario, clock):
    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    assert b"Law enforcement asked" not in admin.get("/admin/obligations").data
    scenario.delayed_by_law_enforcement = True
    db.session.commit()
    assert b"Law enforcement asked for notice to be delayed" in admin.get("/admin/obligations").data
