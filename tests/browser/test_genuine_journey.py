"""A worried person checks a notice against the organisation's record, as they would: from the
home page, with the code the notice gave them and with a link a scammer sent."""

from __future__ import annotations

import re

import pytest

from tests.browser.people import notify

pytestmark = pytest.mark.slow

WORDS = {
    "en": {
        "subject": "Notice of Data Breach",
        "open": "Check a message, link, code or caller",
        "field": "The link, reference code, email address or phone number",
        "check": "Check",
        "yes": "Yes, this is genuine.",
        "no": "No: that link does not go to our site.",
        "typo": "This code has a mistake in it.",
    },
    "es": {
        "subject": "Aviso",
        "open": "Comprobar un mensaje, un enlace, un código o una llamada",
        "field": "El enlace, el código de referencia, la dirección de correo electrónico o el "
        "número de teléfono",
        "check": "Comprobar",
        "yes": "Sí, es auténtico.",
        "no": "No: ese enlace no lleva a nuestro sitio.",
        "typo": "Este código tiene un error.",
    },
}


@pytest.mark.parametrize(
    ("language", "js", "phone"),
    [("en", True, False), ("en", False, False), ("es", True, True), ("es", False, True)],
    ids=["en-js", "en-nojs", "es-js-phone", "es-nojs-phone"],
)
def test_a_worried_person_checks_their_code_and_a_scammers_link(live, person, language, js, phone):
    words = WORDS[language]
    someone = notify(live, locale=language)
    notice = live.wait_for_mail(someone["email"], words["subject"])
    code = re.search(r"\b[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}\b", notice.text).group(0)
    you = person(language=language, js=js, phone=phone)
    page = you.goto(live.base + "/")
    you.click("link", words["open"])
    you.check("genuine page")

    def ask(what: str) -> str:
        page.get_by_label(words["field"]).fill(what)
        you.submit(words["check"])
        return page.get_by_role("status").inner_text()

    assert words["yes"] in ask(code.lower())
    you.check("a real code")
    assert words["no"] in ask("https://portal-example-help.example/a/secure-your-account")
    you.check("a scammers link")
    mistyped = ("2" if code[0] != "2" else "3") + code[1:]
    assert words["typo"] in ask(mistyped)
