"""An authenticator app for later visits: set up with a fresh proof, no replays, no leaks."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from portal import clock as portal_clock
from portal.extensions import db
from portal.models import AuditEvent, Customer
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.web.navigation import safe_next
from tests.conftest import customer_row
from tests.customer_flow import code_sent_to, csrf_from, messages_to, sign_in, submit_code

ANN = "ann@example.com"


@pytest.fixture
def signed_in(client, incident, write_csv):
    import_customers(incident, write_csv([customer_row(1, email=ANN, phone="")]), actor="test")
    queue_notices(incident, actor="test")
    sign_in(client, ANN)
    return client


def customer() -> Customer:
    db.session.expire_all()
    return db.session.scalars(select(Customer)).one()


def secret_of(c: Customer) -> str:
    return c.totp_secret


def enroll(client) -> pyotp.TOTP:
    page = client.get("/me/authenticator")
    client.post("/me/authenticator/setup", data={"csrf_token": csrf_from(page)})
    page = client.get("/me/authenticator")
    assert b"data:image/svg+xml" in page.data  # the QR code, drawn by segno
    totp = pyotp.TOTP(secret_of(customer()))
    response = client.post(
        "/me/authenticator/confirm",
        data={"csrf_token": csrf_from(page), "code": totp.at(portal_clock.now())},
    )
    assert response.headers["Location"] == "/me/authenticator"
    return totp


def test_set_up_and_sign_in_later_without_a_new_link(signed_in, app, clock):
    totp = enroll(signed_in)
    assert customer().totp_enabled_at is not None
    assert len(base64.b32decode(secret_of(customer()))) * 8 >= 160
    notice = [m for m in messages_to(ANN) if "change to your account" in m.row.subject]
    assert len(notice) == 1 and "authenticator app was added" in notice[0].text
    assert secret_of(customer()) not in notice[0].text

    # Half a minute later (the code used at set-up cannot be replayed), from another browser.
    clock.tick(30)
    later = app.test_client()
    page = later.get("/signin")
    response = later.post(
        "/signin", data={"csrf_token": csrf_from(page), "email": ANN, "code": totp.at(clock.now())}
    )
    assert response.headers["Location"] == "/me"
    assert later.get("/me").status_code == 200
    # A browser new to Ann: she is told (AUTH-08), without the code she typed.
    told = [m for m in messages_to(ANN) if "new sign-in" in m.row.subject]
    assert len(told) == 1 and "If this was not you" in told[0].text
    assert totp.at(clock.now()) not in told[0].text


def test_a_used_code_cannot_be_replayed(signed_in):
    totp = enroll(signed_in)
    used = customer().totp_last_step
    c = customer()
    from portal.services import authenticator

    with pytest.raises(authenticator.SignInFailed):
        authenticator.sign_in(ANN, totp.generate_otp(used))
    assert c.totp_last_step == used


def test_a_replayed_code_is_recorded_and_the_customer_is_told(signed_in, app):
    totp = enroll(signed_in)
    used = totp.generate_otp(customer().totp_last_step)
    told_before = len(messages_to(ANN))
    answer = app_sign_in(app.test_client(), ANN, used)
    assert answer.status_code == 422
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert actions.count("code.replayed") == 1
    told = [m.text for m in messages_to(ANN)][told_before:]
    assert len(told) == 1 and "already been used" in told[0] and used not in told[0]
    # A merely wrong code is not a replay: nothing more is recorded or sent.
    app_sign_in(app.test_client(), ANN, "000000", n=1)
    assert db.session.scalars(select(AuditEvent.action)).all().count("code.replayed") == 1
    assert len(messages_to(ANN)) == told_before + 1


def test_a_wrong_or_unknown_sign_in_gets_the_same_answer(signed_in, app):
    enroll(signed_in)
    other = app.test_client()

    def attempt(email, code):
        page = other.get("/signin")
        return other.post(
            "/signin", data={"csrf_token": csrf_from(page), "email": email, "code": code}
        )

    wrong = attempt(ANN, "000000")
    unknown = attempt("nobody@example.com", "000000")
    assert wrong.status_code == unknown.status_code == 422
    assert b"do not match" in wrong.data and b"do not match" in unknown.data


def elsewhere(n: int) -> dict:
    """The n-th of many client addresses (a stranger spreading guesses past the limits)."""
    return {"REMOTE_ADDR": f"203.0.113.{n + 1}"}


def app_sign_in(client, email: str, code: str, n: int = 0):
    page = client.get("/signin")
    return client.post(
        "/signin",
        data={"csrf_token": csrf_from(page), "email": email, "code": code},
        environ_base=elsewhere(n),
    )


def comparable(response) -> tuple[int, str]:
    """What a visitor sees, without what differs on every page (tokens, nonces, the echo of
    the address they typed)."""
    body = re.sub(r'value="[^"]*"', "", response.get_data(as_text=True))
    body = re.sub(r"nonce=\"[^\"]+\"|reference: [0-9a-f]+|\"X-CSRFToken\": \"[^\"]+\"", "", body)
    return response.status_code, body


def test_ten_wrong_codes_at_signin_leave_the_notice_link_and_its_code_working(signed_in, app):
    enroll(signed_in)
    stranger = app.test_client()
    answers = [app_sign_in(stranger, ANN, "000000", n) for n in range(10)]
    assert [a.status_code for a in answers] == [422] * 10
    assert all(b"do not match" in a.data for a in answers)
    assert customer().verification_locked_at is None
    # Ann, from her own browser, with her notice link and the code it sends: no agent needed.
    ann = app.test_client()
    assert sign_in(ann, ANN).status_code == 200


def test_after_wrong_codes_app_sign_in_waits_then_works_again(signed_in, app, clock):
    totp = enroll(signed_in)
    clock.tick()  # the app shows a code not used before: only the wait can refuse it
    stranger = app.test_client()
    for n in range(5):
        assert app_sign_in(stranger, ANN, "000000", n).status_code == 422
    ann = app.test_client()
    # Ann's right code, inside the wait: not signed in, told when, and told the link works.
    paused = app_sign_in(ann, ANN, totp.at(clock.now()), 10)
    assert paused.status_code == 429 and "Retry-After" in paused.headers
    assert b"paused" in paused.data and b"link in your notice" in paused.data
    assert ann.get("/me").status_code != 200
    clock.tick(int(paused.headers["Retry-After"]) + 30)
    later = app_sign_in(ann, ANN, totp.at(clock.now()), 11)
    assert later.headers["Location"] == "/me"
    assert ann.get("/me").status_code == 200
    assert customer().totp_failures == 0 and customer().totp_retry_at is None


def test_each_wrong_code_past_five_doubles_the_wait_up_to_an_hour(signed_in, app, clock):
    enroll(signed_in)
    stranger = app.test_client()
    waits = []
    for n in range(14):
        app_sign_in(stranger, ANN, "000000", n)
        retry_at = customer().totp_retry_at
        waits.append(round((retry_at - clock.now()).total_seconds()) if retry_at else 0)
    assert waits[:4] == [0, 0, 0, 0]
    assert waits[4:8] == [30, 60, 120, 240]
    assert waits[-1] == 3600  # an hour at most


def test_during_a_wait_a_wrong_code_answers_as_an_unknown_address_does(signed_in, app, clock):
    enroll(signed_in)
    stranger = app.test_client()
    for n in range(6):
        app_sign_in(stranger, ANN, "000000", n)
    assert customer().totp_retry_at is not None
    known = comparable(app_sign_in(stranger, ANN, "123456", 20))
    unknown = comparable(app_sign_in(stranger, "nobody@example.com", "123456", 21))
    assert known == unknown and known[0] == 422


def test_set_up_needs_a_fresh_proof_and_the_step_up_comes_back(signed_in, clock):
    clock.move(timedelta(minutes=11))  # still signed in, but not freshly
    signed_in.get("/me")
    page = signed_in.get("/me/authenticator")
    assert b"first confirm it is you" in page.data
    refused = signed_in.post("/me/authenticator/setup", data={"csrf_token": csrf_from(page)})
    assert refused.headers["Location"] == "/me/authenticator"
    assert customer().totp_sealed is None

    started = signed_in.post(
        "/me/confirm", data={"csrf_token": csrf_from(page), "next": "/me/authenticator"}
    )
    assert started.headers["Location"] == "/verify"
    done = submit_code(signed_in, code_sent_to(ANN))
    assert done.headers["Location"] == "/me/authenticator"
    assert b"Set up an authenticator app" in signed_in.get("/me/authenticator").data


def test_the_seed_never_travels_in_the_cookie(signed_in):
    page = signed_in.get("/me/authenticator")
    signed_in.post("/me/authenticator/setup", data={"csrf_token": csrf_from(page)})
    cookie = signed_in.get_cookie("portal").value
    payload = cookie.split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert secret_of(customer()).encode() not in raw
    totp = pyotp.TOTP(secret_of(customer()))
    page = signed_in.get("/me/authenticator")
    signed_in.post(
        "/me/authenticator/confirm",
        data={"csrf_token": csrf_from(page), "code": totp.at(portal_clock.now())},
    )
    after = signed_in.get("/me/authenticator").get_data(as_text=True)
    assert "data:image/svg+xml" not in after  # never shown again once confirmed
    assert secret_of(customer())[:4] not in after


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.test",
        "//evil.test",
        "/\\evil.test",
        "javascript:alert(1)",
        "/\r\nSet-Cookie:x",
        "",
        None,
    ],
)
def test_next_stays_on_this_site(target):
    assert safe_next(target) is None


def test_next_accepts_local_paths():
    assert safe_next("/me/authenticator") == "/me/authenticator"


def _full_width(code: str) -> str:
    return "".join(chr(ord(digit) - ord("0") + ord("０")) for digit in code)


def test_an_app_code_in_full_width_digits_does_not_sign_in(signed_in, app, clock):
    totp = enroll(signed_in)
    clock.tick(30)
    later = app.test_client()
    page = later.get("/signin")
    code = totp.at(clock.now())
    refused = later.post(
        "/signin", data={"csrf_token": csrf_from(page), "email": ANN, "code": _full_width(code)}
    )
    assert refused.status_code == 422 and b"do not match" in refused.data
    page = later.get("/signin")
    accepted = later.post(
        "/signin", data={"csrf_token": csrf_from(page), "email": ANN, "code": code}
    )
    assert accepted.headers["Location"] == "/me"


def test_the_step_up_lasts_five_minutes_for_the_password_and_the_authenticator(signed_in, clock):
    clock.move(timedelta(minutes=4, seconds=50))
    assert b"Set up an authenticator app" in signed_in.get("/me/authenticator").data
    assert b'name="password"' in signed_in.get("/me/password").data
    clock.move(timedelta(seconds=20))  # 5 minutes 10 seconds after the code
    page = signed_in.get("/me/authenticator")
    assert b"first confirm it is you" in page.data
    refused = signed_in.post("/me/authenticator/setup", data={"csrf_token": csrf_from(page)})
    assert refused.headers["Location"] == "/me/authenticator"
    assert customer().totp_sealed is None
    assert b'name="password"' not in signed_in.get("/me/password").data


def _security_notices() -> list:
    return [m for m in messages_to(ANN) if "change to your account" in m.row.subject]


def test_a_new_app_replaces_the_current_one_only_with_a_code_from_it(signed_in, clock):
    old_app = enroll(signed_in)
    old_secret = secret_of(customer())
    clock.tick(30)

    # The plain "set up" post that used to switch the app off silently: refused, nothing changed.
    page = signed_in.get("/me/authenticator")
    silent = signed_in.post("/me/authenticator/setup", data={"csrf_token": csrf_from(page)})
    assert silent.status_code == 422
    assert b"Code from the authenticator app you use now" in page.data
    assert b"Enter the 6 digits the app you use now shows." in silent.data
    wrong = signed_in.post(
        "/me/authenticator/setup", data={"csrf_token": csrf_from(page), "current_code": "000000"}
    )
    assert wrong.status_code == 422 and b"does not match the app you use now" in wrong.data
    assert secret_of(customer()) == old_secret and customer().totp_enabled_at is not None
    assert len(_security_notices()) == 1  # only the first set-up's

    # With a code from the app in use: the old one is off, the customer is told at once.
    replaced = signed_in.post(
        "/me/authenticator/setup",
        data={"csrf_token": csrf_from(page), "current_code": old_app.at(clock.now())},
    )
    assert replaced.headers["Location"] == "/me/authenticator"
    assert secret_of(customer()) != old_secret and customer().totp_enabled_at is None
    notices = _security_notices()
    assert len(notices) == 2 and "switched off so that a new one" in notices[1].text
    assert old_app.at(clock.now()) not in notices[1].text and old_secret not in notices[1].text
    assert "If this was not you" in notices[1].text

    # The new app is confirmed like a first one, and that is told too.
    new_app = pyotp.TOTP(secret_of(customer()))
    page = signed_in.get("/me/authenticator")
    done = signed_in.post(
        "/me/authenticator/confirm",
        data={"csrf_token": csrf_from(page), "code": new_app.at(clock.now())},
    )
    assert done.headers["Location"] == "/me/authenticator"
    assert "authenticator app was added" in _security_notices()[2].text
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert "authenticator.replace_refused" in actions and "authenticator.replaced" in actions


def test_removing_the_app_tells_the_customer(signed_in, clock):
    enroll(signed_in)
    page = signed_in.get("/me/authenticator")
    removed = signed_in.post("/me/authenticator/remove", data={"csrf_token": csrf_from(page)})
    assert removed.headers["Location"] == "/me/authenticator"
    assert customer().totp_enabled_at is None
    notices = _security_notices()
    assert len(notices) == 2 and "authenticator app was removed" in notices[1].text
