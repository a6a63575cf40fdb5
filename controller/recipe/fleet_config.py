"""A lab's fleet file (``furnace web --fleet fleet.toml``): the stations the lab overview
shows, each with its OPC UA endpoint and, optionally, its dashboard's address.

```toml
schema_version = 1
[[stations]]
name = "tube-1"
opcua = "opc.tcp://10.0.0.11:4840/furnace/"
dashboard = "http://10.0.0.11:8080/"
```
Not here: reading the stations (``controller.opcua.fleet``) or the page (``controller.web``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.recipe.validation import load_model, read_text

__all__ = ["Fleet", "FleetStation", "load_fleet"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FleetStation(_Model):
    """One station of the lab: its name, OPC UA endpoint and dashboard link."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_. -]{1,64}$")]
    opcua: Annotated[str, Field(pattern=r"^opc\.tcp://[^\s/]+(/\S*)?$", max_length=500)]
    dashboard: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$",
                                    max_length=500)] | None = None


class Fleet(_Model):
    """The lab's stations, each name once."""

    schema_version: Literal[1]
    stations: Annotated[tuple[FleetStation, ...], Field(min_length=1, max_length=100)]

    @model_validator(mode="after")
    def _unique_names(self) -> Fleet:
        names = [s.name for s in self.stations]
        if len(set(names)) != len(names):
            raise ValueError("two stations share a name")
        return self


def load_fleet(path: Path) -> Fleet:
    """The fleet file at ``path``. Raises ``ConfigurationError`` (one line naming the file
    and the field) if it cannot be read or is not valid."""
    return load_model(Fleet, read_text(path), str(path))
