"""Forms of the account pages: password change and reset, two-step codes, passkeys."""

from flask_wtf import FlaskForm
from wtforms import BooleanField
from wtforms import EmailField
from wtforms import HiddenField
from wtforms import PasswordField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import EqualTo
from wtforms.validators import Length

from idp.signin.passwords import MAX_LENGTH


def current_password() -> PasswordField:
    """The current password, asked before a change to the account."""
    return PasswordField("Current password", validators=[
        DataRequired("Enter your current password."), Length(max=MAX_LENGTH)])


def new_password() -> PasswordField:
    """The new password field of the change and reset forms."""
    return PasswordField("New password", validators=[
        DataRequired("Choose a new password."), Length(max=MAX_LENGTH)])


def confirm_password() -> PasswordField:
    """The new password typed again."""
    return PasswordField("Confirm new password", validators=[
        EqualTo("new", "The two new passwords differ.")])


class PasswordChangeForm(FlaskForm):
    """The current password, then the new one twice."""

    current = current_password()
    new = new_password()
    confirm = confirm_password()


class ForgotForm(FlaskForm):
    """The email a reset link goes to."""

    email = EmailField("Email", validators=[DataRequired("Enter your email."), Length(max=320)])


class ResetForm(FlaskForm):
    """The new password twice; the token travels in its own cookie, never in the form."""

    new = new_password()
    confirm = confirm_password()


class CodeForm(FlaskForm):
    """A six-digit authenticator code, or a recovery code at sign-in."""

    code = StringField("Code", filters=[lambda v: v.strip() if isinstance(v, str) else v],
                       validators=[DataRequired("Enter a code."), Length(max=40)])


class PasswordConfirmForm(FlaskForm):
    """The current password, asked again before a change to how the account is protected."""

    password = current_password()


class PasskeyForm(FlaskForm):
    """A new passkey: its name and the browser's answer (JSON) to the registration ceremony."""

    name = StringField("Passkey name", validators=[Length(max=100)])
    credential = HiddenField()


class RequireTwoStepForm(FlaskForm):
    """An owner's choice: members need two-step sign-in to connect apps."""

    require = BooleanField("Require two-step sign-in for every member")
