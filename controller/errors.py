"""The controller's own errors, below every other controller module so all can raise them.

    FurnaceError (drivers.errors)
    ├── ConfigurationError (drivers.errors)   bad recipe, station or argument
    │   └── RecipeError                        valid schema, but violates limits or physics
    └── RunStateError                          a runner command not allowed in this state
        └── StepDataError                      an operator step's data that fails its fields

Not here: the device errors (``drivers/errors.py``), records that cannot be written
(``RecordError``, ``controller/records/audit.py``) or read (``CheckpointError``).
"""

from __future__ import annotations

from drivers.errors import ConfigurationError, FurnaceError

__all__ = ["RecipeError", "RunStateError", "StepDataError"]


class RecipeError(ConfigurationError):
    """The recipe parses, but violates a station limit or the physics of the process."""


class RunStateError(FurnaceError):
    """A runner command that is not allowed in the current state."""


class StepDataError(RunStateError):
    """A confirmation whose step data is missing, unknown or out of bounds: bad input (exit
    code 2 from ``furnace ctl``); the step keeps waiting."""
