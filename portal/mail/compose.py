"""Compose messages from templates in the recipient's language."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, render_template
from flask_babel import force_locale
from flask_babel import gettext as _

from portal.models import DATA_CLASSES, Incident


@dataclass(frozen=True)
class Composed:
    subject: str
    text: str
    html: str


def _first_steps(keys: set[str]) -> list[str]:
    """A few concrete first steps for the notice; the full plan lives in the portal."""
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
    return steps


def compose_notice(
    *,
    locale: str,
    incident: Incident,
    exposures: list[tuple[str, str | None]],
    link: str,
    reference_code: str,
) -> Composed:
    """The California-model 'Notice of Data Breach' for one customer and one incident.

    The greeting names nobody: the name may itself be an exposed value, and no message may
    repeat one (a notice can land in a mailbox someone else reads).
    """
    language = locale.split("-")[0]
    with force_locale(language if language in current_app.config["LANGUAGES"] else "en"):
        ordered = sorted(exposures, key=lambda e: (-DATA_CLASSES[e[0]].sensitivity, e[0]))
        context = {
            "incident": incident,
            "organisation": current_app.config["ORGANISATION_NAME"],
            "portal_address": current_app.config["BASE_URL"],
            "involved": [DATA_CLASSES[key].describe(fragment) for key, fragment in ordered],
            "steps": _first_steps({key for key, _fragment in exposures}),
            "link": link,
            "reference_code": reference_code,
        }
        subject = _(
            "Notice of Data Breach from %(organisation)s", organisation=context["organisation"]
        )
        return Composed(
            subject=subject,
            text=render_template("emails/notice.txt", **context),
            html=render_template("emails/notice.html", **context),
        )
