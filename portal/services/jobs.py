"""Work the outbox worker does outside any request, by name."""

from __future__ import annotations


def run(name: str, payload: dict) -> None:
    """Run the job called name; an unknown name is a bug and raises."""
    from portal.services import verification

    handlers = {"new_link": verification.send_new_links}
    handlers[name](payload)
