"""The customer's whole way through, in a real browser: from the notice in their mailbox to the
dashboard, their plan ticked off by keyboard, a new password, identity protection, a question
answered by a person, and signing out; and an expired link that still leads somewhere.

Each journey runs once per combination of screen, JavaScript and language that people bring:
not the full cross product, one long journey each, so the suite stays fast."""

from __future__ import annotations

import itertools
import json
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from babel.support import Translations
from playwright.sync_api import expect

from portal import ROOT
from tests.browser.conftest import code_in, link_in
from tests.browser.people import SLUG, notify

pytestmark = pytest.mark.slow

PASSPHRASE = "copper kettle drifts over quiet marsh"
# Long on purpose: a real provider's address, which must wrap rather than widen a phone's page.
ENROLL_URL = "https://enroll.example-protection.com/activate/identity-restoration-and-monitoring"
_phones = itertools.count(1)
_loaded_codes: set[str] = set()  # every activation code this module put in the pool


@dataclass(frozen=True)
class Way:
    """How one person comes: their screen, whether their browser runs JavaScript, their
    language, and whether their codes come by text (a phone on file) or by email."""

    phone: bool
    js: bool
    language: str
    texts: bool = False

    def __str__(self) -> str:
        return "-".join(
            [
                "phone" if self.phone else "desktop",
                "js" if self.js else "nojs",
                self.language,
                *(["texts"] if self.texts else []),
            ]
        )


WAYS = [
    Way(phone=False, js=True, language="en"),
    Way(phone=False, js=False, language="en"),
    Way(phone=True, js=True, language="en", texts=True),
    Way(phone=True, js=True, language="es"),
    Way(phone=True, js=False, language="es"),
]

_catalogues: dict[str, Translations] = {}


def say(language: str, text: str, **values) -> str:
    """What the person reads for an interface text, in their language (from the catalogue)."""
    if language not in _catalogues:
        _catalogues[language] = Translations.load(ROOT / "portal" / "translations", [language])
    said = _catalogues[language].gettext(text)
    return said % values if values else said


def _code_for(live, someone: dict, seen: int) -> str:
    """Their newest code, by text when they have a phone, else by email: in either language, as
    a person who switched language gets their messages in the new one from then on."""
    if someone["phone"]:
        return code_in(live.wait_for_text(someone["phone"], seen=seen))
    organisation = live.app.config["ORGANISATION_NAME"]
    subjects = {
        say(language, "Your verification code for %(organisation)s", organisation=organisation)
        for language in ("en", "es")
    }
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = [m for m in live.mails(someone["email"]) if m.subject in subjects]
        if len(found) > seen:
            return code_in(found[seen].text)
        time.sleep(0.1)
    raise AssertionError(f"no code number {seen + 1} reached {someone['email']}")


# --- what an operator or an agent does, through the services behind their commands ---


def _offer_with_codes(live, how_many: int = 2) -> None:
    """The incident's identity-protection offer (`portal protection offer`) and a few fresh
    activation codes in its pool (`portal protection import-codes`)."""
    from portal.extensions import db
    from portal.models import Incident
    from portal.services.protection import import_codes, offer_for, save_offer

    codes = [f"JRNY-{time.monotonic_ns() % 10**9:09d}-{n}" for n in range(how_many)]
    path = Path(tempfile.mkdtemp()) / "codes.txt"
    path.write_text("\n".join(codes) + "\n", encoding="utf-8")

    def load():
        found = db.session.query(Incident).filter_by(slug=SLUG).one()
        if offer_for(found.id) is None:
            save_offer(
                found,
                actor="test",
                provider_name="Example Protection",
                product_name="IdentityGuard Plus",
                includes="Credit monitoring at three bureaus\nIdentity restoration",
                translations={
                    "es": {
                        "includes": "Vigilancia del crédito en tres agencias\n"
                        "Restauración de identidad"
                    }
                },
                term_months=24,
                enroll_by=date.today() + timedelta(days=90),
                enroll_url=ENROLL_URL,
            )
        import_codes(found, path, actor="test")

    live.run(load)
    _loaded_codes.update(codes)


def _make_code_stale(live, someone: dict) -> None:
    """The code they signed in with was typed eleven minutes ago (what time would do)."""
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Customer, LoginSession

    def age():
        customer = db.session.scalar(
            select(Customer).where(Customer.external_id == someone["external_id"])
        )
        rows = db.session.scalars(
            select(LoginSession).where(LoginSession.customer_id == customer.id)
        )
        for row in rows:
            row.verified_at -= timedelta(minutes=11)

    live.run(age)


def _agent_answers(live, case_public_id: str, text: str) -> None:
    """An agent replies to the case on the support desk (the cases service)."""
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Case
    from portal.services import staff, support_desk

    def answer():
        agent = staff.by_email("agent.journeys@example.com")
        if agent is None:
            staff.invite("agent.journeys@example.com", "agent", actor="test")
            agent = staff.by_email("agent.journeys@example.com")
        case = db.session.scalar(select(Case).where(Case.public_id == case_public_id))
        support_desk.reply(agent, case, text)

    live.run(answer)


def _expired_link(live, clock, someone: dict) -> str:
    """Their notice's link as it was signed long ago: genuine, but past its lifetime."""
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Customer, Notice
    from portal.services import tokens

    def make():
        notice = db.session.scalar(
            select(Notice)
            .join(Customer, Notice.customer_id == Customer.id)
            .where(Customer.external_id == someone["external_id"])
        )
        long_ago = tokens.lifetime(tokens.Purpose.NOTICE_LINK) + timedelta(hours=1)
        clock.move(-long_ago)
        try:
            return tokens.link(tokens.Purpose.NOTICE_LINK, notice.public_id, notice.link_nonce)
        finally:
            clock.move(long_ago)

    return live.run(make)


# --- what the person does ---


def _press_on(you, target, key: str) -> None:
    """Reach `target` with the Tab key alone, as a keyboard user does, then press `key`."""
    page = you.page
    handle = target.element_handle()
    for _ in range(200):
        page.keyboard.press("Tab")
        if page.evaluate("el => document.activeElement === el", handle):
            break
    else:
        raise AssertionError("the Tab key never reached the button")
    if you.js:
        page.keyboard.press(key)
    else:
        with page.expect_navigation():
            page.keyboard.press(key)


def _code_page(you, live, someone: dict, seen: int, language: str) -> None:
    """On the code page: the code from their phone or mailbox, typed in, and on to the next page."""
    page = you.page
    page.wait_for_url(live.base + "/verify")
    you.check("code page")
    code = _code_for(live, someone, seen)
    page.get_by_label(say(language, "Verification code")).fill(code)
    page.get_by_role("button", name=say(language, "Continue")).click()


def _signed_in_page(you, language: str) -> None:
    """Every page of a signed-in customer offers to sign out, in their language."""
    page = you.page
    assert page.locator("html").get_attribute("lang") == language
    expect(page.get_by_role("button", name=say(language, "Sign out"))).to_be_visible()


def _tick_by_keyboard(you, language: str, done_before: int) -> None:
    """Tab to the first step not yet done, press a key, and see the step and progress change."""
    page = you.page
    todo = page.get_by_role("button", name=say(language, "I have done this")).first
    step_id = todo.evaluate("button => button.closest('li.plan-step').id")
    step = page.locator(f"[id='{step_id}']")
    _press_on(you, todo, "Space" if done_before == 0 else "Enter")
    if you.js:
        expect(step).to_have_class(re.compile(r"\bdone\b"))
        # htmx swapped the step: the person's focus stays on the button they pressed.
        you.wait_until(
            f"document.activeElement.tagName === 'BUTTON'"
            f" && document.getElementById({json.dumps(step_id)}).contains(document.activeElement)"
        )
        assert page.evaluate("document.activeElement.textContent").strip() == say(
            language, "Mark as not done"
        )
    else:
        # Without JavaScript the page reloads where the step is.
        assert page.url.endswith(f"/me/plan#{step_id}")
        expect(step).to_have_class(re.compile(r"\bdone\b"))
    expect(page.locator("#plan-progress progress")).to_have_attribute("value", str(done_before + 1))
    you.check(f"ticked {done_before + 1}")


@pytest.mark.parametrize("way", WAYS, ids=str)
def test_a_notified_customer_goes_the_whole_way_and_signs_out(live, person, way):
    es = way.language == "es"
    phone = f"+1415555{next(_phones):04d}" if way.texts else ""
    someone = notify(live, phone=phone)
    _offer_with_codes(live)  # the operator has set up identity protection and its codes
    you = person(language=way.language, js=way.js, phone=way.phone, name=f"journey-{way}")
    page = you.page
    # Spanish readers start on a notice sent in English, and switch in the footer.
    you.language = "en"
    you.goto(someone["link"])
    if es:
        with page.expect_navigation():
            page.get_by_role("button", name="Español").click()
        you.language = "es"
        you.check("link page switched")
    lang = way.language
    expect(page.get_by_role("heading", level=1)).to_have_text(
        say(
            lang,
            "Notice of Data Breach from %(organisation)s",
            organisation=live.app.config["ORGANISATION_NAME"],
        )
    )

    # The way in: a code to their phone or mailbox.
    you.click("button", say(lang, "Send me the code"))
    codes_seen = 0
    _code_page(you, live, someone, codes_seen, lang)
    codes_seen += 1
    page.wait_for_url(live.base + "/me")
    you.check("dashboard")
    _signed_in_page(you, lang)
    # Their own data, masked: the card and the Social Security number by their last digits.
    exposures = page.locator("ul.exposures")
    expect(exposures).to_contain_text(say(lang, "card ending {fragment}").format(fragment="4242"))
    expect(exposures).to_contain_text(say(lang, "ending {fragment}").format(fragment="6789"))

    # The plan, two steps ticked off with the keyboard alone.
    you.click("link", say(lang, "See your full plan"))
    page.wait_for_url(live.base + "/me/plan")
    you.check("plan")
    _signed_in_page(you, lang)
    expect(page.locator("#plan-progress progress")).to_have_attribute("value", "0")
    _tick_by_keyboard(you, lang, done_before=0)
    _tick_by_keyboard(you, lang, done_before=1)

    # A new password: the code they came in with is no longer fresh, so first a new one.
    _make_code_stale(live, someone)
    you.goto("/me/password")
    _signed_in_page(you, lang)
    expect(page.get_by_label(say(lang, "New password"))).to_have_count(0)
    you.click("button", say(lang, "Send me a code"))
    _code_page(you, live, someone, codes_seen, lang)
    codes_seen += 1
    page.wait_for_url(live.base + "/me/password")
    you.check("password form")
    _signed_in_page(you, lang)
    page.get_by_label(say(lang, "New password")).fill(PASSPHRASE)
    page.get_by_label(say(lang, "The same password again")).fill(PASSPHRASE)
    you.click("button", say(lang, "Save the new password"))
    page.wait_for_url(live.base + "/me")
    # Still signed in: this browser's session was renewed, not ended.
    expect(page.get_by_role("status")).to_contain_text(
        say(
            lang,
            "Your password has been changed. Every other place you were signed in "
            "has been signed out.",
        )
    )
    you.check("password changed")
    _signed_in_page(you, lang)

    # Identity protection: consent, enroll, and the personal code with the provider's address.
    expect(
        page.get_by_role("link", name=say(lang, "Need a person? Ask our support team."))
    ).to_have_attribute("href", "/me/cases")
    you.click("link", say(lang, "See the identity protection offer"))
    page.wait_for_url(live.base + "/me/protection")
    you.check("protection")
    _signed_in_page(you, lang)
    page.get_by_label(
        say(
            lang,
            "I agree to the provider's terms and to my name and email being shared with them "
            "for this enrollment.",
        )
    ).check()
    you.click("button", say(lang, "Enroll"))
    page.wait_for_url(re.compile(r"/me/protection#offer-\d+$"))
    you.check("enrolled")
    _signed_in_page(you, lang)
    shown = page.locator("p.code.big").inner_text().strip()
    assert shown in _loaded_codes
    address = page.get_by_role("link", name=ENROLL_URL)
    expect(address).to_have_attribute("href", ENROLL_URL)
    box = address.bounding_box()
    assert box["x"] + box["width"] <= page.viewport_size["width"], "the address overflows"

    # A question, and a person's answer.
    you.goto("/me/cases")
    _signed_in_page(you, lang)
    page.get_by_label(say(lang, "What is it about?")).select_option(
        label=say(lang, "A question about my data")
    )
    question = "¿Qué hago con mi tarjeta?" if es else "What should I do about my card?"
    page.get_by_label(say(lang, "Your message")).fill(question)
    you.click("button", say(lang, "Send"))
    page.wait_for_url(re.compile(r"/me/cases/[^/]+$"))
    you.check("question sent")
    _signed_in_page(you, lang)
    expect(page.locator("ol.thread")).to_contain_text(question)
    answer = (
        "Hemos bloqueado la tarjeta; le enviaremos una nueva."
        if es
        else "We have blocked the card; a new one is on its way."
    )
    mails = len(live.mails(someone["email"]))
    _agent_answers(live, page.url.rsplit("/", 1)[1], answer)
    organisation = live.app.config["ORGANISATION_NAME"]
    told = live.wait_for_mail(someone["email"], "", seen=mails)
    assert told.subject == say(
        lang, "You have a new reply from %(organisation)s", organisation=organisation
    )
    assert answer not in told.text  # the message only says there is an answer
    page.reload()
    you.check("answered")
    reply = page.locator("li.msg-reply")
    expect(reply).to_contain_text(answer)
    expect(reply).to_contain_text(say(lang, "Our support team"))

    # Signing out, and back in with the same link: the new password changed nothing of that.
    kept = "; ".join(f"{c['name']}={c['value']}" for c in you.context.cookies())
    you.click("button", say(lang, "Sign out"))
    page.wait_for_url(live.base + f"/signed-out?lang={lang}")
    you.check("signed out")  # in Spanish too: the check finds no English on a Spanish page
    expect(page.get_by_role("button", name=say(lang, "Sign out"))).to_have_count(0)
    # A copy of the old cookie opens nothing: the session ended on the server, not only here.
    again = page.request.get(live.base + "/me", headers={"Cookie": kept}, max_redirects=0)
    assert (again.status, again.headers["location"]) == (302, "/signed-out")
    you.goto(someone["link"])
    assert page.locator("html").get_attribute("lang") == lang  # the choice was kept
    you.click("button", say(lang, "Send me the code"))
    _code_page(you, live, someone, codes_seen, lang)
    page.wait_for_url(live.base + "/me")
    you.check("dashboard again")
    _signed_in_page(you, lang)


@pytest.mark.parametrize(
    "way",
    [Way(phone=False, js=False, language="en"), Way(phone=True, js=True, language="es")],
    ids=str,
)
def test_an_expired_link_offers_a_new_one_and_a_person_and_the_new_link_works(
    live, person, clock, way
):
    lang = way.language
    someone = notify(live, locale=lang)
    you = person(language=lang, js=way.js, phone=way.phone, name=f"expired-{way}")
    page = you.page
    response = page.goto(_expired_link(live, clock, someone))
    assert response.status == 410
    you.check("expired link")
    expect(page.get_by_role("heading", level=1)).to_have_text(say(lang, "This link has expired"))
    # A way to a person, for whoever cannot use email.
    helpline = page.get_by_role("complementary", name=say(lang, "Talk to a person"))
    write = say(
        lang, "Write to us, and someone from our team will contact you and check who you are."
    )
    expect(helpline.get_by_role("link", name=write)).to_have_attribute(
        "href", re.compile(r"^/help\b")
    )

    page.get_by_label(say(lang, "Your email address")).fill(someone["email"])
    you.click("button", say(lang, "Send me a new link"))
    page.wait_for_url(live.base + "/link/sent")
    you.check("new link sent")

    subject = say(
        lang,
        "Your new link from %(organisation)s",
        organisation=live.app.config["ORGANISATION_NAME"],
    )
    fresh = link_in(live.wait_for_mail(someone["email"], subject).text, live.base)
    you.goto(fresh)
    you.click("button", say(lang, "Send me the code"))
    _code_page(you, live, someone, 0, lang)
    page.wait_for_url(live.base + "/me")
    you.check("dashboard")
    _signed_in_page(you, lang)
