"""Account mail through SMTP (``IDP_SMTP_URL``), or the log in development without one.

``smtp://[user:password@]host[:port]`` speaks plain SMTP and upgrades with STARTTLS when the
server offers it; ``smtps://`` speaks TLS from the start (port 465 by default). Mail is sent
from a background thread, so an answer takes as long whether or not a mail went out: the
forgot-password page must not tell known addresses from unknown ones by its timing.
"""

import logging
import secrets
import smtplib
import ssl
import threading
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from urllib.parse import unquote
from urllib.parse import urlsplit

from flask import current_app

log = logging.getLogger(__name__)

#: Seconds an SMTP conversation may stall before the mail is given up.
SMTP_TIMEOUT = 20


def message(config: dict, to: str, subject: str, body: str) -> EmailMessage:
    """A plain-text mail from ``IDP_MAIL_FROM``."""
    mail = EmailMessage()
    mail["From"] = config["IDP_MAIL_FROM"]
    mail["To"] = to
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain="flowestate.idp")
    mail.set_content(body)
    return mail


def deliver(url: str, mail: EmailMessage) -> None:
    """Hand one mail to the SMTP server named by ``url``."""
    parts = urlsplit(url)
    context = ssl.create_default_context()
    if parts.scheme == "smtps":
        server = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=SMTP_TIMEOUT,
                                  context=context)
    elif parts.scheme == "smtp":
        server = smtplib.SMTP(parts.hostname, parts.port or 25, timeout=SMTP_TIMEOUT)
    else:
        raise ValueError(f"IDP_SMTP_URL must start with smtp:// or smtps://, got {parts.scheme!r}")
    with server:
        if parts.scheme == "smtp" and server.has_extn("starttls"):
            server.starttls(context=context)
        if parts.username:
            server.login(unquote(parts.username), unquote(parts.password or ""))
        server.send_message(mail)


def _deliver_logged(url: str, mail: EmailMessage) -> None:
    """Deliver, logging a failure without the mail's content (it may hold a reset link)."""
    try:
        deliver(url, mail)
    except (OSError, smtplib.SMTPException, ValueError) as error:
        log.error("mail to the SMTP server failed: %s", type(error).__name__)


def _write_development_mail(mail: EmailMessage) -> None:
    """The offline demo: log the mail and keep it whole in the instance folder.

    The log handler redacts anything shaped like ``token=…`` (idp/infra/logs.py), so the full
    link is read from ``instance/mail/``. Never in production, where a file or log line
    would hand a reset link to whoever reads it.
    """
    folder = Path(current_app.instance_path) / "mail"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{int(time.time() * 1000)}-{secrets.token_hex(4)}.txt"
    text = f"To: {mail['To']}\nSubject: {mail['Subject']}\n\n{mail.get_content()}"
    path.write_text(text, encoding="utf-8")
    log.info("development mail (IDP_SMTP_URL is not set), kept in %s:\n%s", path, text)


def send(to: str, subject: str, body: str) -> None:
    """Send a mail in the background; without ``IDP_SMTP_URL`` log it (development only)."""
    config = current_app.config
    mail = message(config, to, subject, body)
    url = config["IDP_SMTP_URL"]
    if not url:
        if config["IDP_DEVELOPMENT"]:
            _write_development_mail(mail)
        else:
            log.error("IDP_SMTP_URL is not set: the mail %r was not sent", subject)
        return
    threading.Thread(target=_deliver_logged, args=(url, mail), daemon=True).start()
