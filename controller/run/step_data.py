"""What an operator step records: the values its fields ask for, checked (a person's entry)
or filled in (a simulated station's operator), and the ``operator_confirmed`` audit fields.

Not here: declaring the fields and checking one value (``controller.recipe.steps``), when a
step may be confirmed (``runner``, ``step_kinds``) or where the simulated values come from
(the simulator's world, handed in as ``Readings``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from controller.errors import StepDataError
from controller.recipe.steps import Material, OperatorStep, StepValue, check_step_data

__all__ = ["Readings", "checked_data", "confirmation", "simulated_data"]

#: The simulated operator's hands: ``readings(sample_action)`` carries the action out on
#: the simulated sample (a wash washes it) and returns what a person would have written
#: down, by role (``STEP_DATA_ROLES``).
Readings = Callable[[str], Mapping[str, StepValue]]

_DIGITS: Final = {"g": 4, "pH": 1}  # how a person writes a balance or a pH meter down


def checked_data(step: OperatorStep, data: Mapping[str, object]) -> dict[str, StepValue]:
    """A person's entry for ``step``, checked against its fields. Raises
    ``StepDataError`` naming the field and the rule; nothing is recorded then."""
    try:
        return check_step_data(step.fields, data)
    except ValueError as exc:
        raise StepDataError(f"confirm refused: {exc}") from None


def simulated_data(step: OperatorStep, readings: Readings | None, material: Material | None,
                   mass_g: float | None) -> tuple[dict[str, StepValue], str]:
    """The values a simulated station's operator records for ``step``, and where they came
    from: the simulated sample (``readings``, which also carries out the step's action);
    without it (a simulator served over a bus) the recipe's nominal material and the
    balance's reading ``mass_g``. Fields with nothing to fill them are left out."""
    if readings is not None:
        by_role: dict[str, StepValue] = dict(readings(step.sample_action))
        source = "simulated sample"
    else:
        by_role = {}
        if material is not None and step.sample_action == "load":
            by_role.update(precursor_g=material.precursor_g, acid_g=material.acid_g,
                           sample_g=material.mass_g)
        if mass_g is not None and step.sample_action != "load":
            by_role["sample_g"] = mass_g
        source = "nominal (recipe)"
    by_role.setdefault("note", "simulated batch: no person recorded this step")
    data: dict[str, StepValue] = {}
    for f in step.fields:
        value = by_role.get(f.role or f.name)
        if value is None:
            continue
        if isinstance(value, float) and f.kind == "number":
            value = round(value, _DIGITS.get(f.unit, 4))
        elif f.kind == "integer" and not isinstance(value, str):
            value = int(value)
        data[f.name] = value
    return data, source


def confirmation(step: OperatorStep, index: int, data: Mapping[str, StepValue], *,
                 operator: str, how: str, simulated: bool, source: str) -> dict[str, Any]:
    """The ``operator_confirmed`` audit record's fields (docs: the batch record)."""
    return {"index": index, "stage": step.stage, "message": step.message,
            "sample_action": step.sample_action, "operator": operator, "how": how,
            "data": dict(data), "roles": {f.name: f.role for f in step.fields if f.role},
            "units": {f.name: f.unit for f in step.fields if f.unit},
            "simulated": simulated, "data_source": source}
