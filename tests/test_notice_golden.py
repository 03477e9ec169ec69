"""The notice each reader gets where they live, kept as reviewed files (tests/golden/notices).

A notice is a legal document: any change to what a reader in a region reads, in either language,
fails here until a reviewer has read the new text and approved it. To approve, run

    PORTAL_APPROVE_NOTICES=1 pytest tests/test_notice_golden.py

read `git diff tests/golden/notices`, and commit the files with the change that made them.
"""

from __future__ import annotations

import difflib
import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from portal import clock as portal_clock
from portal.extensions import db
from portal.mail.mime import fill
from portal.services.notices import Variants
from portal.services.protection import save_offer

GOLDEN = Path(__file__).parent / "golden" / "notices"
APPROVING = os.environ.get("PORTAL_APPROVE_NOTICES") == "1"
# California, Massachusetts (which bars describing the breach), New York, Texas, Kansas (a state
# with no content of its own), Germany (GDPR Art. 34) and the United Kingdom (UK GDPR).
REGIONS = ("US-CA", "US-MA", "US-NY", "US-TX", "US-KS", "DE", "GB")
LANGUAGES = ("en", "es")
# An SSN with its last four digits, a card, an email address: the credit bureaus' block, the
# offer and the data types all show.
SHOWN = (("ssn", True), ("payment_card", True), ("email_address", False))
VALUES = {
    "link": "https://portal.example.test/a/LINK",
    "code": "ABCD-EFGH-JKMN",
    "f0": "6789",
    "f1": "4242",
}


@pytest.fixture
def incident_for_notices(app, incident, monkeypatch):
    # The date of the notice is in its text: one fixed day, whenever the suite runs.
    monkeypatch.setattr(portal_clock, "source", lambda: datetime(2026, 11, 20, 15, 0, tzinfo=UTC))
    incident.occurred_on, incident.occurred_to = date(2026, 9, 28), date(2026, 10, 2)
    incident.what_happened = (
        "On **2 October** we found that someone had used a stolen password to copy part of our"
        " customer database.\n\n* names and contact details\n* the last four digits of cards"
    )
    incident.what_we_are_doing = (
        "We revoked the password and hired [investigators](https://example.com/firm)."
    )
    incident.more_information = "Answers to common questions: https://example.com/faq"
    incident.contact_email = "privacy@example.com"
    incident.translations = {
        "es": {
            "title": "Acceso no autorizado a registros de clientes",
            "what_happened": "El **2 de octubre** descubrimos que alguien había usado una"
            " contraseña robada para copiar parte de nuestra base de datos de clientes.",
        }
    }
    save_offer(
        incident,
        actor="test",
        provider_name="Example Protection",
        product_name="IdentityGuard Plus",
        includes="Credit monitoring at three bureaus\nIdentity restoration",
        translations={"es": {"includes": "Vigilancia del crédito\nRestauración de identidad"}},
        term_months=24,
        enroll_by=date(2027, 3, 1),
        enroll_url="https://enroll.example.com",
        regions="US",
    )
    db.session.commit()
    return incident


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("region", REGIONS)
def test_the_notice_a_reader_gets_is_the_reviewed_one(incident_for_notices, region, language):
    composed = Variants(incident_for_notices).compose(language, SHOWN, region)
    for part, template in (("txt", composed.text), ("html", composed.html)):
        got = f"Subject: {composed.subject}\n\n" + fill(template, VALUES, html=part == "html")
        path = GOLDEN / f"{region}.{language}.{part}"
        if APPROVING:
            path.write_text(got, encoding="utf-8")
            continue
        assert path.exists(), f"{path.name} is missing: approve the notice (see the docstring)"
        expected = path.read_text(encoding="utf-8")
        if got != expected:
            diff = "".join(
                difflib.unified_diff(
                    expected.splitlines(keepends=True),
                    got.splitlines(keepends=True),
                    f"approved {path.name}",
                    "rendered now",
                )
            )
            pytest.fail(f"The notice for {region} in {language} changed:\n{diff}", pytrace=False)
