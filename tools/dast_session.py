"""`make dast`: sign a demo customer and the demo admin in, and print the cookies for wapiti.

The scan then crawls and attacks the signed-in pages too (the customer's dashboard, plan, cases
and settings; the staff queue and the admin console), not only what a stranger reaches. It runs
against the scan's own throw-away database only (tools/dast.sh sets the PORTAL_* environment),
so it may set the admin's password and authenticator directly instead of through the set-up link.
"""

from __future__ import annotations

import secrets
import sys

from sqlalchemy import select

from portal import clock, create_app
from portal.extensions import db
from portal.models import Customer
from portal.services import passwords, staff, totp
from portal.services.demo import DEMO_ADMIN
from portal.services.sessions import open_session
from portal.unit_of_work import unit
from portal.web.identity import staff_cookie_name


def main(user_agent: str) -> None:
    app = create_app()
    with app.app_context(), unit():
        customer = db.session.scalars(select(Customer).order_by(Customer.id)).first()
        admin = staff.by_email(DEMO_ADMIN)
        if customer is None or admin is None:
            sys.exit("dast: the demo database has no customer or no admin to sign in")
        token = open_session(customer, verified_at=clock.now(), user_agent=user_agent)
        admin.password_hash = passwords.hasher().hash(secrets.token_urlsafe(24))
        admin.invite_nonce = None
        admin.totp_secret = totp.new_secret()
        admin.totp_enabled_at = clock.now()
        staff_token = staff._open(admin, mfa=True, user_agent=user_agent)
        staff_cookie = staff_cookie_name()
    # The signed cookie the portal sets after a code is accepted, with the CSRF secret that a
    # first page would add: wapiti sends this cookie unchanged, so the tokens in the forms it
    # reads stay valid and its attacks reach the views instead of stopping at the CSRF check.
    state = {"sid": token, "csrf_token": secrets.token_hex(20)}
    value = app.session_interface.get_signing_serializer(app).dumps(state)
    print(f"{app.config['SESSION_COOKIE_NAME']}={value}; {staff_cookie}={staff_token}")


if __name__ == "__main__":
    main(sys.argv[1])
