"""Customer forms: each lists exactly the fields it accepts (nothing else is ever bound)."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, ValidationError

from portal.models.case import CaseTopic
from portal.validation import is_email


class ActionForm(FlaskForm):
    """A button that changes something: no fields, only the CSRF token."""


class CodeForm(FlaskForm):
    code = StringField(
        _l("Verification code"),
        validators=[
            DataRequired(_l("Enter the 6 digits from the message we sent you.")),
            Length(max=20),
        ],
        render_kw={
            "autocomplete": "one-time-code",
            "inputmode": "numeric",
            "autocapitalize": "off",
            "spellcheck": "false",
        },
    )


class CurrentAppForm(FlaskForm):
    """Moving to a new authenticator app: a code from the app in use now proves it is theirs."""

    current_code = StringField(
        _l("Code from the authenticator app you use now"),
        validators=[
            DataRequired(_l("Enter the 6 digits the app you use now shows.")),
            Length(max=20),
        ],
        render_kw={
            "autocomplete": "one-time-code",
            "inputmode": "numeric",
            "autocapitalize": "off",
            "spellcheck": "false",
        },
    )


class ReferenceForm(FlaskForm):
    reference = StringField(
        _l("Reference code from your letter"),
        validators=[
            DataRequired(_l("Enter the reference code printed in your letter.")),
            Length(max=40),
        ],
        render_kw={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"},
    )


class GenuineForm(FlaskForm):
    what = StringField(
        _l("The link, reference code, email address or phone number"),
        validators=[
            DataRequired(_l("Paste the link, or type the code, address or number to check.")),
            Length(max=2000),
        ],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )


class NewLinkForm(FlaskForm):
    email = EmailField(
        _l("Your email address"),
        validators=[DataRequired(_l("Enter your email address.")), Length(max=254)],
        render_kw={"autocomplete": "email"},
    )

    def validate_email(self, field):
        if not is_email(field.data.strip()):
            raise ValidationError(_l("Enter an email address like name@example.com."))


class SignInForm(FlaskForm):
    email = EmailField(
        _l("Your email address"),
        validators=[DataRequired(_l("Enter your email address.")), Length(max=254)],
        render_kw={"autocomplete": "email"},
    )
    code = StringField(
        _l("Code from your authenticator app"),
        validators=[DataRequired(_l("Enter the 6 digits your app shows.")), Length(max=20)],
        render_kw={
            "autocomplete": "one-time-code",
            "inputmode": "numeric",
            "autocapitalize": "off",
            "spellcheck": "false",
        },
    )


class PasswordForm(FlaskForm):
    # No maxlength and no stripping: a password is taken exactly as typed or pasted, and a
    # too-long one is refused with a reason rather than silently cut.
    password = PasswordField(
        _l("New password"),
        validators=[DataRequired(_l("Enter a new password."))],
        render_kw={"autocomplete": "new-password", "spellcheck": "false", "autocapitalize": "off"},
    )
    confirm = PasswordField(
        _l("The same password again"),
        validators=[DataRequired(_l("Enter the new password a second time."))],
        render_kw={"autocomplete": "new-password", "spellcheck": "false", "autocapitalize": "off"},
    )


class EnrollForm(FlaskForm):
    consent = BooleanField(
        _l(
            "I agree to the provider's terms and to my name and email being shared with them "
            "for this enrollment."
        ),
        validators=[DataRequired(_l("Please tick the box to agree before enrolling."))],
    )


class CaseForm(FlaskForm):
    topic = SelectField(
        _l("What is it about?"),
        choices=[
            SelectChoice(CaseTopic.CANNOT_FINISH, _l("I can't finish something")),
            SelectChoice(CaseTopic.IDENTITY_THEFT, _l("I think my identity was stolen")),
            SelectChoice(CaseTopic.MY_DATA, _l("A question about my data")),
            SelectChoice(CaseTopic.CALLBACK, _l("Please call me back")),
            SelectChoice(CaseTopic.OTHER, _l("Something else")),
        ],
        validators=[DataRequired()],
    )
    body = TextAreaField(
        _l("Your message"),
        validators=[DataRequired(_l("Please write a message.")), Length(max=5000)],
    )
    callback_phone = StringField(
        _l("For a call back: the number to call, with + and the country code"),
        description=_l("Leave it empty to be called on the number we have for you."),
        validators=[Length(max=32)],
        render_kw={"autocomplete": "tel", "inputmode": "tel"},
    )
    callback_window = StringField(
        _l("For a call back: when may we call? (for example: weekdays 9 to 11 am)"),
        validators=[Length(max=200)],
    )


class ReplyForm(FlaskForm):
    body = TextAreaField(
        _l("Your reply"), validators=[DataRequired(_l("Please write a message.")), Length(max=5000)]
    )


class HelpForm(FlaskForm):
    topic = RadioField(
        _l("How should we help?"),
        choices=[
            SelectChoice(CaseTopic.CANNOT_VERIFY, _l("Write to me")),
            SelectChoice(CaseTopic.CALLBACK, _l("Call me back")),
        ],
        default=CaseTopic.CANNOT_VERIFY,
        validators=[DataRequired()],
    )
    name = StringField(
        _l("Your name"),
        validators=[DataRequired(_l("Please tell us your name.")), Length(max=200)],
        render_kw={"autocomplete": "name"},
    )
    contact = StringField(
        _l("An email address or phone number where we can reach you"),
        validators=[DataRequired(_l("Please tell us how to reach you.")), Length(max=254)],
    )
    reference = StringField(
        _l("Reference code from your letter, if you have one"), validators=[Length(max=40)]
    )
    body = TextAreaField(
        _l("What went wrong?"),
        validators=[DataRequired(_l("Please tell us what went wrong.")), Length(max=5000)],
    )
    callback_phone = StringField(
        _l("For a call back: the number to call, if it is not the one above"),
        validators=[Length(max=32)],
        render_kw={"autocomplete": "tel", "inputmode": "tel"},
    )
    callback_window = StringField(
        _l("For a call back: when may we call? (for example: weekdays 9 to 11 am)"),
        validators=[Length(max=200)],
    )
