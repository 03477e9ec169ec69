"""Staff for the browser journeys: an invitation as `portal staff invite` makes it, the set-up
pages walked in the browser, and the authenticator app's clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pyotp

from tests.browser.conftest import Live
from tests.conftest import Clock

PASSWORD = "lantern orchard velvet compass"
_numbers = itertools.count(1)


class AuthenticatorClock:
    """The staff member's authenticator app, on the portal's clock (the tests' `clock`).

    A code is accepted once (replay protection), so a second sign-in needs the app's next code:
    a person waits up to 30 s for it, and a proof of identity grows old after five minutes.
    The test moves the clock instead of sleeping; the live server runs in this process, so the
    whole portal (not only the staff pages) sees the time move.
    """

    def __init__(self, clock: Clock):
        self.clock = clock

    def wait(self, seconds: int) -> None:
        self.clock.tick(seconds)

    def code(self, secret: str) -> str:
        """What the app shows now."""
        return pyotp.TOTP(secret).at(self.clock.now())

    def next_code(self, secret: str) -> str:
        """The app's next code, after waiting for it."""
        self.wait(30)
        return self.code(secret)


@dataclass
class StaffMember:
    email: str
    role: str
    secret: str = ""
    recovery_codes: list[str] = field(default_factory=list)


def invite(live: Live, role: str, roles=()) -> tuple[StaffMember, str]:
    """What `portal staff invite --email E --role R [--role R2]` does: the member and their
    set-up link."""
    from portal.services import staff

    member = StaffMember(f"{role}{next(_numbers)}@staff.example.com", role)
    return member, live.run(staff.invite, member.email, role, actor="cli:test", roles=roles)


def authenticator_key(page) -> str:
    """The key the set-up page shows for people who cannot scan the QR code."""
    shown = page.locator("p", has_text="Cannot scan?").locator("xpath=following-sibling::p[1]")
    return shown.inner_text().replace(" ", "")


def set_up(
    you, live: Live, clock: AuthenticatorClock, role: str = "agent", roles=(), home="/staff/cases"
) -> StaffMember:
    """An invited member through the set-up pages to their first page (the queue for the desk,
    the approvals for the rest), signed in. The pages themselves are checked in the set-up
    journey; here they are the way in."""
    member, link = invite(live, role, roles)
    page = you.page
    page.goto(link)
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same password again").fill(PASSWORD)
    you.click("button", "Continue")
    page.wait_for_url(live.base + "/staff/setup-authenticator")
    member.secret = authenticator_key(page)
    page.get_by_label("Code from your authenticator app").fill(clock.code(member.secret))
    you.click("button", "Confirm")
    member.recovery_codes = page.locator("ol.recovery li").all_inner_texts()
    you.click("link", "I have stored them: continue")
    page.wait_for_url(live.base + home)
    return member


def reauthenticate(you, member: StaffMember, clock: AuthenticatorClock) -> None:
    """The 'Confirm it is you' page: password and the app's next code."""
    page = you.page
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Code from your authenticator app").fill(clock.next_code(member.secret))
    you.click("button", "Confirm")
