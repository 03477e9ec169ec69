"""'Is this genuine?': anyone checks a link, a code, an address or a number against our record."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Notice
from portal.services import genuine, reference_codes
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import BASE_URL, customer_row
from tests.customer_flow import csrf_from, link_path
from tests.staff_flow import set_up
from tests.test_new_link import statements


@pytest.fixture
def notified(app, incident, write_csv):
    """Ann has a notice (by email, with a link and a reference code)."""
    import_customers(incident, write_csv([customer_row(1, email="ann@example.com")]), actor="t")
    queue_notices(incident, actor="test")
    db.session.commit()
    return db.session.scalars(select(Notice)).one()


def check(client, what: str, **environ):
    page = client.get("/genuine")
    return client.post(
        "/genuine", data={"csrf_token": csrf_from(page), "what": what}, environ_base=environ
    )


def text(response) -> str:
    return response.get_data(as_text=True)


def _typo(code: str) -> str:
    """The code with its first character changed: the check character catches it."""
    first = reference_codes.ALPHABET[(reference_codes.ALPHABET.index(code[0]) + 1) % 30]
    return first + code[1:]


def test_a_real_reference_code_is_confirmed_with_only_what_its_holder_has(client, notified):
    typed = reference_codes.display(notified.reference_code).lower()  # as a person types it
    page = text(check(client, typed))
    assert "Yes, this is genuine." in page
    assert "We sent a notice with this code on" in page
    # A letter may lie in a shared hall: its code tells the day, not where the email went.
    assert "@example.com" not in page.split("How to spot a fake")[0]
    assert "Person Number1" not in page
    assert "Social Security" not in page.split("How to spot a fake")[0]


def test_a_real_link_is_confirmed(client, notified):
    page = text(check(client, BASE_URL + link_path("ann@example.com")))
    assert "Yes, this is genuine." in page and "We sent a notice with this link on" in page
    assert "a•••@example.com" in page and "ann@example.com" not in page
    # Pasted with the rest of the message around it, it is found all the same.
    pasted = f"Example Corp: open {BASE_URL + link_path('ann@example.com')} to see more."
    assert "We sent a notice with this link on" in text(check(client, pasted))


def test_a_mistyped_code_is_caught_by_its_check_character(client, notified):
    page = text(check(client, _typo(notified.reference_code)))
    assert "This code has a mistake in it." in page and "genuine." not in page


def test_unknown_and_forged_things_have_no_record(client, notified):
    unknown_code = reference_codes.generate()
    assert "We have no record of this. It may be a scam." in text(check(client, unknown_code))
    forged = BASE_URL + "/a/" + link_path("ann@example.com").removeprefix("/a/")[:-3] + "xyz"
    assert "We have no record of this." in text(check(client, forged))
    elsewhere = text(check(client, "https://portal-example-test.help/a/abc"))
    assert "No: that link does not go to our site." in elsewhere
    assert "It goes to portal-example-test.help." in elsewhere
    assert "https://reportfraud.ftc.gov" in elsewhere
    assert "We have no record of this." in text(check(client, "billing@portal-example.help"))
    assert "We have no record of this." in text(check(client, "+1 415 555 0000"))


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example\\@portal.example.test/",  # browsers read \\ as /: evil.example
        "https://evil.example@portal.example.test/",  # and open the host after an @ ... or not
        "https://portal.example.test@evil.example/a/x",
        "https://portal.example.test:8443/",
        "http://portal.example.test/",
        "https://portal.example.test.evil.example/",
    ],
)
def test_a_link_that_only_looks_like_ours_is_not_ours(client, link):
    assert "Yes, that is ours." not in text(check(client, link))


def test_a_look_alike_host_is_shown_as_what_it_is(client):
    page = text(check(client, "https://p\u03bfrtal.example.test/a/x"))  # a Greek omicron
    assert "No: that link does not go to our site." in page
    assert "It goes to xn--prtal-" in page


def test_our_own_addresses_and_numbers_are_ours(app, client, incident):
    assert "Yes, that is ours." in text(check(client, app.config["MAIL_FROM"].upper()))
    # The incident's published number, however it is written.
    assert incident.contact_phone == "1-800-555-0199"
    page = text(check(client, "+1 (800) 555 0199"))
    assert "Yes, that is ours." in page and "one of our phone numbers" in page
    assert "That address is our site." in text(check(client, BASE_URL + "/start"))
    assert "That address is our site." in text(check(client, "portal.example.test"))
    assert "can fake the address or number it shows" in page
    # The same digits in another country are another number: a scammer could own it.
    assert "Yes, that is ours." not in text(check(client, "+44 800 555 0199"))


def test_what_is_no_link_code_address_or_number_is_said_to_be_unreadable(client):
    page = text(check(client, "hello there"))
    assert "We could not tell what to check." in page and "scam" not in page.split("How to")[0]
    # Twelve letters and digits typed on a phone's full-width keyboard are still a code.
    assert "This code has a mistake in it." in text(check(client, "ＡＢＣＤ-ＥＦＧＨ-ＪＫＭＮ"))


def test_every_answer_costs_the_same_queries_whatever_was_typed(app, notified):
    link = BASE_URL + link_path("ann@example.com")
    typed = {
        "real code": notified.reference_code,
        "mistyped code": _typo(notified.reference_code),
        "unknown code": reference_codes.generate(),
        "real link": link,
        "forged link": link[:-3] + "xyz",
        "another site": "https://elsewhere.example/a/x",
        "address": "someone@example.net",
        "number": "+1 415 555 0000",
    }
    with app.test_request_context():
        shapes = {
            name: [s.split("WHERE")[0] for s in statements(lambda t=t: genuine.check(t))]
            for name, t in typed.items()
        }
    # The same statements, so a timing cannot tell a real code from a typo or an unknown one.
    assert len({tuple(shape) for shape in shapes.values()}) == 1, shapes


def test_checking_is_rate_limited_per_network_and_per_code(client, notified):
    token = csrf_from(client.get("/genuine"))
    code = reference_codes.display(notified.reference_code)
    # One code, written a different way each time, from many places: still one code.
    spellings = [code, code.lower(), code.replace("-", " "), notified.reference_code]
    answers = [
        client.post(
            "/genuine",
            data={"csrf_token": token, "what": spellings[n % 4]},
            environ_base={"REMOTE_ADDR": f"198.51.100.{n + 1}"},
        ).status_code
        for n in range(51)
    ]
    assert answers[:50] == [200] * 50 and answers[50] == 429
    # Another code, tried from one place: a tighter allowance there.
    other = reference_codes.generate()
    from_one = [
        client.post(
            "/genuine",
            data={"csrf_token": token, "what": other.lower() if n % 2 else other},
            environ_base={"REMOTE_ADDR": "203.0.113.7"},
        ).status_code
        for n in range(11)
    ]
    assert from_one[:10] == [200] * 10 and from_one[10] == 429


def test_one_network_is_slowed_down_after_many_checks(client):
    token = csrf_from(client.get("/genuine"))
    from_one = [
        client.post(
            "/genuine",
            data={"csrf_token": token, "what": f"guess{n}@example.net"},
            environ_base={"REMOTE_ADDR": "203.0.113.9"},
        ).status_code
        for n in range(301)
    ]
    assert from_one[:300] == [200] * 300 and from_one[300] == 429


def test_nothing_typed_is_a_clear_message(client):
    response = check(client, "   ")
    assert response.status_code == 422
    assert "Paste the link, or type the code, address or number to check." in text(response)


def test_the_day_s_checks_are_counted_for_the_response_team(app, client, clock, notified):
    check(client, notified.reference_code)
    check(client, reference_codes.generate())
    check(client, "https://elsewhere.example/a/x")
    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    page = text(admin.get("/admin/metrics"))
    assert "checks today: genuine / ours / mistyped code / not ours or no record" in page
    assert "<td>1 / 0 / 0 / 2 / 0</td>" in page
    assert "a rising number is a phishing wave" in page


def test_the_home_page_and_the_notice_lead_to_the_check(client, notified):
    home = text(client.get("/"))
    assert 'href="/genuine"' in home and "How to spot a fake" in home
    from tests.customer_flow import messages_to

    (notice,) = messages_to("ann@example.com")
    assert f"{BASE_URL}/genuine" in notice.text


@pytest.fixture
def lettered(app, incident, notified, write_csv, tmp_path):
    """Bob, known by a postal address only, was sent a letter (built, not yet mailed)."""
    from portal.services import imports, letters

    header = [c for c in (*imports.COLUMNS, *imports.ADDRESS_COLUMNS) if c != "email"]
    bob = customer_row(
        2,
        email="",
        address_line1="77 Secret Lane",
        city="Sacramento",
        postal_code="95814",
    )
    import_customers(incident, write_csv([bob], header=header), actor="t")
    queue_notices(incident, actor="test")
    assert letters.build(incident, tmp_path, actor="test")[0] == 1
    db.session.commit()
    return db.session.scalars(select(Notice).where(Notice.id != notified.id)).one()


def check_es(client, what: str):
    page = client.get("/genuine", headers={"Accept-Language": "es"})
    return client.post(
        "/genuine",
        data={"csrf_token": csrf_from(page), "what": what},
        headers={"Accept-Language": "es"},
    )


def test_a_letters_code_is_confirmed_as_sent_by_post_with_only_the_state(client, lettered):
    page = text(check(client, reference_codes.display(lettered.reference_code)))
    assert "Yes, this is genuine." in page
    assert "by post to •••, CA." in page
    answer = page.split("How to spot a fake")[0]
    for secret in ("Secret Lane", "77", "Sacramento", "95814", "958", "Person Number2"):
        assert secret not in answer
    spanish = text(check_es(client, lettered.reference_code))
    assert "por correo postal a •••, CA" in spanish


def test_an_email_notice_without_a_letter_says_nothing_of_post(client, notified, lettered):
    page = text(check(client, notified.reference_code))
    assert "Yes, this is genuine." in page and "by post" not in page
    page = text(check(client, BASE_URL + link_path("ann@example.com")))
    assert "a•••@example.com" in page and "by post" not in page


def test_a_lettered_code_costs_the_same_queries_as_any_other_check(app, notified, lettered):
    typed = {
        "lettered code": lettered.reference_code,
        "emailed code": notified.reference_code,
        "unknown code": reference_codes.generate(),
        "address": "someone@example.net",
    }
    with app.test_request_context():
        shapes = {
            name: [s.split("WHERE")[0] for s in statements(lambda t=t: genuine.check(t))]
            for name, t in typed.items()
        }
    assert len({tuple(shape) for shape in shapes.values()}) == 1, shapes


def test_by_post_shows_the_state_or_country_only():
    assert genuine.by_post_to("US-CA") == "•••, CA"
    assert genuine.by_post_to("DE") == "•••, DE"
    assert genuine.by_post_to("") == "•••"
