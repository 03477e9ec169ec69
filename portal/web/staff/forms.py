"""Staff forms: each lists exactly the fields it accepts."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    EmailField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

from portal.services.cases import CASE_STATUSES_LABELS


class LoginForm(FlaskForm):
    email = EmailField(
        _l("Email"),
        validators=[DataRequired(), Length(max=254)],
        render_kw={"autocomplete": "username"},
    )
    password = PasswordField(
        _l("Password"), validators=[DataRequired()], render_kw={"autocomplete": "current-password"}
    )


class CodeForm(FlaskForm):
    code = StringField(
        _l("Code from your authenticator app, or a recovery code"),
        validators=[DataRequired(), Length(max=40)],
        render_kw={"autocomplete": "one-time-code", "autocapitalize": "off", "spellcheck": "false"},
    )


class SetupForm(FlaskForm):
    password = PasswordField(
        _l("New password"), validators=[DataRequired()], render_kw={"autocomplete": "new-password"}
    )
    confirm = PasswordField(
        _l("The same password again"),
        validators=[DataRequired()],
        render_kw={"autocomplete": "new-password"},
    )


class ReauthForm(FlaskForm):
    password = PasswordField(
        _l("Password"), validators=[DataRequired()], render_kw={"autocomplete": "current-password"}
    )
    code = StringField(
        _l("Code from your authenticator app"),
        validators=[DataRequired(), Length(max=20)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )


class ActionForm(FlaskForm):
    """A button: only the CSRF token."""


class MessageForm(FlaskForm):
    body = TextAreaField(_l("Message"), validators=[DataRequired(), Length(max=5000)])


class StatusForm(FlaskForm):
    status = SelectField(
        _l("Status"),
        validators=[DataRequired()],
        choices=[SelectChoice(value, label) for value, label in CASE_STATUSES_LABELS],
    )


class ToolForm(FlaskForm):
    reason = StringField(
        _l("Reason (recorded)"), validators=[DataRequired(), Length(min=5, max=200)]
    )
    email = EmailField(_l("Corrected email"), validators=[Optional(), Length(max=254)])
    phone = StringField(_l("Corrected phone (E.164)"), validators=[Optional(), Length(max=16)])
