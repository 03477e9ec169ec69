"""`make dast`: sign a demo customer in, as the link-and-code journey would, and print the cookie.

The scan then crawls and attacks the customer's pages too (the dashboard, the plan, cases,
account settings), not only what a stranger reaches. Runs against the scan's own throw-away
database only (tools/dast.sh sets the PORTAL_* environment).
"""

from __future__ import annotations

import secrets
import sys

from sqlalchemy import select

from portal import clock, create_app
from portal.extensions import db
from portal.models import Customer
from portal.services.sessions import open_session
from portal.unit_of_work import unit


def main(user_agent: str) -> None:
    app = create_app()
    with app.app_context(), unit():
        customer = db.session.scalars(select(Customer).order_by(Customer.id)).first()
        if customer is None:
            sys.exit("dast: the demo database has no customer to sign in")
        token = open_session(customer, verified_at=clock.now(), user_agent=user_agent)
    # The signed cookie the portal sets after a code is accepted, with the CSRF secret that a
    # first page would add: wapiti sends this cookie unchanged, so the tokens in the forms it
    # reads stay valid and its attacks reach the views instead of stopping at the CSRF check.
    state = {"sid": token, "csrf_token": secrets.token_hex(20)}
    value = app.session_interface.get_signing_serializer(app).dumps(state)
    print(f"{app.config['SESSION_COOKIE_NAME']}={value}")


if __name__ == "__main__":
    main(sys.argv[1])
