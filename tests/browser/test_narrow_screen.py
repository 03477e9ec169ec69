"""The personal page on the narrowest phones people still carry (360 CSS pixels wide): the
statements' long addresses (www.consumerfinance.gov/learnmore.) wrap instead of pushing the page
sideways, JS on and off."""

from __future__ import annotations

import pytest

from tests.browser.people import notify, signed_in

pytestmark = pytest.mark.slow

NARROW = {"width": 360, "height": 740}


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_the_personal_page_fits_a_360_pixel_phone(live, person, js):
    someone = notify(live)
    you = person(js=js, phone=True, name=f"narrow-{'js' if js else 'nojs'}")
    you.page.set_viewport_size(NARROW)
    page = signed_in(you, live, someone)
    assert "www.consumerfinance.gov/learnmore" in page.inner_text("main")
    you.check("personal page at 360")  # among its checks: no wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
