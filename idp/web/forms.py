"""Flask-WTF forms: CSRF on every form, labels matching SPEC §6."""

from flask_wtf import FlaskForm
from wtforms import DateField
from wtforms import EmailField
from wtforms import HiddenField
from wtforms import PasswordField
from wtforms import RadioField
from wtforms import SelectField
from wtforms import SelectMultipleField
from wtforms import StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import Optional
from wtforms.validators import ValidationError

from idp.core.clock import utcnow
from idp.store.api_keys import EXPIRY_PRESETS
from idp.store.api_keys import MAX_NAME_LENGTH
from idp.store.api_keys import ROLL_OVERLAPS


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
    #: A preset number of days, a date of one's own ("custom"), or "never".
    expires = RadioField(
        "Expires",
        choices=[SelectChoice(str(days), f"In {days} days") for days in EXPIRY_PRESETS]
        + [SelectChoice("custom", "On a date"), SelectChoice("never", "Never")],
        default="90",
    )
    expires_on = DateField(
        "Expires on", validators=[Optional()], format="%Y-%m-%d",
    )

    def validate_expires(self, field):
        """"On a date" needs the date (checked here: an empty date field skips its own checks)."""
        if field.data == "custom" and not (self.expires_on.raw_data or [""])[0]:
            raise ValidationError("Choose the date the key stops working.")

    def validate_expires_on(self, field):
        """The key stops at 00:00 UTC on this date, so the date must be after today (UTC)."""
        if field.data is not None and field.data <= utcnow().date():
            raise ValidationError("Choose a date after today, or leave it empty.")
        if self.expires.data != "custom" and field.data is not None:
            raise ValidationError("Choose “On a date” to use this date, or clear it.")


class ApiKeyEditForm(FlaskForm):
    """Rename and re-scope a key."""

    name = ApiKeyForm.name
    scopes = ApiKeyForm.scopes


class RollForm(FlaskForm):
    """Roll a key: how long the old secret keeps working."""

    overlap = RadioField(
        "Keep the old key working for",
        choices=[SelectChoice(str(seconds), words) for seconds, words in ROLL_OVERLAPS.items()],
        default="3600",
        validators=[DataRequired("Choose how long the old key keeps working.")],
    )
