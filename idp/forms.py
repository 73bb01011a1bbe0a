"""Flask-WTF forms: CSRF on every form, labels matching SPEC §6."""

from flask_wtf import FlaskForm
from wtforms import DateField
from wtforms import EmailField
from wtforms import HiddenField
from wtforms import PasswordField
from wtforms import SelectField
from wtforms import SelectMultipleField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import Optional
from wtforms.validators import ValidationError

from idp.apikeys import MAX_NAME_LENGTH
from idp.core.clock import utcnow


def _strip(value):
    """Surrounding spaces are never part of a name."""
    return value.strip() if isinstance(value, str) else value


class LoginForm(FlaskForm):
    """Sign in with email and password."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    next = HiddenField()


class ConsentForm(FlaskForm):
    """Allow or deny a connector; the organization is chosen when there are several."""

    organization = SelectField("Organization", choices=[], validate_choice=True)


class EmptyForm(FlaskForm):
    """A form that carries only the CSRF token (sign out, disconnect, key actions)."""


class OrganizationSwitchForm(FlaskForm):
    """Choose the organization the settings pages act on; choices are the user's own."""

    organization = SelectField("Organization", choices=[], validate_choice=False)
    next = HiddenField()


class ApiKeyForm(FlaskForm):
    """Create an API key: name, scopes from the catalogue, optional expiry date (SPEC §6)."""

    name = StringField(
        "Name",
        filters=[_strip],
        validators=[
            DataRequired("Give the key a name."),
            Length(max=MAX_NAME_LENGTH,
                   message=f"Use at most {MAX_NAME_LENGTH} characters for the name."),
        ],
    )
    scopes = SelectMultipleField(
        "Scopes", choices=[], validators=[DataRequired("Choose at least one scope.")]
    )
    expires_on = DateField(
        "Expires on", validators=[Optional()], format="%Y-%m-%d",
    )

    def validate_expires_on(self, field):
        """The key stops at 00:00 UTC on this date, so the date must be after today (UTC)."""
        if field.data is not None and field.data <= utcnow().date():
            raise ValidationError("Choose a date after today, or leave it empty.")
