"""``furnace plan``: what a recipe will take on a station, predicted by running it on the
station's simulated twin (``controller.predict``): stages, operator steps, total, gas,
peak and which twin it was (``describe_twin``); ``--json`` for scripts. The recipe's
nominal programme (``summarize``) is shown beside it, for comparison.

Imported by the front door (``controller.cli``) only when ``plan`` is chosen: it brings the
station factory and with it the simulator (a prediction is a dry run without records).
Not here: the prediction itself (``predict``) or the other commands that open no bus
(``cli_tools``).
"""

from __future__ import annotations

import argparse
import json
import logging

from rich.console import Console
from rich.table import Table

from controller.cli import EXIT_OK
from controller.cli_tools import add_recipe_arguments, execute, load_inputs
from controller.predict import predict_plan
from controller.recipe.plan import summarize
from controller.recipe.station import describe_twin
from controller.text import hm

__all__ = ["add_arguments", "main"]

_QUIET = ("controller.run", "drivers")


def _plan_arguments(plan: argparse.ArgumentParser) -> None:
    add_recipe_arguments(plan)
    plan.add_argument("--json", action="store_true",
                      help="print the prediction as JSON (stages, operator steps, total, "
                           "gas, peak, twin)")


def _say(out: Console, text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def cmd_plan(args: argparse.Namespace, out: Console) -> int:
    """Predict the recipe on the station's twin; print it (or its JSON). Exit 0, or 2 for
    bad input. Takes as long as a dry run (seconds per hour of batch)."""
    station, _, _, plan, _ = load_inputs(args)
    nominal = summarize(plan, station)
    for name in _QUIET:  # the simulated batch's state changes are not news here
        logging.getLogger(name).setLevel(logging.WARNING)
    predicted = predict_plan(plan, station)
    if args.json:
        out.print_json(json.dumps({**predicted.to_dict(), "station": station.name,
                                   "twin": describe_twin(station),
                                   "nominal_s": round(nominal.duration_s, 1),
                                   "nominal_gas_l": {g: round(v, 3)
                                                     for g, v in nominal.gas_l.items()}}))
        return EXIT_OK
    table = Table(title=f"{plan.sample_name} on {station.name}: predicted on the simulated "
                        "twin")
    for col in ("stage", "atmosphere", "starts", "predicted", "nominal"):
        table.add_column(col)
    for stage, times, nom in zip(plan.stages, predicted.stages, nominal.stages, strict=True):
        table.add_row(stage.name, stage.atmosphere,
                      hm(times.start_s), hm(times.duration_s), hm(nom.duration_s))
    table.add_section()
    table.add_row("total", "", "", hm(predicted.total_s), hm(nominal.duration_s))
    out.print(table)
    if predicted.outcome != "completed":
        _say(out, f"warning: the simulated batch ended {predicted.outcome}")
    for op in predicted.operator_steps:
        when = hm(op.start_s) if op.start_s is not None else "not reached"
        _say(out, f"operator step {op.index} ({op.stage}) due at {when}: {op.label}")
    _say(out, f"peak temperature: {predicted.peak_c:.0f} °C (setpoint {nominal.peak_c:g} °C)")
    for gas, litres in predicted.gas_l.items():
        _say(out, f"{gas}: {litres:.1f} L (nominal {nominal.gas_l.get(gas, 0.0):.1f} L)")
    _say(out, "operator steps take the time the recipe expects (expected_min)")
    _say(out, f"twin: {describe_twin(station)}")
    for note in plan.notes:
        _say(out, f"{args.recipe}: note: {note}")
    return EXIT_OK


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declare ``plan``'s arguments (``controller.cli.CommandModule``)."""
    del command
    _plan_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Run ``furnace plan``; the exit code (``controller.cli.CommandModule``)."""
    return execute(cmd_plan, args)
