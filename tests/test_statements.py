"""Statements by place of residence: each reader's notice carries what the law where they live
asks, in their language, from a reviewed library that refuses to load when it is wrong."""

from __future__ import annotations

import re
from datetime import date

import pytest

from portal import regions
from portal.services import statements
from portal.services.statements import StatementsError, for_reader, load_library

SSN = {"ssn", "email_address"}
EMAIL = {"email_address"}


def ids(inserts) -> list[str]:
    return [s.id for s in inserts.statements]


def text(inserts, values=None) -> str:
    values = values or {
        "organisation": "Acme",
        "contact": "1-800-555-0199",
        "what_happened": "",
        "what_we_are_doing": "",
        "affected_count": "1,234",
    }
    return "\n".join(p for s in inserts.filled(values) for p in s.paragraphs)


# --- the library ---


def test_both_languages_load_with_the_same_inserts_and_an_as_of_date(app):
    library = app.extensions["statements"]
    assert set(library) == {"en", "es"}
    assert library["en"].as_of == library["es"].as_of and isinstance(library["en"].as_of, date)
    english = [i.statement.id for i in library["en"].inserts]
    assert english == [i.statement.id for i in library["es"].inserts]
    for needed in ("us-ma", "us-ny", "us-md", "us-nc", "us-ri", "us-dc", "us-ia", "us-or"):
        assert needed in english
    for needed in ("us-wv", "us-vt", "us-credit-bureaus", "us-ftc", "gdpr-art-34"):
        assert needed in english
    assert "uk-gdpr-art-34" in english
    for language in library.values():
        for insert in language.inserts:
            s = insert.statement
            assert s.title and s.paragraphs and s.source, s.id


def _broken(tmp_path, old: str, new: str, language="en"):
    for name in ("en", "es"):
        source = (statements.FOLDER / f"{name}.toml").read_text(encoding="utf-8")
        if name == language:
            assert old in source
            source = source.replace(old, new, 1)
        (tmp_path / f"{name}.toml").write_text(source, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('regions = ["US-MA"]', 'regions = ["US-ZZ"]', "unknown region"),
        ('regions = ["US-MA"]', 'regions = ["Massachusetts"]', "unknown region"),
        ('needs = ["ssn"', 'needs = ["shoe_size"', "shoe_size"),
        ('omit = ["what_happened"]', 'omit = ["what_we_are_doing"]', "only"),
        ('always_in = ["US-MA"', 'always_in = ["US-QQ"', "US-QQ"),
        ("{organisation}: {contact}", "{organisaton}: {contact}", "organisaton"),
        ("{organisation}: {contact}", "{organisation: {contact}", "broken placeholder"),
        ("as_of = 2026-11-01", 'as_of = "soon"', "as_of"),
        ('id = "us-ny"', 'id = "us-ma"', "used twice"),
        ('source = "M.G.L.', 'sourse = "M.G.L.', "incomplete"),
        (
            'classes = ["medical_records", "health_insurance"]',
            'classes = ["medical_records"]',
            "health_insurance",
        ),
    ],
)
def test_a_wrong_file_is_refused_with_the_reason(tmp_path, old, new, message):
    folder = _broken(tmp_path, old, new)
    with pytest.raises(StatementsError, match=message):
        load_library(folder, languages=("en", "es"))


def test_languages_must_agree_on_who_gets_what(tmp_path):
    folder = _broken(tmp_path, 'regions = ["US-IA"]', 'regions = ["US-KS"]', language="es")
    with pytest.raises(StatementsError, match="does not match"):
        load_library(folder, languages=("en", "es"))
    folder = _broken(tmp_path, "Este incidente afectó a {affected_count}", "Afectó a", "es")
    with pytest.raises(StatementsError, match="does not match"):
        load_library(folder, languages=("en", "es"))


def test_the_app_refuses_to_start_with_a_broken_statements_file(monkeypatch, tmp_path, env):
    _broken(tmp_path, 'regions = ["US-MA"]', 'regions = ["XX-MA"]')
    monkeypatch.setattr(statements, "FOLDER", tmp_path)
    from portal import create_app

    with pytest.raises(StatementsError, match="XX-MA"):
        create_app(env)


# --- what each reader gets ---


@pytest.mark.parametrize("locale", ["en", "es"])
def test_california_gets_the_bureaus_and_the_ftc_when_an_ssn_is_involved(app, locale):
    inserts = for_reader("US-CA", locale, SSN)
    assert ids(inserts) == ["us-credit-bureaus", "us-ftc"]
    assert inserts.omit == frozenset()
    body = text(inserts)
    for number in ("1-888-298-0045", "1-888-397-3742", "1-888-909-8872", "1-877-438-4338"):
        assert number in body
    assert "P.O. Box 105788, Atlanta, GA 30348-5788" in body
    assert "1798.82" in inserts.statements[0].source
    assert ids(for_reader("US-CA", locale, EMAIL)) == ["us-ftc"]  # no SSN, DL or ID: no bureaus


@pytest.mark.parametrize("locale", ["en", "es"])
def test_massachusetts_omits_the_nature_of_the_breach_and_names_the_police_report(app, locale):
    inserts = for_reader("US-MA", locale, EMAIL)
    assert ids(inserts) == ["us-credit-bureaus", "us-ftc", "us-ma"]  # where to ask for a freeze
    assert inserts.omit == {"what_happened"}
    body = text(inserts)
    words = {"en": ("police report", "security freeze", "free of charge", "Social Security number")}
    words["es"] = ("informe policial", "congelar su historial", "sin costo", "Seguro Social")
    for word in words[locale]:
        assert word in body
    assert "{" not in body


@pytest.mark.parametrize("locale", ["en", "es"])
def test_new_york_names_the_attorney_general_the_department_of_state_and_the_ftc(app, locale):
    inserts = for_reader("US-NY", locale, EMAIL)
    assert ids(inserts) == ["us-ftc", "us-ny"]
    body = text(inserts)
    assert "The Capitol, Albany, NY 12224-0341; 1-800-771-7755; ag.ny.gov" in body
    assert "1-800-697-1220" in body and "dos.ny.gov" in body and "IdentityTheft.gov" in body


@pytest.mark.parametrize("locale", ["en", "es"])
@pytest.mark.parametrize("region", ["US-TX", "US-KS", "US", ""])
def test_a_state_with_no_special_content_gets_the_us_blocks_only(app, region, locale):
    assert ids(for_reader(region, locale, SSN)) == ["us-credit-bureaus", "us-ftc"]
    assert for_reader(region, locale, SSN).omit == frozenset()


@pytest.mark.parametrize("locale", ["en", "es"])
def test_germany_gets_article_34_with_the_contact_point_and_the_likely_consequences(app, locale):
    inserts = for_reader("DE", locale, SSN)
    assert ids(inserts) == ["gdpr-art-34"]  # no US bureau or FTC block abroad
    body = text(inserts)
    assert "Acme: 1-800-555-0199" in body
    consequence = {"en": "pretend to be you", "es": "hacerse pasar por usted"}[locale]
    scam = {"en": "scam emails", "es": "correos, mensajes o llamadas fraudulentos"}[locale]
    assert consequence in body and scam in body
    assert "art. 34" in inserts.statements[0].source.lower()
    assert ids(for_reader("FR", locale, EMAIL)) == ["gdpr-art-34"]  # the EU group
    assert ids(for_reader("NO", locale, EMAIL)) == ["gdpr-art-34"]  # and the EEA
    assert ids(for_reader("JP", locale, EMAIL)) == []


@pytest.mark.parametrize("locale", ["en", "es"])
def test_the_united_kingdom_gets_uk_gdpr_and_the_right_to_complain_to_the_ico(app, locale):
    inserts = for_reader("GB", locale, {"password"})
    assert ids(inserts) == ["uk-gdpr-art-34"]
    body = text(inserts)
    assert "ico.org.uk/make-a-complaint" in body and "0303 123 1113" in body
    assert {"en": "sign in to your accounts", "es": "acceder a sus cuentas"}[locale] in body


def test_the_other_states_statements(app):
    assert "us-ri" in ids(for_reader("US-RI", "en", EMAIL))
    assert "This incident affected 1,234 people." in text(for_reader("US-RI", "en", EMAIL))
    assert "Este incidente afectó a 1,234 personas." in text(for_reader("US-RI", "es", EMAIL))
    assert for_reader("US-RI", "en", EMAIL).placeholders >= {"affected_count"}
    for region, words in {
        "US-MD": "1-888-743-0023",
        "US-NC": "1-877-566-7226",
        "US-DC": "202-727-3400",
        "US-IA": "515-281-5926",
        "US-OR": "1-877-877-9392",
        "US-VT": "1-800-649-2424",
        "US-WV": "call Acme",
        "US-IL": "fraud alerts and security freezes",
        "US-NM": "Fair Credit Reporting Act",
        "US-MI": "Remain vigilant",
        "US-VA": "Remain vigilant",
    }.items():
        assert words in text(for_reader(region, "en", EMAIL)), region


@pytest.mark.parametrize("region", ["US-MD", "US-NC", "US-DC", "US-OR", "US-IL", "US-RI"])
def test_states_that_ask_for_the_bureaus_in_every_notice_get_them_without_an_ssn(app, region):
    assert ids(for_reader(region, "en", EMAIL))[:2] == ["us-credit-bureaus", "us-ftc"]
    assert "us-credit-bureaus" not in ids(for_reader("US-TX", "en", EMAIL))
    assert "us-credit-bureaus" not in ids(for_reader("DE", "en", SSN))


def test_a_missing_value_is_an_error_not_a_blank(app):
    with pytest.raises(KeyError, match="affected_count"):
        for_reader("US-RI", "en", EMAIL).filled({"organisation": "Acme", "contact": "x"})


def test_an_unknown_language_reads_english_and_the_bureaus_can_be_had_alone(app):
    assert ids(for_reader("US-CA", "fr", SSN)) == ids(for_reader("US-CA", "en", SSN))
    assert for_reader("US-CA", "fr", SSN).statements[0].title.startswith("The three")
    assert "1-888-397-3742" in " ".join(statements.credit_bureaus("es").paragraphs)
    assert "IdentityTheft.gov" in " ".join(statements.ftc("en").paragraphs)


def test_region_codes():
    assert regions.matches("US-CA", "US") and regions.matches("us-ca", "US-CA")
    assert not regions.matches("", "US-CA") and regions.matches("", "US")
    assert regions.matches("DE", "EU") and regions.matches("DE-BY", "EU")
    assert not regions.matches("GB", "EU") and not regions.matches("CH", "EU")
    assert regions.is_valid("US-CA") and regions.is_valid("DE") and regions.is_valid("GB")
    assert not regions.is_valid("US-XX") and not regions.is_valid("XY")
    assert not regions.is_valid("usa") and not regions.is_valid("US_CA")
    assert regions.parse_list(" us, US-ca ,,us") == ["US", "US-CA"]


def test_no_placeholder_is_left_unfilled_for_any_reader(app):
    values = dict.fromkeys(statements.PLACEHOLDERS, "X")
    for language, library in app.extensions["statements"].items():
        for insert in library.inserts:
            for paragraph in insert.statement.filled(values).paragraphs:
                assert not re.search(r"[{}]", paragraph), (language, insert.statement.id)


def test_readers_with_the_same_text_share_a_key(app):
    from portal.services import guidance

    assert for_reader("US-TX", "en", SSN).key == for_reader("US-KS", "en", SSN).key
    assert for_reader("US-TX", "en", SSN).key != for_reader("US-MA", "en", SSN).key
    assert guidance.region_key("US-TX") == guidance.region_key("US-KS") == guidance.region_key("")
    assert guidance.region_key("FR") == guidance.region_key("JP") != guidance.region_key("DE")
    assert guidance.region_key("GB") != guidance.region_key("US-CA")


def test_the_contact_in_words_in_each_language(app, incident):
    from flask_babel import force_locale

    from portal.extensions import db

    incident.contact_phone, incident.contact_hours = "1-800-555-0199", "9 a.m. to 5 p.m."
    incident.contact_email = "help@example.com"
    incident.translations = {"es": {"contact_hours": "de 9 a 17 h"}}
    db.session.flush()
    with app.test_request_context(), force_locale("en"):
        assert statements.contact_for(incident, "en") == (
            "by phone at 1-800-555-0199 (9 a.m. to 5 p.m.), or by email at help@example.com"
        )
        incident.contact_email = ""
        assert statements.contact_for(incident, "en").endswith("(9 a.m. to 5 p.m.)")
    with app.test_request_context(), force_locale("es"):
        spanish = statements.contact_for(incident, "es")
        assert "de 9 a 17 h" in spanish
    values = statements.values_for(incident, "Acme", spanish, affected_count="12")
    body = text(for_reader("US-VT", "es", EMAIL), values)
    assert f"llame a Acme: {spanish}." in body
