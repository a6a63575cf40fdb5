"""The ``[opcua]`` section of a station file: where the station's OPC UA server listens and
who may call its methods. Passwords are never in a file: ``password_env`` names the
environment variable that holds one (read by the composition root, ``user_passwords``).

Not here: the server (``controller.opcua``) or the ``--opcua`` flag, which overrides
``host`` and ``port``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.errors import ConfigurationError

__all__ = ["DEFAULT_OPCUA_PORT", "OpcUaConfig", "OpcUaUser", "user_passwords"]

#: The IANA port of OPC UA's binary protocol.
DEFAULT_OPCUA_PORT: Final = 4840
_NAME = r"^[A-Za-z0-9_.@-]{1,64}$"
_ENV = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpcUaUser(_Model):
    """One user who may call the methods (Hold, Resume, Stop, Abort, Confirm)."""

    name: Annotated[str, Field(pattern=_NAME)]
    password_env: Annotated[str, Field(pattern=_ENV)]


class OpcUaConfig(_Model):
    """The station's OPC UA server: bound to loopback unless ``host`` says otherwise.
    Beyond loopback, anonymous clients only read; methods need one of ``users``."""

    host: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.:_-]+$")] \
        = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = DEFAULT_OPCUA_PORT
    users: Annotated[tuple[OpcUaUser, ...], Field(max_length=50)] = ()

    @model_validator(mode="after")
    def _unique_users(self) -> OpcUaConfig:
        names = [u.name for u in self.users]
        if len(set(names)) != len(names):
            raise ValueError("two [[opcua.users]] share a name")
        return self


def user_passwords(config: OpcUaConfig | None, environ: Mapping[str, str]
                   ) -> dict[str, str]:
    """Each user's password, read from ``environ`` (the composition root passes
    ``os.environ``). Raises ``ConfigurationError`` naming the variable that is unset or
    empty: a user who cannot log in is a mistake to catch before the batch starts."""
    passwords: dict[str, str] = {}
    for user in config.users if config is not None else ():
        password = environ.get(user.password_env, "")
        if not password:
            raise ConfigurationError(f"the environment variable {user.password_env} (the "
                                     f"password of OPC UA user {user.name}) is not set",
                                     field="opcua.users")
        passwords[user.name] = password
    return passwords
