"""The protection plan: the right steps for the right data, in the right order, ticked off."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import DATA_CLASSES, GuidanceProgress
from portal.services import guidance
from portal.services.guidance import GuidanceError, load_library
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import customer_row
from tests.customer_flow import csrf_from, sign_in

ANN = "ann@example.com"  # SSN, date of birth and card
BOB = "bob@example.com"  # email and password only


@pytest.fixture
def notified(app, incident, write_csv):
    rows = [
        customer_row(
            1, email=ANN, phone="", data_classes="ssn:1111;date_of_birth;payment_card:4242"
        ),
        customer_row(2, email=BOB, phone="", data_classes="email_address;password"),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")


def step_ids(page: str) -> list[str]:
    import re

    return re.findall(r'<li id="step-([a-z0-9-]+)"', page)


def test_the_plan_fits_the_data_and_is_ordered_by_urgency(app, client, notified):
    sign_in(client, ANN)
    ann = step_ids(client.get("/me/plan").get_data(as_text=True))
    assert ann.count("credit-freeze") == 1  # once, though both SSN and date of birth call for it
    assert {"card-replace", "irs-ip-pin", "credit-reports", "watch-statements"} <= set(ann)
    urgencies = [
        next(s.urgency for s in app.extensions["guidance"]["en"] if s.id == i) for i in ann
    ]
    assert urgencies == sorted(urgencies, key=guidance.URGENCIES.index)
    assert ann.index("credit-freeze") < ann.index("card-replace")  # SSN outranks the card

    other = app.test_client()
    sign_in(other, BOB)
    bob = step_ids(other.get("/me/plan").get_data(as_text=True))
    assert bob[0] == "change-password"  # an exposed password leads the plan
    assert "credit-freeze" not in bob and len(bob) < len(ann)


def test_every_data_class_has_steps_in_every_language(app):
    library = app.extensions["guidance"]
    assert set(library) == set(app.config["LANGUAGES"])
    for language, steps in library.items():
        for key in DATA_CLASSES:
            assert any(key in s.applies_to for s in steps), (language, key)
        for step in steps:
            assert step.title and step.why and step.how and step.minutes > 0


def test_a_step_naming_an_unknown_data_class_is_refused(tmp_path):
    source = (guidance.FOLDER / "en.toml").read_text(encoding="utf-8")
    (tmp_path / "en.toml").write_text(
        source.replace('"ip_address"', '"shoe_size"', 1), encoding="utf-8"
    )
    with pytest.raises(GuidanceError, match="shoe_size"):
        load_library(tmp_path, languages=("en",))


def test_languages_must_offer_the_same_steps(tmp_path):
    english = (guidance.FOLDER / "en.toml").read_text(encoding="utf-8")
    (tmp_path / "en.toml").write_text(english, encoding="utf-8")
    (tmp_path / "es.toml").write_text(
        english.replace('urgency = "week"', 'urgency = "today"', 1), encoding="utf-8"
    )
    with pytest.raises(GuidanceError, match="same steps"):
        load_library(tmp_path, languages=("en", "es"))


def test_the_app_refuses_to_start_with_a_broken_guidance_file(monkeypatch, tmp_path, env):
    (tmp_path / "en.toml").write_text("[[steps]]\nid = 'x'\n", encoding="utf-8")
    (tmp_path / "es.toml").write_text("[[steps]]\nid = 'x'\n", encoding="utf-8")
    monkeypatch.setattr(guidance, "FOLDER", tmp_path)
    from portal import create_app

    with pytest.raises(GuidanceError):
        create_app(env)


def _toggle(client, step_id: str, **headers):
    token = csrf_from(client.get("/me/plan"))
    return client.post(f"/me/plan/{step_id}", data={"csrf_token": token}, headers=headers)


def test_ticking_a_step_without_javascript(client, notified):
    sign_in(client, ANN)
    response = _toggle(client, "credit-freeze")
    assert response.status_code == 302
    assert response.headers["Location"] == "/me/plan#step-credit-freeze"
    page = client.get("/me/plan").get_data(as_text=True)
    total = len(step_ids(page))
    assert f"You have done 1 of {total} steps." in page
    # The progress survives signing out and back in.
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/me"))})
    sign_in(client, ANN)
    assert f"You have done 1 of {total} steps." in client.get("/me/plan").get_data(as_text=True)
    _toggle(client, "credit-freeze")  # and can be undone
    assert db.session.scalars(select(GuidanceProgress)).all() == []


def test_ticking_a_step_with_htmx_swaps_it_in_place(client, notified):
    sign_in(client, ANN)
    response = _toggle(client, "card-replace", **{"HX-Request": "true"})
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert fragment.lstrip().startswith('<li id="step-card-replace" class="plan-step done">')
    assert 'id="plan-progress"' in fragment and 'hx-swap-oob="true"' in fragment
    assert "HX-Request" in response.headers["Vary"]
    assert response.headers["Cache-Control"] == "no-store"
    assert [p.step_id for p in db.session.scalars(select(GuidanceProgress))] == ["card-replace"]


def test_another_customers_step_is_not_found(client, notified):
    sign_in(client, BOB)
    assert _toggle(client, "credit-freeze").status_code == 404  # not in Bob's plan
    assert _toggle(client, "no-such-step").status_code == 404
    assert db.session.scalars(select(GuidanceProgress)).all() == []


def test_the_dashboard_shows_the_first_three_open_steps(client, notified):
    sign_in(client, ANN)
    _toggle(client, "credit-freeze")
    page = client.get("/me").get_data(as_text=True)
    section = page.split("What You Can Do")[1].split("For More Information")[0]
    assert "Freeze your credit" not in section  # done: no longer among the first open steps
    assert section.count("<li>") == 3
    assert 'href="/me/plan"' in section


def test_the_plan_prints_as_a_handout(client, notified):
    sign_in(client, ANN)
    page = client.get("/me/plan").get_data(as_text=True)
    assert 'class="no-print"' in page
    css = client.get("/static/css/portal.css")
    assert b"@media print" in css.data
    css.close()


def test_spanish_plan(client, app, incident, write_csv):
    row = customer_row(3, email="eva@example.com", phone="", locale="es", data_classes="ssn")
    import_customers(incident, write_csv([row]), actor="test")
    queue_notices(incident, actor="test")
    sign_in(client, "eva@example.com")
    page = client.get("/me/plan").get_data(as_text=True)
    assert "Congele su crédito en Equifax, Experian y TransUnion" in page


# --- where the reader lives ---

US_CREDIT = {"credit-freeze", "fraud-alert", "credit-reports", "irs-ip-pin", "chexsystems"}
US_CREDIT |= {"ssa-block", "report-theft", "drivers-license", "medical-benefits", "insurer"}
IDENTITY = {"ssn", "date_of_birth", "bank_account", "drivers_license", "national_id"}
IDENTITY |= {"health_insurance"}


def plan_ids(keys: set[str], region: str, language: str = "en") -> list[str]:
    return [s.id for s in guidance.steps_for(keys, language, region)]


@pytest.mark.parametrize("language", ["en", "es"])
def test_no_us_credit_bureau_step_for_a_reader_abroad(app, language):
    us = set(plan_ids(IDENTITY, "US-TX", language))
    assert us >= US_CREDIT
    assert us == set(plan_ids(IDENTITY, "", language))  # no region: the home country, the US
    assert not {"schufa", "uk-credit-reports", "cifas", "abroad-generic"} & us

    germany = set(plan_ids(IDENTITY, "DE", language))
    assert not US_CREDIT & germany
    assert "schufa" in germany and "abroad-generic" not in germany

    uk = set(plan_ids(IDENTITY, "GB", language))
    assert not US_CREDIT & uk
    assert {"uk-credit-reports", "cifas"} <= uk and "schufa" not in uk

    france = set(plan_ids(IDENTITY, "FR", language))  # nothing specific: the generic step
    assert not US_CREDIT & france
    assert "abroad-generic" in france and not {"schufa", "cifas"} & france
    assert "bank-account" in france  # steps without a region go everywhere


def test_a_reader_in_germany_sees_their_own_plan_on_the_page(client, incident, write_csv):
    row = customer_row(4, email="dora@example.com", phone="", region="DE", data_classes="ssn")
    import_customers(incident, write_csv([row]), actor="test")
    queue_notices(incident, actor="test")
    sign_in(client, "dora@example.com")
    plan = step_ids(client.get("/me/plan").get_data(as_text=True))
    assert "schufa" in plan and "credit-freeze" not in plan
    dashboard = client.get("/me").get_data(as_text=True)
    assert "SCHUFA" in dashboard and "Equifax" not in dashboard
    assert _toggle(client, "credit-freeze").status_code == 404  # not in a German reader's plan
    assert _toggle(client, "schufa").status_code == 302


def test_a_step_naming_an_unknown_region_is_refused(tmp_path):
    source = (guidance.FOLDER / "en.toml").read_text(encoding="utf-8")
    (tmp_path / "en.toml").write_text(
        source.replace('regions = ["DE"]', 'regions = ["Germany"]', 1), encoding="utf-8"
    )
    with pytest.raises(GuidanceError, match="GERMANY"):
        load_library(tmp_path, languages=("en",))


def test_languages_must_send_a_step_to_the_same_places(tmp_path):
    english = (guidance.FOLDER / "en.toml").read_text(encoding="utf-8")
    spanish = (guidance.FOLDER / "es.toml").read_text(encoding="utf-8")
    (tmp_path / "en.toml").write_text(english, encoding="utf-8")
    (tmp_path / "es.toml").write_text(
        spanish.replace('regions = ["GB"]', 'regions = ["IE"]', 1), encoding="utf-8"
    )
    with pytest.raises(GuidanceError, match="same steps"):
        load_library(tmp_path, languages=("en", "es"))


# --- the corrections ---


def test_every_step_names_its_source(app, tmp_path):
    for steps in app.extensions["guidance"].values():
        assert all(step.source for step in steps)
    source = (guidance.FOLDER / "en.toml").read_text(encoding="utf-8")
    (tmp_path / "en.toml").write_text(source.replace("\nsource = ", "\nsourse = ", 1), "utf-8")
    with pytest.raises(GuidanceError, match="incomplete"):
        load_library(tmp_path, languages=("en",))


@pytest.mark.parametrize("keys", [{"medical_records"}, {"health_insurance", "ssn", "password"}])
def test_medical_identity_steps_come_first_when_health_data_is_exposed(app, keys):
    plan = plan_ids(keys, "US-CA")
    medical = [i for i in plan if i in {"medical-benefits", "insurer"}]
    assert plan[: len(medical)] == medical and "medical-benefits" in medical
    if "health_insurance" in keys:
        assert medical == ["medical-benefits", "insurer"]  # read the statements, call the insurer
    abroad = plan_ids(keys, "DE")
    assert abroad[0] == "health-abroad" and not {"medical-benefits", "insurer"} & set(abroad)
    explanation = next(s for s in app.extensions["guidance"]["en"] if s.id == "medical-benefits")
    assert "Explanations of Benefits" in explanation.title and explanation.urgency == "today"


def test_a_date_of_birth_alone_does_not_put_a_credit_freeze_first(app):
    plan = plan_ids({"date_of_birth", "email_address"}, "US-CA")
    assert "credit-freeze" not in plan and "credit-reports" in plan
    assert plan_ids({"ssn"}, "US-CA")[0] == "credit-freeze"  # an SSN still does


def test_free_credit_reports_are_weekly(app):
    for language, word in (("en", "every week"), ("es", "cada semana")):
        step = next(s for s in app.extensions["guidance"][language] if s.id == "credit-reports")
        assert word in " ".join(step.how) and "AnnualCreditReport.com" in " ".join(step.how)
        assert "every few months" not in step.how[0]


def test_bank_accounts_get_chexsystems_and_ssns_the_ssa_block(app):
    assert "chexsystems" in plan_ids({"bank_account"}, "US-NY")
    assert "chexsystems" not in plan_ids({"payment_card"}, "US-NY")
    ssa = next(s for s in app.extensions["guidance"]["en"] if s.id == "ssa-block")
    assert "Block Electronic Access" in " ".join(ssa.how)
    assert "https://www.ssa.gov/myaccount/blockaccess.html" in dict(ssa.links).values()
    assert "ssa-block" in plan_ids({"ssn"}, "") and "ssa-block" not in plan_ids({"ssn"}, "GB")


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_fraud_alert_links_to_all_three_bureaus(app, language):
    alert = next(s for s in app.extensions["guidance"][language] if s.id == "fraud-alert")
    hosts = {url.split("/")[2] for _label, url in alert.links}
    assert hosts == {"www.equifax.com", "www.experian.com", "www.transunion.com"}


@pytest.mark.parametrize("region", ["US-CA", "", "DE", "GB", "FR", "JP"])
def test_every_data_class_has_a_step_wherever_the_reader_lives(app, region):
    for language in app.config["LANGUAGES"]:
        for key in DATA_CLASSES:
            assert plan_ids({key}, region, language), (region, language, key)


def test_two_people_with_the_same_steps_each_get_their_own_token_and_state(app, notified):
    """The steps are rendered once per language and state (portal/web/page_cache.py): each
    person still gets their own CSRF token in every step's form, and their own ticks."""
    import re

    ann, also_ann = app.test_client(), app.test_client()
    sign_in(ann, ANN)
    sign_in(also_ann, ANN)  # the same steps, another browser: another token
    assert _toggle(ann, "credit-freeze").status_code == 302
    pages = [client.get("/me/plan").get_data(as_text=True) for client in (ann, also_ann)]
    tokens = []
    for client, page in zip((ann, also_ann), pages, strict=True):
        found = set(re.findall(r'name="csrf_token" value="([^"]+)"', page))
        assert len(found) == 1  # every step's form and the page's own carry the one token
        tokens.append(found.pop())
        assert (
            client.post("/me/plan/card-replace", data={"csrf_token": tokens[-1]}).status_code == 302
        )
        assert '<li id="step-credit-freeze" class="plan-step done">' in page
    assert tokens[0] != tokens[1]


def test_a_step_seen_in_english_is_shown_in_spanish_to_a_spanish_reader(app, incident, write_csv):
    rows = [
        customer_row(3, email="eva@example.com", phone="", locale="es", data_classes="ssn"),
        customer_row(4, email="sam@example.com", phone="", data_classes="ssn"),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    sam, eva = app.test_client(), app.test_client()
    sign_in(sam, "sam@example.com")
    assert "Freeze your credit" in sam.get("/me/plan").get_data(as_text=True)
    sign_in(eva, "eva@example.com")
    page = eva.get("/me/plan").get_data(as_text=True)
    assert "Congele su crédito en Equifax, Experian y TransUnion" in page and "Ya lo hice" in page
    assert "Freeze your credit" not in page and "I have done this" not in page
