"""Admin forms: each lists exactly the fields it accepts."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from portal.models.incident import INCIDENT_STATUSES


class IncidentForm(FlaskForm):
    title = StringField(_l("Title"), validators=[DataRequired(), Length(max=200)])
    status = SelectField(_l("Status"), choices=[SelectChoice(s, s) for s in INCIDENT_STATUSES])
    occurred_on = DateField(_l("Occurred on"), validators=[Optional()])
    discovered_on = DateField(_l("Discovered on"), validators=[DataRequired()])
    contained_on = DateField(_l("Contained on"), validators=[Optional()])
    what_happened = TextAreaField(_l("What Happened (Markdown)"), validators=[Length(max=20000)])
    what_we_are_doing = TextAreaField(
        _l("What We Are Doing (Markdown)"), validators=[Length(max=20000)]
    )
    more_information = TextAreaField(
        _l("For More Information (Markdown)"), validators=[Length(max=20000)]
    )
    contact_phone = StringField(_l("Contact phone"), validators=[Length(max=40)])
    contact_hours = StringField(_l("Contact hours"), validators=[Length(max=200)])
    contact_email = StringField(_l("Contact email"), validators=[Length(max=254)])


class UpdateForm(FlaskForm):
    title = StringField(_l("Title"), validators=[DataRequired(), Length(max=200)])
    body = TextAreaField(_l("Text (Markdown)"), validators=[DataRequired(), Length(max=20000)])


class NewIncidentForm(FlaskForm):
    slug = StringField(
        _l("Short name (lowercase, dashes), e.g. acme-2026"),
        validators=[DataRequired(), Length(max=64)],
    )
    title = StringField(_l("Title"), validators=[DataRequired(), Length(max=200)])
    discovered_on = DateField(_l("Discovered on"), validators=[DataRequired()])
