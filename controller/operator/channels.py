"""Delivery channels for notices: e-mail over SMTP and a JSON webhook (stdlib only: smtplib,
urllib). Each ``send`` blocks for at most its timeout and raises on failure; the
``Notifier``'s delivery thread calls them, never the scan loop.

Not here: what to send (``notify``) or the configuration (``controller.recipe.notify_config``).
"""

from __future__ import annotations

import json
import os
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Final

from controller.operator.notify import Channel, Notice
from controller.recipe.notify_config import NotifyConfig, SmtpConfig, WebhookConfig

__all__ = ["SmtpChannel", "WebhookChannel", "channels_for"]

_USER_AGENT: Final = "furnace-notify/1"


class SmtpChannel:
    """One mail per notice to every address in ``to``."""

    name = "smtp"

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def send(self, notice: Notice) -> None:
        c = self.config
        msg = EmailMessage()
        msg["Subject"] = notice.subject
        msg["From"] = c.sender
        msg["To"] = ", ".join(c.to)
        msg["X-Furnace-Kind"] = notice.kind
        msg["X-Furnace-Batch"] = str(notice.fields.get("batch_id", ""))
        msg["X-Furnace-Process-Time"] = str(notice.fields.get("t_s", ""))
        msg.set_content(notice.body)
        with smtplib.SMTP(c.host, c.port, timeout=c.timeout_s) as smtp:
            if c.starttls:
                smtp.starttls()
            if c.username:
                password = os.environ.get(c.password_env or "")
                if password is None:
                    raise ValueError(f"the SMTP password variable {c.password_env} is not set")
                smtp.login(c.username, password)
            smtp.send_message(msg)


class WebhookChannel:
    """A JSON POST: ``text`` (subject and body, what Slack/Teams/ntfy-style receivers
    show) and the notice's fields."""

    name = "webhook"

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config

    def send(self, notice: Notice) -> None:
        body = json.dumps({"text": f"{notice.subject}\n{notice.body}", "kind": notice.kind,
                           "subject": notice.subject, **notice.fields}, default=str)
        request = urllib.request.Request(
            self.config.url, data=body.encode("utf-8"), method="POST",
            headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as reply:
                status = reply.status
        except urllib.error.HTTPError as exc:
            raise OSError(f"HTTP {exc.code} from the webhook") from None
        if not 200 <= status < 300:
            raise OSError(f"HTTP {status} from the webhook")


def channels_for(config: NotifyConfig) -> list[Channel]:
    """The channels ``config`` names, e-mail first."""
    out: list[Channel] = []
    if config.smtp is not None:
        out.append(SmtpChannel(config.smtp))
    if config.webhook is not None:
        out.append(WebhookChannel(config.webhook))
    return out
