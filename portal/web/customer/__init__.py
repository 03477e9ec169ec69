"""The customer's pages: one module per journey, all on one blueprint `bp` (`customer.*`)."""

from portal.web.customer import (
    account,
    cases,
    contact,
    dashboard,
    protection,
    signed_in,
    way_in,
)
from portal.web.customer.blueprint import bp

# Imported for their routes, which register on `bp` as each module loads.
__all__ = [
    "account",
    "bp",
    "cases",
    "contact",
    "dashboard",
    "protection",
    "signed_in",
    "way_in",
]
