"""A real SMTP server for the tests (aiosmtpd on a free loopback port) and what it received."""

import queue
import re
from email import message_from_bytes
from email.message import Message
from email.policy import default

from aiosmtpd.controller import Controller

from tests.helpers import free_port

RESET_LINK = re.compile(r"https?://\S+/password/reset\?token=(fe_pr_[A-Za-z0-9_-]+)")


class Inbox:
    """aiosmtpd handler that keeps every mail it is handed."""

    def __init__(self):
        self.mails: queue.Queue[Message] = queue.Queue()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        """Keep the mail; answer 250 as a real server does."""
        self.mails.put(message_from_bytes(envelope.content, policy=default))
        return "250 Message accepted for delivery"

    def next(self, timeout: float = 10) -> Message:
        """The next mail, waiting for the background sender."""
        return self.mails.get(timeout=timeout)

    def empty(self, wait: float = 0.5) -> bool:
        """True if no mail arrives within ``wait`` seconds."""
        try:
            self.mails.put(self.mails.get(timeout=wait))
        except queue.Empty:
            return True
        return False


class SmtpServer:
    """A running aiosmtpd Controller with its inbox and URL."""

    def __init__(self):
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.url = f"smtp://127.0.0.1:{self.port}"

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


def reset_token(mail: Message) -> str:
    """The raw token in a reset mail's link."""
    match = RESET_LINK.search(mail.get_content())
    assert match, mail.get_content()
    return match.group(1)
