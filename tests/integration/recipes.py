"""The small recipes the integration tests and benchmarks run, each written once.

Every recipe is TOML text, as a recipe file holds it, built from the pieces below so that a
purge, a ramp or a dwell is spelled in one place; ``write(folder, TEXT)`` puts it in a file
for ``load_recipe`` or ``furnace run``. The built-in station caps every ramp at its
instrument's fallback rate (3.5 °C/min, decision 0005), so ``rate_c_per_min = 10`` below
runs at 3.5 °C/min (``furnace plan`` says so).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = [
    "AIR_PREOX", "HOT_AR", "KILL", "MINI_HEADLINE", "OUTAGE", "QUICK_AR", "SIGNAL",
    "SIGNAL_RAMP_C_PER_MIN", "STALL", "TINY", "cool", "dwell", "end", "pitch",
    "preoxidation", "purge", "purge_step", "ramp", "recipe", "stage", "step", "table",
    "write",
]

Value = str | int | float | bool | dict[str, int | float]


def _toml(value: Value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _fields(**fields: Value) -> str:
    return "".join(f"{key} = {_toml(value)}\n" for key, value in fields.items())


def table(name: str, **fields: Value) -> str:
    """``[name]`` and its fields (``[parameters.x]``, ``[sample_material]``)."""
    return f"[{name}]\n{_fields(**fields)}"


def step(kind: str, **fields: Value) -> str:
    return f"[[stages.steps]]\n{_fields(kind=kind, **fields)}"


def stage(name: str, *steps: str, atmosphere: str = "Ar", **fields: Value) -> str:
    return f"[[stages]]\n{_fields(name=name, atmosphere=atmosphere, **fields)}" + "".join(steps)


def recipe(name: str, sample: str, *stages: str, head: str = "") -> str:
    """A whole recipe: ``head`` (tables such as ``[sample_material]``) before the stages."""
    return _fields(schema_version=1, name=name, sample=sample) + head + "".join(stages)


def purge_step(volumes: int = 8, gas: str = "Ar", flow_sccm: int = 1000) -> str:
    return step("purge", gas=gas, flow_sccm=flow_sccm, volumes=volumes)


def purge(volumes: int = 8, gas: str = "Ar", flow_sccm: int = 1000) -> str:
    """Purge the tube with ``gas``, then keep 200 sccm of it flowing."""
    return purge_step(volumes, gas, flow_sccm) + step("gas", flows_sccm={gas: 200})


def ramp(to_c: float | str, rate_c_per_min: float = 10) -> str:
    return step("ramp", to_c=to_c, rate_c_per_min=rate_c_per_min)


def dwell(duration_min: float) -> str:
    return step("dwell", duration_min=duration_min, band_c=5)


def cool(to_c: float, rate_c_per_min: float = 5) -> str:
    return step("cool", to_c=to_c, rate_c_per_min=rate_c_per_min)


def end() -> str:
    return step("end")


def preoxidation(to_c: float, rate_c_per_min: float, duration_min: float) -> str:
    """Air pre-oxidation as in profiles/pop70-600-1600.toml: 200 sccm air, a ramp and a
    dwell, under the same exotherm guard."""
    return stage("pre-oxidation", step("gas", flows_sccm={"air": 200}),
                 ramp(to_c, rate_c_per_min), dwell(duration_min), atmosphere="air",
                 exotherm_guard={"stop_delta_c": 15, "stop_rate_c_per_min": 3,
                                 "cut_delta_c": 25})


def pitch(acid_wt: int) -> str:
    """The sample: 2 g of pitch with ``acid_wt`` wt% H3PO4."""
    return table("sample_material", precursor="pitch", acid_wt=acid_wt, mass_g=2.0)


def write(folder: Path, text: str, name: str = "recipe.toml") -> Path:
    """``text`` as the recipe file ``folder/name``."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- the recipes -------------------------------------------------------------------------

# Argon: purge, to 600 °C, 60 min dwell, controlled cool to 400 °C (about 5 h planned). The
# fault campaign's "quick" recipe and the interlock tests'.
QUICK_AR = recipe("fc-quick", "FC-Q600", stage("purge", purge()),
                  stage("heat", ramp(600), dwell(60)), stage("cool", cool(400), end()))

# Air pre-oxidation with the exotherm guard (as profiles/pop70), then the switch to argon
# below the air limit and a short argon heat to 400 °C (about 3 h planned).
AIR_PREOX = recipe("fc-air", "FC-AIR50", preoxidation(220, 5, 30),
                   stage("argon switch", purge()), stage("heat", ramp(400), dwell(10)),
                   stage("cool", cool(350), end()), head=pitch(50))

# Carbonisation where heat matters: to 1600 °C within the station's ramp limits, 30 min
# dwell, controlled cool to 1400 °C (about 9.2 h planned).
HOT_AR = recipe("fc-hot", "FC-H1600", stage("purge", purge()),
                stage("carbonisation", ramp(1000), ramp(1600, 5), dwell(30)),
                stage("cool", cool(1400), end()))

# Purge, to 400 °C, 20 min dwell, cool to 330 °C (about 2.7 h planned): the kill -9 campaign's.
KILL = recipe("kill-test", "KILL", stage("purge", purge(6)),
              stage("heat", ramp(400), dwell(20)), stage("cool", cool(330), end()))

# One argon stage: purge, to 600 °C, 60 min dwell, cool to 300 °C (about 5.4 h planned; the
# outage tests').
OUTAGE = recipe("outage-test", "OUTAGE",
                stage("preheat", purge(6), ramp(600), dwell(60), cool(300), end()))

# One argon stage: purge, ramp to 400 °C, cool to 300 °C, no dwell (about 2.5 h planned;
# the stall and supervision tests').
STALL = recipe("stall-test", "STALL", stage("heat", purge(6), ramp(400), cool(300), end()))

# One argon stage heated at the built-in instrument's fallback rate: not capped, one rate
# limit (about 2.3 h planned; the signal tests').
SIGNAL_RAMP_C_PER_MIN = 3.5
SIGNAL = recipe("signal-test", "SIG",
                stage("heat", purge(6), ramp(400, SIGNAL_RAMP_C_PER_MIN), dwell(20), end()))

# The shortest batch that still purges, heats under argon, dwells and ends (about 35 min):
# for tests about a batch as a whole (a lock, a refused second run) rather than its process.
TINY = recipe("tiny", "TINY", stage("heat", purge(4), ramp(100, 3.5), dwell(2), end()))

# The headline's stages and steps in its order (profiles/pop70-600-1600.toml: air
# pre-oxidation with the exotherm guard, the switch to argon, a preheat dwell, the cool below
# the open-tube limit for the wash, the operator's wash, the argon purge, a carbonisation
# dwell, the cool-down), at lower temperatures and with 5-minute dwells: 4.4 h of process
# time (3.3 h planned: cooling below 100 °C is slow) instead of 30 h.
MINI_HEADLINE = recipe(
    "mini-headline", "MINI",
    preoxidation(120, 3.5, 5),
    stage("argon switch", purge()),
    stage("preheat", ramp(200, 3.5), dwell(5)),
    stage("cool for wash", cool(100, 3.5)),
    stage("wash", step("operator", message="Wash the solid, reload the boat.",
                       opens_tube=True, sample_action="wash", flows_sccm={})),
    stage("argon purge", purge()),
    stage("carbonisation", ramp(300, 3.5), dwell(5)),
    stage("cool-down", cool(250, 3.5), end()),
    head=pitch(70))
