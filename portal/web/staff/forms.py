"""Staff forms: each lists exactly the fields it accepts."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

from portal.services.cases import CASE_STATUSES_LABELS, STAFF_TOPICS, TOPIC_LABELS


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


# What a browser sends for one security key answer is a few hundred bytes to a few kilobytes.
KEY_ANSWER_MAX = 16_000


class KeyForm(FlaskForm):
    """A security key's answer (navigator.credentials.get), from static/js/security-key.js."""

    key_answer = HiddenField(validators=[DataRequired(), Length(max=KEY_ANSWER_MAX)])


class ReauthForm(FlaskForm):
    password = PasswordField(
        _l("Password"), validators=[DataRequired()], render_kw={"autocomplete": "current-password"}
    )
    code = StringField(
        _l("Code from your authenticator app"),
        validators=[Optional(), Length(max=20)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )
    # Or a security key's answer instead of the code (filled in by the page's script).
    key_answer = HiddenField(validators=[Optional(), Length(max=KEY_ANSWER_MAX)])

    def validate(self, extra_validators=None) -> bool:
        """A code or a key's answer: one of the two, as the second factor."""
        ok = super().validate(extra_validators)
        if ok and not (self.code.data or "").strip() and not self.key_answer.data:
            self.code.errors.append(_l("Enter the code from your authenticator app."))
            return False
        return ok


class SecurityKeyForm(FlaskForm):
    """Name a new security key; its answer (navigator.credentials.create) comes from the page's
    script."""

    name = StringField(
        _l("A name for this key"),
        validators=[DataRequired(), Length(max=60)],
        render_kw={"autocomplete": "off", "placeholder": _l("for example: blue key")},
    )
    key_answer = HiddenField(validators=[DataRequired(), Length(max=KEY_ANSWER_MAX)])


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
    # As long as the customers' phone fields: a number typed with spaces or brackets must reach
    # the one rule (portal.validation), not fail here with the wrong message.
    phone = StringField(_l("Corrected phone (E.164)"), validators=[Optional(), Length(max=32)])


class SearchForm(FlaskForm):
    """Find a customer: an exact match on one of the things a caller can tell."""

    kind = SelectField(
        _l("Search by"),
        choices=[
            SelectChoice("", _l("Guess from what I type")),
            SelectChoice("email", _l("Email address")),
            SelectChoice("phone", _l("Phone number")),
            SelectChoice("reference", _l("Reference code from the letter")),
            SelectChoice("name", _l("Full name (exactly as on file)")),
        ],
    )
    query = StringField(
        _l("What the customer told you"),
        validators=[DataRequired(), Length(max=254)],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )
    # Set when the search is for linking an unverified request to its customer.
    case = HiddenField(validators=[Optional(), Length(max=32)])


class OpenCaseForm(FlaskForm):
    topic = SelectField(
        _l("What is it about?"),
        validators=[DataRequired()],
        choices=[SelectChoice(topic, TOPIC_LABELS[topic]) for topic in STAFF_TOPICS],
    )
    body = TextAreaField(
        _l("Internal note (the customer does not see it)"),
        validators=[DataRequired(), Length(max=5000)],
    )


class LinkForm(FlaskForm):
    customer = HiddenField(validators=[DataRequired(), Length(max=32)])
    identity_checked = BooleanField(
        _l("I checked who they are (for example, questions only the customer can answer)")
    )
    reason = StringField(
        _l("Reason (recorded)"), validators=[DataRequired(), Length(min=5, max=200)]
    )
