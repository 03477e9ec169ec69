"""Compose messages from templates, in the language in force (outbox.queue_message sets the
recipient's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import urlsplit

from flask import current_app, render_template
from flask_babel import get_locale
from flask_babel import gettext as _
from markupsafe import escape

from portal import clock
from portal.i18n import breach_dates, datetime_with_zone, localized
from portal.models import DATA_CLASSES, Incident


@dataclass(frozen=True)
class Composed:
    subject: str
    text: str
    html: str


def compose_notice(
    *,
    incident: Incident,
    exposures: list[tuple[str, str | None]],
    link: str,
    reference_code: str,
    steps,
    offer=None,
    notice_date: date | None = None,
    statements=(),
    omit: frozenset[str] = frozenset(),
) -> Composed:
    """The California-model 'Notice of Data Breach' for one customer and one incident.

    Cal. Civ. Code 1798.82(d) sets its content: the title and the five headings in order, the
    date of the notice, the date or range of the breach, whether law enforcement delayed it, the
    person's own data types, the credit bureaus' contacts when an SSN or a licence or ID number
    was involved, and all a reader needs to take up the protection offer. `offer` is the
    incident's offer when this reader may take it up; `statements` are what the law of the
    reader's place of residence adds (portal.services.statements, filled), and `omit` the
    sections it leaves out.

    The greeting names nobody: the name may itself be an exposed value, and no message may
    repeat one (a notice can land in a mailbox someone else reads).
    """
    ordered = sorted(exposures, key=lambda e: (-DATA_CLASSES[e[0]].sensitivity, e[0]))
    context = {
        "incident": incident,
        "organisation": current_app.config["ORGANISATION_NAME"],
        "portal_address": current_app.config["BASE_URL"],
        "involved": [DATA_CLASSES[key].describe(fragment) for key, fragment in ordered],
        "steps": steps(str(get_locale())),  # the first steps of their plan, in their language
        "link": link,
        "reference_code": reference_code,
        "notice_date": notice_date or clock.now().date(),
        "occurred": breach_dates(incident),
        "offer": offer,
        "statements": statements,
        "omit": omit,
    }
    subject = _("Notice of Data Breach from %(organisation)s", organisation=context["organisation"])
    return Composed(
        subject=subject,
        text=render_template("emails/notice.txt", **context),
        html=render_template("emails/notice.html", **context),
    )


def compose_code(*, code: str, ttl_minutes: int, sms: bool = False) -> Composed:
    """A one-time code message: the code alone on its line, and nothing else of the person."""
    config = current_app.config
    organisation = config["ORGANISATION_NAME"]
    host = urlsplit(config["BASE_URL"]).hostname
    if sms:
        text = _(
            "%(organisation)s: your verification code is %(code)s. It expires in "
            "%(minutes)d minutes. We will never call you to ask for it.",
            organisation=organisation,
            code=code,
            minutes=ttl_minutes,
        )
        # The origin-bound line lets phones offer the code for our site only (and autofill it).
        return Composed("", f"{text}\n\n@{host} #{code}", "")
    context = {
        "code": code,
        "minutes": ttl_minutes,
        "organisation": organisation,
        "portal_address": config["BASE_URL"],
    }
    return Composed(
        subject=_("Your verification code for %(organisation)s", organisation=organisation),
        text=render_template("emails/code.txt", **context),
        html=render_template("emails/code.html", **context),
    )


def compose_new_link(*, incident: Incident, link: str) -> Composed:
    """A fresh access link, asked for on the portal; earlier links no longer work."""
    context = {
        "incident": incident,
        "link": link,
        "organisation": current_app.config["ORGANISATION_NAME"],
        "portal_address": current_app.config["BASE_URL"],
    }
    return Composed(
        subject=_("Your new link from %(organisation)s", organisation=context["organisation"]),
        text=render_template("emails/new_link.txt", **context),
        html=render_template("emails/new_link.html", **context),
    )


def compose_security_notice(*, what: str, subject: str | None = None) -> Composed:
    """Tell the customer of a change to their account, with a way to say it was not them."""
    context = {
        "what": what,
        "organisation": current_app.config["ORGANISATION_NAME"],
        "portal_address": current_app.config["BASE_URL"],
        "support_phone": current_app.config["SUPPORT_PHONE"],
        "help_address": current_app.config["BASE_URL"].rstrip("/") + "/help",
    }
    return Composed(
        subject=subject
        or _(
            "A change to your account with %(organisation)s", organisation=context["organisation"]
        ),
        text=render_template("emails/security_notice.txt", **context),
        html=render_template("emails/security_notice.html", **context),
    )


def compose_contact_confirm(*, link: str, code: str, hours: int, sms: bool = False) -> Composed:
    """To a new address staff were asked to use: the code, and the page where it is entered."""
    config = current_app.config
    organisation = config["ORGANISATION_NAME"]
    if sms:
        text = _(
            "%(organisation)s: to use this number for your account, enter code %(code)s at "
            "%(link)s within %(hours)d hours. Do not read it to anyone, not even to us.",
            organisation=organisation,
            code=code,
            link=link,
            hours=hours,
        )
        return Composed("", text, "")
    context = {
        "code": code,
        "link": link,
        "hours": hours,
        "organisation": organisation,
        "portal_address": config["BASE_URL"],
    }
    return Composed(
        subject=_(
            "Confirm your new contact details for %(organisation)s", organisation=organisation
        ),
        text=render_template("emails/contact_confirm.txt", **context),
        html=render_template("emails/contact_confirm.html", **context),
    )


def compose_contact_change_notice(*, what: str, link: str, hours: int) -> Composed:
    """To the address on file: staff were asked to change a contact; the way to stop it."""
    context = {
        "what": what,
        "link": link,
        "hours": hours,
        "organisation": current_app.config["ORGANISATION_NAME"],
        "portal_address": current_app.config["BASE_URL"],
        "support_phone": current_app.config["SUPPORT_PHONE"],
    }
    return Composed(
        subject=_(
            "A change to your account with %(organisation)s", organisation=context["organisation"]
        ),
        text=render_template("emails/contact_change.txt", **context),
        html=render_template("emails/contact_change.html", **context),
    )


def compose_new_browser(*, when: datetime, browser: str | None, system: str | None) -> Composed:
    """Tell the customer their account was opened from a browser new to it: when, and roughly
    on what (product names only, no address), with the same "this was not me" way out."""
    if browser and system:
        device = _("%(browser)s on %(system)s", browser=browser, system=system)
    elif browser:
        device = browser
    elif system:
        device = _("a browser on %(system)s", system=system)
    else:
        device = _("a browser we could not recognise")
    what = _(
        "Someone signed in to your account on %(when)s, using %(device)s, in a browser not "
        "used for your account before.",
        when=datetime_with_zone(when),
        device=device,
    )
    subject = _(
        "A new sign-in to your account with %(organisation)s",
        organisation=current_app.config["ORGANISATION_NAME"],
    )
    return compose_security_notice(what=what, subject=subject)


def compose_protection_code(*, offer, code: str, from_waiting: bool) -> Composed:
    """The customer's activation code and how to use it (the code is what they need)."""
    context = {
        "offer": offer,
        "code": code,
        "from_waiting": from_waiting,
        "organisation": current_app.config["ORGANISATION_NAME"],
        "portal_address": current_app.config["BASE_URL"],
    }
    return Composed(
        subject=_("Your %(product)s activation code", product=offer.product_name),
        text=render_template("emails/protection_code.txt", **context),
        html=render_template("emails/protection_code.html", **context),
    )


def compose_alert(*, subject: str, text: str) -> Composed:
    """An operational alert for the response team (in English: an operator reads it)."""
    return Composed(
        subject=f"[portal alert] {subject}", text=text + "\n", html=f"<p>{escape(text)}</p>"
    )


def compose_staff_setup(*, link: str, minutes: int) -> Composed:
    """A staff member's new set-up link after an MFA reset: sent to them only, never shown to the
    admin who reset it (one admin alone must not be able to become another)."""
    organisation = current_app.config["ORGANISATION_NAME"]
    intro = _(
        "An admin reset the authenticator of your %(organisation)s staff account, and every "
        "session of yours has ended. Set up your password and authenticator again with this "
        "link; it works once, within %(minutes)d minutes:",
        organisation=organisation,
        minutes=minutes,
    )
    warning = _(
        "If you did not expect this, do not open the link: tell your security team at once."
    )
    return Composed(
        subject=_("Set up your %(organisation)s staff account again", organisation=organisation),
        text=f"{intro}\n\n{link}\n\n{warning}\n",
        html=f'<p>{escape(intro)}</p><p><a href="{escape(link)}">{escape(link)}</a></p>'
        f"<p>{escape(warning)}</p>",
    )


def compose_case_reply() -> Composed:
    """'You have a new reply': no content, so nothing of the case sits in a mailbox."""
    context = {
        "organisation": current_app.config["ORGANISATION_NAME"],
        "portal_address": current_app.config["BASE_URL"],
    }
    return Composed(
        subject=_(
            "You have a new reply from %(organisation)s", organisation=context["organisation"]
        ),
        text=render_template("emails/case_reply.txt", **context),
        html=render_template("emails/case_reply.html", **context),
    )


def compose_help_reply(*, link: str, days: int, sms: bool = False) -> Composed:
    """We answered a request from someone not signed in: a link to that one conversation.

    The reply itself stays behind the link: the message says only that there is one.
    """
    organisation = current_app.config["ORGANISATION_NAME"]
    if sms:
        text = _(
            "%(organisation)s: we answered your request for help. Read the answer here: %(link)s",
            organisation=organisation,
            link=link,
        )
        return Composed("", text, "")
    context = {
        "organisation": organisation,
        "link": link,
        "days": days,
        "portal_address": current_app.config["BASE_URL"],
    }
    return Composed(
        subject=_("An answer to your request from %(organisation)s", organisation=organisation),
        text=render_template("emails/help_reply.txt", **context),
        html=render_template("emails/help_reply.html", **context),
    )


def compose_assisted_link(*, link: str) -> Composed:
    """The one-time sign-in link an agent sends after checking who someone is by phone."""
    context = {
        "organisation": current_app.config["ORGANISATION_NAME"],
        "link": link,
        "portal_address": current_app.config["BASE_URL"],
    }
    return Composed(
        subject=_("Your sign-in link from %(organisation)s", organisation=context["organisation"]),
        text=render_template("emails/assisted_link.txt", **context),
        html=render_template("emails/assisted_link.html", **context),
    )


def compose_update_notice(*, incident: Incident, update) -> Composed:
    """There is news about the incident: the title, and where to read it."""
    context = {
        "incident": incident,
        "update": update,
        "organisation": current_app.config["ORGANISATION_NAME"],
        "portal_address": current_app.config["BASE_URL"],
    }
    return Composed(
        subject=_("An update about %(title)s", title=localized(incident, "title").text),
        text=render_template("emails/update.txt", **context),
        html=render_template("emails/update.html", **context),
    )
