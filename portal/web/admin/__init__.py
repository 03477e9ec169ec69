"""The admin pages: one module per area, all on one blueprint `bp` (`admin.*`)."""

from portal.web.admin import (
    approvals,
    audit,
    campaigns,
    imports,
    incidents,
    jobs,
    letters,
    metrics,
    obligations,
    protection,
    response,
    staff,
    updates,
)
from portal.web.admin.blueprint import bp

# Imported for their routes, which register on `bp` as each module loads.
__all__ = [
    "approvals",
    "audit",
    "bp",
    "campaigns",
    "imports",
    "incidents",
    "jobs",
    "letters",
    "metrics",
    "obligations",
    "protection",
    "response",
    "staff",
    "updates",
]
