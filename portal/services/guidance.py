"""The first protective steps for a set of exposed data classes (the full plan comes later)."""

from __future__ import annotations

from flask_babel import gettext as _


def first_steps(keys: set[str], limit: int | None = None) -> list[str]:
    """Concrete steps, most urgent first, for what was exposed."""
    steps = []
    if keys & {"password", "security_questions", "username"}:
        steps.append(
            _(
                "Change your password here and on any other site where you used the "
                "same password or security answers."
            )
        )
    if keys & {
        "ssn",
        "tax_id",
        "national_id",
        "date_of_birth",
        "drivers_license",
        "passport_number",
    }:
        steps.append(_("Consider a free credit freeze or fraud alert with the credit bureaus."))
    if keys & {"payment_card", "bank_account"}:
        steps.append(
            _(
                "Watch your statements and tell your bank or card issuer about any "
                "charge you do not recognise."
            )
        )
    if keys & {"medical_records", "health_insurance"}:
        steps.append(
            _(
                "Read the statements from your health insurer and report services you "
                "did not receive."
            )
        )
    steps.append(
        _(
            "Be wary of calls, texts and emails that mention this incident: we will "
            "never ask for your password or full Social Security number."
        )
    )
    return steps[:limit] if limit else steps
