"""The ``[notify]`` section of a station file (or of the user's notify.toml): who is told
what, and how. The station's section wins; without one, the user's file is used.

Not here: deciding when to tell (``controller.operator.notify``) or delivering
(``controller.operator.channels``). Passwords are never in a file: ``password_env`` names
the environment variable that holds one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from controller.recipe.validation import load_model, read_text
from controller.text import printable_line

__all__ = ["NOTICE_KINDS", "NOTIFY_FILE_ENV", "NotifyConfig", "SmtpConfig", "WebhookConfig",
           "user_notify_path", "resolve_notify"]

#: Names the user's notify file, instead of ``notify.toml`` in the user config folder.
NOTIFY_FILE_ENV: Final = "FURNACE_NOTIFY_FILE"

#: What can be told: an operator step coming up (``operator_due``, with the lead time) or
#: waiting now, a hold (and its timeout coming), an alarm, a fault, the batch's end.
NOTICE_KINDS: Final = ("operator_due", "hold", "alarm", "fault", "ended")
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
Line = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(printable_line)]


def _address(value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


def _url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


Address = Annotated[str, AfterValidator(_address)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmtpConfig(_Model):
    """E-mail through an SMTP relay (the lab's, or the institute's)."""

    host: Line
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    sender: Address
    to: Annotated[tuple[Address, ...], Field(min_length=1, max_length=50)]
    starttls: bool = False
    username: Annotated[str, Field(max_length=200)] = ""
    password_env: Annotated[str, Field(pattern=_ENV.pattern)] | None = None
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 10.0

    @model_validator(mode="after")
    def _login_needs_password(self) -> SmtpConfig:
        if self.username and self.password_env is None:
            raise ValueError("username needs password_env: the name of the environment "
                             "variable holding the password (never the password itself)")
        return self


class WebhookConfig(_Model):
    """A JSON POST (Slack, Teams, ntfy-style receivers take it): ``{"text": ..., ...}``."""

    url: Annotated[str, Field(max_length=2000), AfterValidator(_url)]
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0


class NotifyConfig(_Model):
    """Who is told what: the notice kinds, the lead time before an operator step, the
    warning before a hold times out, the channels, and how often a failed delivery is
    tried again (a failure is logged, never fatal)."""

    events: Annotated[tuple[Literal["operator_due", "hold", "alarm", "fault", "ended"], ...],
                      Field(min_length=1)] = NOTICE_KINDS
    operator_lead_min: Annotated[float, Field(ge=0, le=24 * 60)] = 30.0
    hold_warn_min: Annotated[float, Field(ge=0, le=24 * 60)] = 10.0
    retries: Annotated[int, Field(ge=0, le=10)] = 3
    retry_wait_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    smtp: SmtpConfig | None = None
    webhook: WebhookConfig | None = None

    @model_validator(mode="after")
    def _a_channel(self) -> NotifyConfig:
        if self.smtp is None and self.webhook is None:
            raise ValueError("[notify] needs a channel: [notify.smtp] or [notify.webhook]")
        return self


def user_notify_path() -> Path:
    """``$FURNACE_NOTIFY_FILE``, else ``notify.toml`` in the user's config folder
    (``~/.config/furnace`` on Linux, ``%LOCALAPPDATA%\\furnace`` on Windows)."""
    named = os.environ.get(NOTIFY_FILE_ENV)
    if named:
        return Path(named)
    import platformdirs  # only when asked for

    return Path(platformdirs.user_config_dir("furnace", appauthor=False)) / "notify.toml"


def resolve_notify(station_notify: NotifyConfig | None) -> NotifyConfig | None:
    """The station's ``[notify]``; without one, the user's notify file (the same keys at
    its top level) if it exists; else None. Raises ``ConfigurationError`` (one line naming
    the file and field) for a user file that is not valid."""
    if station_notify is not None:
        return station_notify
    path = user_notify_path()
    if not path.is_file():
        return None
    return load_model(NotifyConfig, read_text(path), str(path))
