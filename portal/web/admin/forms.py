"""Admin forms: each lists exactly the fields it accepts."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from portal.models.incident import HIPAA_ROLES, INCIDENT_STATUSES
from portal.validation import SINGLE_LINE_EXPECTED, is_single_line


class SingleLine:
    """A one-line field: refuse line breaks and control characters with a clear message (a title
    ends up in email subjects, where a CR/LF would break or forge a header)."""

    def __call__(self, form, field) -> None:
        if field.data and not is_single_line(field.data):
            raise ValidationError(SINGLE_LINE_EXPECTED)


class NotBefore:
    """A date that may not come before another field's date (a range's end after its start)."""

    def __init__(self, other: str, message) -> None:
        self.other, self.message = other, message

    def __call__(self, form, field) -> None:
        start = form[self.other].data
        if field.data and start and field.data < start:
            raise ValidationError(self.message)


HIPAA_ROLE_LABELS = {
    "none": _l("Neither (HIPAA does not apply)"),
    "covered_entity": _l("Covered entity (health plan, provider, clearinghouse)"),
    "business_associate": _l("Business associate of a covered entity"),
}


class IncidentForm(FlaskForm):
    title = StringField(_l("Title"), validators=[SingleLine(), DataRequired(), Length(max=200)])
    status = SelectField(_l("Status"), choices=[SelectChoice(s, s) for s in INCIDENT_STATUSES])
    occurred_on = DateField(_l("Occurred on"), validators=[Optional()])
    # The breach's last day when it ran over a range (Cal. Civ. Code 1798.82(d)(2)(C)).
    occurred_to = DateField(
        _l("Occurred until (last day, when it ran over several days)"),
        validators=[
            Optional(),
            NotBefore("occurred_on", _l("The last day cannot be before the first day.")),
        ],
    )
    discovered_on = DateField(_l("Discovered on"), validators=[DataRequired()])
    contained_on = DateField(_l("Contained on"), validators=[Optional()])
    # Starts the SEC's four business days (Form 8-K Item 1.05).
    materiality_on = DateField(
        _l("Determined to be material on (for the SEC)"), validators=[Optional()]
    )
    delayed_by_law_enforcement = BooleanField(
        _l("Notice was delayed because law enforcement asked")
    )
    hipaa_role = SelectField(
        _l("Our role under HIPAA"),
        choices=[SelectChoice(role, HIPAA_ROLE_LABELS[role]) for role in HIPAA_ROLES],
    )
    postal_notice = BooleanField(
        _l("Notice must go by post to anyone who has not agreed to email (HIPAA)")
    )
    what_happened = TextAreaField(_l("What Happened (Markdown)"), validators=[Length(max=20000)])
    what_we_are_doing = TextAreaField(
        _l("What We Are Doing (Markdown)"), validators=[Length(max=20000)]
    )
    more_information = TextAreaField(
        _l("For More Information (Markdown)"), validators=[Length(max=20000)]
    )
    contact_phone = StringField(_l("Contact phone"), validators=[SingleLine(), Length(max=40)])
    contact_hours = StringField(_l("Contact hours"), validators=[SingleLine(), Length(max=200)])
    contact_email = StringField(_l("Contact email"), validators=[SingleLine(), Length(max=254)])
    # The same text in Spanish (Incident.translated_fields): left empty, Spanish readers see
    # the English, marked as English.
    title_es = StringField(_l("Title in Spanish"), validators=[SingleLine(), Length(max=200)])
    what_happened_es = TextAreaField(
        _l("What Happened in Spanish (Markdown)"), validators=[Length(max=20000)]
    )
    what_we_are_doing_es = TextAreaField(
        _l("What We Are Doing in Spanish (Markdown)"), validators=[Length(max=20000)]
    )
    more_information_es = TextAreaField(
        _l("For More Information in Spanish (Markdown)"), validators=[Length(max=20000)]
    )
    contact_hours_es = StringField(
        _l("Contact hours in Spanish"), validators=[SingleLine(), Length(max=200)]
    )


class UpdateForm(FlaskForm):
    title = StringField(_l("Title"), validators=[SingleLine(), DataRequired(), Length(max=200)])
    body = TextAreaField(_l("Text (Markdown)"), validators=[DataRequired(), Length(max=20000)])
    title_es = StringField(_l("Title in Spanish"), validators=[SingleLine(), Length(max=200)])
    body_es = TextAreaField(_l("Text in Spanish (Markdown)"), validators=[Length(max=20000)])


def translations_from(form: FlaskForm, names: tuple[str, ...], language: str = "es") -> dict:
    """{language: {name: text}} from the form's `<name>_<language>` fields."""
    return {language: {name: form[f"{name}_{language}"].data or "" for name in names}}


def translation_data(obj, language: str = "es") -> dict:
    """The form data of obj's texts in `language`, to show them for editing."""
    texts = (obj.translations or {}).get(language) or {}
    return {f"{name}_{language}": texts.get(name, "") for name in obj.translated_fields}


class NewIncidentForm(FlaskForm):
    slug = StringField(
        _l("Short name (lowercase, dashes), e.g. acme-2026"),
        validators=[DataRequired(), Length(max=64)],
    )
    title = StringField(_l("Title"), validators=[SingleLine(), DataRequired(), Length(max=200)])
    discovered_on = DateField(_l("Discovered on"), validators=[DataRequired()])


class EndEverySessionForm(FlaskForm):
    """The emergency stop: the admin types a phrase, so no stray click ends everyone's session."""

    phrase = StringField(
        _l("Type END EVERY SESSION to confirm"),
        validators=[DataRequired(), Length(max=40)],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )


class ProtectionOfferForm(FlaskForm):
    """The incident's identity-protection offer; the service checks the values it cannot."""

    provider_name = StringField(
        _l("Provider"), validators=[SingleLine(), DataRequired(), Length(max=120)]
    )
    product_name = StringField(
        _l("Product"), validators=[SingleLine(), DataRequired(), Length(max=120)]
    )
    includes = TextAreaField(_l("What it includes, one item per line"), [Length(max=5000)])
    term_months = IntegerField(_l("Term in months"), validators=[DataRequired()])
    enroll_by = DateField(_l("Enroll by"), validators=[DataRequired()])
    enroll_url = StringField(
        _l("Enrollment address (https)"),
        validators=[SingleLine(), DataRequired(), Length(max=300)],
    )
    enroll_phone = StringField(_l("Enrollment phone"), validators=[SingleLine(), Length(max=40)])
    terms_url = StringField(
        _l("Provider's terms (https)"), validators=[SingleLine(), Length(max=300)]
    )
    eligible_classes = StringField(
        _l("Data classes that qualify, comma list (empty: everyone affected)"),
        validators=[SingleLine(), Length(max=500)],
    )
    regions = StringField(
        _l(
            "Where the offer is open: countries (US) or states and provinces (US-CA), "
            "comma list (empty: everywhere)"
        ),
        validators=[SingleLine(), Length(max=500)],
    )
    minors_product = StringField(
        _l("Separate product for minors, if any"), validators=[SingleLine(), Length(max=120)]
    )
    includes_es = TextAreaField(
        _l("What it includes, in Spanish, one item per line"), [Length(max=5000)]
    )


class MailedForm(FlaskForm):
    """The mail house's manifest of the letters it mailed, and the day it mailed them."""

    manifest = FileField(
        _l("The mail house's manifest (CSV)"),
        validators=[FileRequired(_l("Choose the manifest file to upload."))],
    )
    mailed_on = DateField(
        _l("Mailed on"), validators=[DataRequired(_l("Give the day the letters were mailed."))]
    )


TASK_STATUS_LABELS = {
    "open": _l("Open"),
    "done": _l("Done"),
    "not_needed": _l("Not needed"),
}
ROLE_LABELS = {
    "agent": _l("Support agent"),
    "admin": _l("Admin"),
    "legal": _l("Legal"),
    "communications": _l("Communications"),
    "security": _l("Security"),
    "support_lead": _l("Support lead"),
}


class TaskForm(FlaskForm):
    status = SelectField(
        _l("Status"), choices=[SelectChoice(k, v) for k, v in TASK_STATUS_LABELS.items()]
    )
    notes = TextAreaField(_l("Notes"), validators=[Optional(), Length(max=4000)])


class ScopeForm(FlaskForm):
    affected_systems = TextAreaField(
        _l("Systems involved"), validators=[Optional(), Length(max=2000)]
    )
    affected_data_sets = TextAreaField(
        _l("Data sets involved"), validators=[Optional(), Length(max=2000)]
    )
    contained_on = DateField(_l("Contained on"), validators=[Optional()])


class FindingForm(FlaskForm):
    text = TextAreaField(_l("Finding"), validators=[DataRequired(), Length(max=2000)])


class RemediationForm(FlaskForm):
    title = StringField(
        _l("Action (the team's words)"),
        validators=[SingleLine(), DataRequired(), Length(max=300)],
    )
    owner = SelectField(_l("Owner"), choices=[SelectChoice(k, v) for k, v in ROLE_LABELS.items()])
    due_on = DateField(_l("Due on"), validators=[Optional()])
    done_on = DateField(_l("Done on"), validators=[Optional()])
    public = BooleanField(_l("Tell customers (after legal approves the text)"))
    public_text = TextAreaField(
        _l("What customers read, in English"), validators=[Optional(), Length(max=2000)]
    )
    public_text_es = TextAreaField(
        _l("What customers read, in Spanish"), validators=[Optional(), Length(max=2000)]
    )
