"""The customer's way in: link, one-time code, session. Every link and code abuse is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, Challenge, Customer, KnownBrowser, LoginSession, Notice
from portal.services import tokens
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.services.sessions import describe_device
from portal.services.verification import ChallengeEnded, normalise_code, verify_code
from tests.conftest import customer_row
from tests.customer_flow import (
    code_sent_to,
    csrf_from,
    link_path,
    messages_to,
    run_jobs,
    sign_in,
    start_from_link,
    submit_code,
)

ANN = "ann@example.com"
BOB = "bob@example.com"


@pytest.fixture
def notified(app, incident, write_csv):
    rows = [
        customer_row(
            1,
            full_name="Ann Example",
            email=ANN,
            phone="",
            data_classes="payment_card:4242;ssn:6789;email_address",
        ),
        customer_row(
            2,
            full_name="Bob Example",
            email=BOB,
            phone="",
            data_classes="bank_account:9911;password",
        ),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")


def count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model))


def actions() -> list[str]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


# --- acceptance 1: the whole way in ---


def test_full_path_from_link_to_dashboard(client, notified):
    path = link_path(ANN)
    for _ in range(2):  # a mail scanner, then the person: looking spends nothing
        page = client.get(path)
        assert page.status_code == 200
        assert b"Send me the code" in page.data
        assert "by email to a•••@example.com".encode() in page.data
    assert count(Challenge) == 0

    response = sign_in(client, ANN)

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Payment card number (card ending 4242)" in page
    assert "Social Security number (ending 6789)" in page
    assert page.index("Social Security number") < page.index("Payment card number")  # worst first
    for heading in (
        "What Happened",
        "What Information Was Involved",
        "What We Are Doing",
        "What You Can Do",
        "For More Information",
    ):
        assert heading in page
    assert "9911" not in page and "Bank account" not in page  # nothing of Bob's
    assert "never ask for your full Social Security number" in page
    assert response.headers["Cache-Control"] == "no-store"
    assert 'hx-history="false"' in page
    notice = db.session.scalars(
        select(Notice).join(Customer).where(Customer.external_id == "C-00001")
    ).one()
    assert notice.opened_at is not None and notice.verified_at is not None
    assert {
        "link.opened",
        "challenge.started",
        "code.sent",
        "customer.verified",
        "session.started",
    } <= set(actions())


def test_the_session_cookie_holds_nothing_personal(client, notified):
    sign_in(client, ANN)
    cookie = client.get_cookie("portal")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    import base64
    import zlib

    payload = cookie.value.split(".")[0 if not cookie.value.startswith(".") else 1]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    if cookie.value.startswith("."):
        raw = zlib.decompress(raw)
    import json

    session = json.loads(raw)
    # The session id is random text and may spell "Ann" by chance: check it is long and opaque,
    # then look for personal data in everything else the cookie carries.
    sid = session.pop("sid")
    assert isinstance(sid, str) and len(sid) >= 32
    rest = json.dumps(session).encode()
    for secret in (b"ann", b"Ann", b"4242", b"C-00001", b"example.com"):
        assert secret not in rest


def test_sign_in_rotates_the_session(client, notified):
    start_from_link(client, link_path(ANN))
    before = client.get_cookie("portal").value
    submit_code(client, code_sent_to(ANN))
    after = client.get_cookie("portal").value
    assert before != after


def test_planted_session_cookie_is_not_signed_in_by_the_victims_login(app, notified):
    attacker = app.test_client()
    victim = app.test_client()
    start_from_link(attacker, link_path(ANN))
    planted = attacker.get_cookie("portal").value
    victim.set_cookie("portal", planted)  # the attacker fixes the victim's session cookie
    submit_code(victim, code_sent_to(ANN))
    assert attacker.get("/me").status_code == 302  # the attacker's copy stays signed out


# --- acceptance 2: links ---


def _calm_page(response, heading: bytes):
    assert heading in response.data
    assert b"Send me a new link" in response.data


def test_tampered_link(client, notified):
    path = link_path(ANN)
    tampered = path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb")
    response = client.get(tampered)
    assert response.status_code == 404
    _calm_page(response, b"This link does not work")
    assert client.post(tampered, data={"csrf_token": csrf_from(response)}).status_code == 404
    assert count(Challenge) == 0 and count(LoginSession) == 0


def test_expired_link(client, app, notified, clock):
    path = link_path(ANN)
    clock.move(app.config["NOTICE_LINK_TTL"] + timedelta(seconds=1))
    response = client.get(path)
    assert response.status_code == 410
    _calm_page(response, b"This link has expired")
    assert count(Challenge) == 0


def test_revoked_link(client, notified):
    path = link_path(ANN)
    notice = db.session.scalars(
        select(Notice).join(Customer).where(Customer.external_id == "C-00001")
    ).one()
    notice.link_nonce = "replaced"
    db.session.commit()
    response = client.get(path)
    _calm_page(response, b"This link has been replaced")
    assert count(Challenge) == 0


def test_token_of_another_purpose(client, notified):
    notice = db.session.scalars(select(Notice)).first()
    other = tokens._serializer("pwreset-v1").dumps([notice.public_id, notice.link_nonce])
    response = client.get(f"/a/{other}")
    _calm_page(response, b"This link does not work")


# --- acceptance 2: codes ---


def test_five_wrong_codes_kill_the_code(client, notified):
    start_from_link(client, link_path(ANN))
    right = code_sent_to(ANN)
    wrong = "000000" if right != "000000" else "111111"
    said = []
    for _attempt in range(5):
        response = submit_code(client, wrong)
        assert response.status_code == 422
        said.append(response.data)
    # The code's limit is said before it ends the code (two tries left, then one), not only after.
    assert not any(b"You can try this code" in page for page in said[:2])
    assert b"You can try this code 2 more times" in said[2]
    assert b"You can try this code once more" in said[3]
    assert b"Too many wrong tries" in response.data
    response = submit_code(client, right)
    assert response.status_code == 422 and b"Too many wrong tries" in response.data
    assert client.get("/me").status_code == 302


def test_a_used_code_is_refused(client, app, notified):
    start_from_link(client, link_path(ANN))
    code = code_sent_to(ANN)
    challenge_id = db.session.scalars(select(Challenge)).one().public_id
    assert submit_code(client, code).headers["Location"] == "/me"
    # Signing in forgets the challenge in the browser; even someone holding its id gets nowhere.
    with pytest.raises(ChallengeEnded, match="already been used"):
        verify_code(challenge_id, code)
    assert client.get("/verify").status_code == 302  # no challenge here: back to the start


def test_a_code_from_another_challenge_is_refused(app, notified):
    first, second = app.test_client(), app.test_client()
    start_from_link(first, link_path(ANN))
    first_code = code_sent_to(ANN)
    start_from_link(second, link_path(ANN))
    second_code = code_sent_to(ANN)
    if first_code == second_code:
        pytest.skip("the two random codes happened to be equal")
    assert submit_code(second, first_code).status_code == 422
    assert submit_code(first, second_code).status_code == 422
    assert submit_code(first, first_code).headers["Location"] == "/me"


def test_a_code_after_ten_minutes_is_refused(client, notified, clock):
    start_from_link(client, link_path(ANN))
    code = code_sent_to(ANN)
    clock.move(timedelta(minutes=10, seconds=1))
    response = submit_code(client, code)
    assert response.status_code == 422 and b"expired" in response.data


def test_resend_delivers_the_same_code_and_is_limited(client, notified):
    start_from_link(client, link_path(ANN))
    first = code_sent_to(ANN)
    token = csrf_from(client.get("/verify"))
    for _ in range(3):
        response = client.post(
            "/verify/resend", data={"csrf_token": token}, headers={"HX-Request": "true"}
        )
        assert b"sent the same code again" in response.data
        assert code_sent_to(ANN) == first
    fourth = client.post(
        "/verify/resend", data={"csrf_token": token}, headers={"HX-Request": "true"}
    )
    assert b"as often as we can" in fourth.data
    codes = [m for m in messages_to(ANN) if "verification code" in m.row.subject]
    assert len(codes) == 4
    assert submit_code(client, first).headers["Location"] == "/me"  # the first message works


def test_ten_failures_across_resends_lock_and_a_new_link_does_not_unlock(client, app, notified):
    start_from_link(client, link_path(ANN))
    right = code_sent_to(ANN)
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(4):
        submit_code(client, wrong)
    client.post("/verify/resend", data={"csrf_token": csrf_from(client.get("/verify"))})
    submit_code(client, wrong)  # fifth on the first challenge: it is dead
    start_from_link(client, link_path(ANN))  # a new challenge; the failure count goes on
    for _ in range(4):
        submit_code(client, wrong)
    response = submit_code(client, wrong)  # the tenth failure in a day
    assert response.headers["Location"] == "/locked"
    locked = client.get("/locked")
    assert b"Call" in locked.data
    # It does not lift by itself, and the page says so rather than promising a pause.
    assert b"until a person from our team checks it is you" in locked.data
    assert (
        db.session.scalars(select(Customer).where(Customer.external_id == "C-00001"))
        .one()
        .verification_locked_at
        is not None
    )

    # A new link is mailed, but the customer stays locked.
    client.post("/link/new", data={"csrf_token": csrf_from(client.get("/link/new")), "email": ANN})
    run_jobs(app)
    response = start_from_link(client, link_path(ANN))
    assert response.headers["Location"] == "/locked"
    assert "verification.locked" in actions()


def test_typed_codes_are_read_as_people_type_them():
    assert normalise_code("123 456") == "123456"
    assert normalise_code(" 123-456 ") == "123456"
    assert normalise_code("１２３４５６") is None  # full-width digits: ASCII 0-9 only (OTP-04)
    assert normalise_code("123456\n") is None
    assert normalise_code("12345") is None
    assert normalise_code("12345a") is None
    assert normalise_code("١٢٣٤٥٦") is None  # other scripts' digits are refused, not guessed


def test_malformed_code_is_explained_and_not_counted(client, notified):
    start_from_link(client, link_path(ANN))
    response = submit_code(client, "12 34")
    assert response.status_code == 422 and b"Enter the 6 digits" in response.data
    assert db.session.scalars(select(Challenge)).one().tries == 0
    assert (
        submit_code(client, "  " + " ".join(code_sent_to(ANN)) + " ").headers["Location"] == "/me"
    )


def test_code_input_helps_phones(client, notified):
    start_from_link(client, link_path(ANN))
    page = client.get("/verify").get_data(as_text=True)
    assert 'autocomplete="one-time-code"' in page and 'inputmode="numeric"' in page


def test_htmx_shows_errors_inline_and_redirects_on_success(client, notified):
    start_from_link(client, link_path(ANN))
    wrong = submit_code(
        client, "000001" if code_sent_to(ANN) != "000001" else "000002", **{"HX-Request": "true"}
    )
    assert wrong.status_code == 422
    assert wrong.data.lstrip().startswith(b"<form")  # only the form, to swap in place
    assert "HX-Request" in wrong.headers["Vary"]
    right = submit_code(client, code_sent_to(ANN), **{"HX-Request": "true"})
    assert right.headers["HX-Redirect"] == "/me"


def test_code_messages_expire_in_the_outbox(client, notified):
    start_from_link(client, link_path(ANN))
    message = [m for m in messages_to(ANN) if "verification code" in m.row.subject][-1]
    challenge = db.session.scalars(select(Challenge)).one()
    assert message.row.expires_at == challenge.expires_at
    assert challenge.code_sealed is not None and code_sent_to(ANN).encode() not in (
        challenge.code_digest + challenge.code_sealed
    )


def test_too_many_challenges_in_an_hour(client, notified):
    path = link_path(ANN)
    for _ in range(5):
        assert start_from_link(client, path).status_code == 302
    response = start_from_link(client, path)
    assert response.status_code == 429 and b"several codes already" in response.data


# --- acceptance 4: sessions ---


def test_logout_then_the_old_cookie_is_useless(client, app, notified):
    dashboard = sign_in(client, ANN)
    copied = client.get_cookie("portal").value
    response = client.post("/logout", data={"csrf_token": csrf_from(dashboard)})
    assert response.headers["Location"] == "/signed-out?lang=en"  # the goodbye in their language
    assert '"cache"' in response.headers["Clear-Site-Data"]
    assert client.get_cookie("portal") is None  # the session cookie is deleted
    replay = app.test_client()
    replay.set_cookie("portal", copied)
    assert replay.get("/me").headers["Location"] == "/signed-out"
    assert "session.ended" in actions()


def test_logout_is_post_only(client, notified):
    sign_in(client, ANN)
    assert client.get("/logout").status_code == 405
    assert client.get("/me").status_code == 200


def test_idle_sixteen_minutes_signs_out(client, notified, clock):
    sign_in(client, ANN)
    clock.move(timedelta(minutes=16))
    assert client.get("/me").headers["Location"] == "/signed-out"


def test_activity_keeps_the_session_but_not_past_twelve_hours(client, notified, clock):
    signed_in_at = clock.now()
    sign_in(client, ANN)
    for minutes in range(14, 12 * 60, 14):
        clock.move_to(signed_in_at + timedelta(minutes=minutes))
        if client.get("/me").status_code != 200:
            break
    assert minutes > 11 * 60  # kept alive by activity for most of the day
    clock.move_to(signed_in_at + timedelta(hours=12, minutes=1))
    assert client.get("/me").headers["Location"] == "/signed-out"


def test_no_remember_me(client, notified):
    sign_in(client, ANN)
    cookie = client.get_cookie("portal")
    assert cookie.expires is None  # a browser-session cookie, never a persistent one
    assert client.get_cookie("remember_token") is None


def test_forged_host_does_not_change_the_mailed_link(client, notified):
    client.post(
        link_path(ANN),
        base_url="http://evil.test",
        data={"csrf_token": csrf_from(client.get(link_path(ANN), base_url="http://evil.test"))},
    )
    client.post(
        "/link/new",
        base_url="http://evil.test",
        headers={"X-Forwarded-Host": "evil.test"},
        data={
            "csrf_token": csrf_from(client.get("/link/new", base_url="http://evil.test")),
            "email": ANN,
        },
    )
    run_jobs(client.application)
    for message in messages_to(ANN):
        assert "evil.test" not in message.text and "evil.test" not in message.html
    assert link_path(ANN).startswith("/a/")


def test_a_code_typed_in_full_width_digits_is_refused_and_counts_nothing(client, notified):
    start_from_link(client, link_path(ANN))
    code = code_sent_to(ANN)
    wide = "".join(chr(ord(digit) - ord("0") + ord("０")) for digit in code)
    response = submit_code(client, wide)
    assert response.status_code == 422 and b"Enter the 6 digits" in response.data
    assert db.session.scalars(select(Challenge)).one().consumed_at is None
    assert submit_code(client, code).headers["Location"] == "/me"


# --- a sign-in from a browser new to the customer is told to them (AUTH-08) ---

ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def _new_sign_in_notices() -> list:
    return [m for m in messages_to(ANN) if "new sign-in" in m.row.subject]


def _sign_in_as_browser(client, user_agent: str):
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    started = start_from_link(client, link_path(ANN))
    assert started.headers["Location"] == "/verify"
    done = submit_code(client, code_sent_to(ANN))
    assert done.headers["Location"] == "/me", done.status_code
    return client.get("/me")


def test_a_sign_in_from_a_new_browser_is_told_but_not_the_first_or_a_known_one(
    app, client, notified, clock
):
    # The first sign-in ever, from the notice: they just read the letter, no message.
    dashboard = _sign_in_as_browser(client, IPHONE_SAFARI)
    assert _new_sign_in_notices() == []
    # Signed out and back in from the same browser: known, no message.
    client.post("/logout", data={"csrf_token": csrf_from(dashboard)})
    clock.tick(60)
    _sign_in_as_browser(client, IPHONE_SAFARI)
    assert _new_sign_in_notices() == []

    # Another browser: one message, with when and roughly what, and a way out.
    other = app.test_client()
    clock.tick(60)
    _sign_in_as_browser(other, ANDROID_CHROME)
    notices = _new_sign_in_notices()
    assert len(notices) == 1
    text = notices[0].text
    assert "Chrome on Android" in text and str(clock.now().year) in text
    assert "If this was not you" in text and "https://portal.example.test/help" in text
    browser_id = other.get_cookie("portal_browser").value
    for secret in ("127.0.0.1", browser_id, code_sent_to(ANN)):
        assert secret not in text and secret not in notices[0].html
    assert "session.new_browser" in actions()

    # That browser is known from now on.
    clock.tick(60)
    _sign_in_as_browser(other, ANDROID_CHROME)
    assert len(_new_sign_in_notices()) == 1


def test_the_browser_id_is_long_lived_http_only_and_planted_garbage_is_replaced(
    app, client, notified
):
    client.set_cookie("portal_browser", "not-a-real-id")
    _sign_in_as_browser(client, IPHONE_SAFARI)
    cookie = client.get_cookie("portal_browser")
    assert cookie.value != "not-a-real-id" and len(cookie.value) == 43
    assert cookie.http_only and cookie.expires is not None
    assert db.session.scalar(select(func.count()).select_from(KnownBrowser)) == 1


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (ANDROID_CHROME, ("Chrome", "Android")),
        (IPHONE_SAFARI, ("Safari", "iPhone")),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            ("Edge", "Windows"),
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:132.0) Gecko/20100101 Firefox/132.0",
            ("Firefox", "macOS"),
        ),
        ("curl/8.5.0", (None, None)),
        ("", (None, None)),
    ],
)
def test_a_device_is_described_roughly(user_agent, expected):
    assert describe_device(user_agent) == expected
