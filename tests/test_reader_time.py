"""Times a customer reads are on their own clock, named: a Californian reads Pacific time, not
the server's UTC (a time in another zone reads as a mistake, or as somebody else's activity)."""

from __future__ import annotations

import re

import pytest

from portal import regions
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import customer_row
from tests.customer_flow import sign_in

CAL = "cal@example.com"
BERLIN = "berlin@example.com"
NOWHERE = "nowhere@example.com"


@pytest.mark.parametrize(
    ("region", "zone"),
    [
        ("US-CA", "America/Los_Angeles"),
        ("us-ny", "America/New_York"),
        ("US-AZ", "America/Phoenix"),
        ("US-HI", "Pacific/Honolulu"),
        ("US-UM", "UTC"),  # scattered islands: no one clock
        ("US", "UTC"),  # the country alone spans six zones
        ("DE", "Europe/Berlin"),  # two zones that always agree
        ("ES", "UTC"),  # the Canary Islands are an hour behind Madrid
        ("BR", "UTC"),
        ("", "UTC"),
    ],
)
def test_a_regions_clock(region, zone):
    assert regions.time_zone(region) == zone


def test_every_us_state_and_territory_has_its_clock_but_the_minor_islands():
    assert set(regions.US_SUBDIVISIONS) - set(regions.US_TIME_ZONE) == {"UM"}


@pytest.fixture
def readers(app, incident, write_csv):
    rows = [
        customer_row(1, email=CAL, phone="", region="US-CA"),
        customer_row(2, email=BERLIN, phone="", region="DE"),
        customer_row(3, email=NOWHERE, phone="", region=""),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    return incident


def _zone_shown(client) -> str:
    page = client.get("/me/sessions").get_data(as_text=True)
    return re.search(r"Signed in: [^<]*\s(\S+)\s*<", page).group(1)  # the zone ends the time


@pytest.mark.parametrize(
    ("address", "zones"),
    [(CAL, {"PST", "PDT"}), (BERLIN, {"+0100", "+0200"}), (NOWHERE, {"UTC"})],
)
def test_a_customer_reads_times_on_their_own_clock(app, readers, address, zones):
    client = app.test_client()
    sign_in(client, address)
    assert _zone_shown(client) in zones
