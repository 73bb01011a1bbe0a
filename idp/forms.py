"""Flask-WTF forms: CSRF on every form, labels matching SPEC §6."""

from flask_wtf import FlaskForm
from wtforms import EmailField
from wtforms import HiddenField
from wtforms import PasswordField
from wtforms import SelectField
from wtforms.validators import DataRequired
from wtforms.validators import Length


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
