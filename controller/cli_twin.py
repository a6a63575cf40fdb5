"""``furnace twin fit BATCH_DIR... --station FILE [-o NEW_STATION]`` and ``furnace twin tune
RECIPE --station FILE``: a twin of the station's own furnace (issue 16).

``fit`` fits the simulator's physical parameters to the batches' records, prints them with
their uncertainty and each batch's replay error, draws recorded against replayed, and writes
the station file with the ``[twin]`` section (default: ``FILE``'s name with ``-twin``; the
station given is never changed unless ``-o`` names it). ``tune`` plays the recipe's
approaches to its setpoints on the station's twin with the instrument's present PID terms
(the ``[twin]``'s) and suggests terms that keep overshoot within a limit.

Imported by the front door only when ``twin`` is chosen: it brings numpy, scipy and
matplotlib. Exit 0 done, 2 bad input or a fit refused (nothing written). Not here: the
fit's rules (``controller.twin``) or the physics (``simulator.twin``).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from controller.cli import EXIT_FAILED, EXIT_OK
from controller.cli_tools import execute
from controller.recipe.parameters import parse_overrides
from controller.recipe.plan import load_recipe
from controller.recipe.station import (
    BUILTIN_STATION,
    load_station,
    load_station_text,
    twin_bounds,
)
from controller.recipe.steps import Cool, Dwell, OperatorStep, Plan, Ramp
from controller.records.folder import AUDIT_FILE
from controller.text import span
from controller.twin.figure import write_fit_png
from controller.twin.fitting import TwinFit, fit_station, station_twin
from controller.twin.station_text import with_twin, without_twin
from drivers.errors import ConfigurationError
from simulator.twin.params import PARAM_UNITS
from simulator.twin.tune import (
    AUTOTUNE_CAVEAT,
    PID_TERMS,
    Approach,
    Response,
    output_jitter_pct,
    pv_noise_k,
    responses,
    suggest_terms,
)

__all__ = ["add_arguments", "main"]

_SETTLE_BAND_C = 2.0  # a ramp's settling band where no dwell follows with its own


def _kelvin(text: str) -> float:
    """``--overshoot-max-k``: a finite number of kelvin, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0.0):
        raise argparse.ArgumentTypeError(f"expected a number of kelvin, 0 or more, got {text!r}")
    return value


def _arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="twin_command", required=True, parser_class=type(parser))
    fit = sub.add_parser("fit", help="fit the station's twin to its past batches")
    fit.add_argument("batch_dirs", nargs="+", metavar="BATCH_DIR",
                     help="batch folders recorded on the station's furnace")
    fit.add_argument("--station", required=True, help="the station file the batches ran on")
    fit.add_argument("-o", "--output", default=None, metavar="NEW_STATION",
                     help="station file to write with the [twin] (default: STATION-twin.toml)")
    tune = sub.add_parser("tune", help="the loop's overshoot and settling at a recipe's "
                                       "setpoints on the twin, and PID terms to try")
    tune.add_argument("recipe", help="recipe TOML file")
    tune.add_argument("--station", required=True, help="station file with the [twin]")
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a recipe parameter (repeatable)")
    tune.add_argument("--overshoot-max-k", type=_kelvin, default=5.0, metavar="K",
                      help="the overshoot the suggested terms must keep within (default 5 K)")


def _say(out: Console, text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def _number(value: float) -> str:
    return f"{value:.4g}"


def _output_path(args: argparse.Namespace) -> Path:
    """``-o``, or beside the station. Raises ``ConfigurationError`` when neither is a file:
    the built-in station is none."""
    if args.output == BUILTIN_STATION:
        raise ConfigurationError("names the built-in station: give -o a file to write",
                                 source=args.output)
    if args.output is not None:
        return Path(args.output)
    if args.station == BUILTIN_STATION:
        raise ConfigurationError("the built-in station is no file to write beside: give -o "
                                 "the file to write", source=args.station)
    station = Path(args.station)
    return station.with_name(f"{station.stem}-twin{station.suffix or '.toml'}")


def _print_fit(out: Console, fit: TwinFit) -> None:
    r = fit.result
    table = Table(title="twin parameters (1 sigma: how well these batches pin each value)",
                  title_justify="left")
    for col in ("parameter", "before", "fitted", "± 1 sigma", "unit"):
        table.add_column(col, justify="left" if col == "parameter" else "right")
    start, fitted = fit.start.as_dict(), r.params.as_dict()
    for name, value in fitted.items():
        sigma = r.one_sigma.get(name)
        table.add_row(name, _number(start[name]), _number(value),
                      _number(sigma) if sigma is not None else "held", PARAM_UNITS[name])
    out.print(table)
    per_batch = Table(title="replay of each batch's working setpoint through the twin",
                      title_justify="left")
    per_batch.add_column("batch", no_wrap=True)
    for col in ("used", "left out", "furnace K RMS", "output % RMS"):
        per_batch.add_column(col, justify="right")
    for b in fit.batches:
        if b.batch in r.rms_k:
            rms = (f"{r.rms_k[b.batch]:.2f}", f"{r.output_rms_pct[b.batch]:.1f}")
        else:  # nothing of it was usable: its lines below say why
            rms = ("not used", "")
        per_batch.add_row(b.batch, span(b.used_s), str(len(b.excluded)), *rms)
    out.print(per_batch)
    for line in fit.excluded:
        _say(out, line)
    tube = fit.tube
    if tube is None:
        why = fit.tube_note or "no purge of air with an O2 reading in these batches"
        _say(out, f"tube gas volume not fitted: {why}; {fit.tube_start_l:g} L kept")
    else:
        fits = ", ".join(f"{b} {v:.3f} decades RMS" for b, v in tube.rms_decades.items())
        _say(out, f"tube gas volume: {tube.volume_l:.4g} L ± {tube.one_sigma_l:.2g} from the "
                  f"O2 falling in the purges ({fits}); the station said "
                  f"{fit.tube_start_l:g} L")
    _say(out, "held, not fitted: max_power_w (power, mass and losses are known only as "
              "ratios: give the element's rating) and the output limits (the instrument's "
              "settings)")


def _check_output(target: Path, text: str, station: str) -> None:
    """Refuse, before the fit, a station to write that cannot be written, that would go into
    a batch folder (over or beside its records: the station a batch froze is a likely
    ``--station``), or that would not load where it goes (its maps named by paths relative to
    its folder). Raises ``ConfigurationError`` naming ``target``."""
    if not target.parent.is_dir():
        raise ConfigurationError(f"no folder {target.parent} to write the station in",
                                 source=str(target))
    if target.is_dir():
        raise ConfigurationError("is a folder: name the station file to write",
                                 source=str(target))
    for folder in (target.parent, target.parent.parent):  # the batch's own and its maps/
        if (folder / AUDIT_FILE).is_file():
            raise ConfigurationError(f"is in the batch folder {folder}, whose records are never "
                                     "written: give -o a file elsewhere", source=str(target))
    try:
        load_station_text(text, str(target))
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc.reason} (written here, the station reads its maps "
                                 f"from this folder: write it beside {station}, or name the "
                                 "maps by absolute paths)", source=exc.source,
                                 field=exc.field) from None


def _write(target: Path, text: str, fit: TwinFit) -> Path:
    """Write the station and its figure; on failure, neither. Returns the figure's path.
    Raises ``ConfigurationError`` naming ``target``."""
    png = target.with_name(f"{target.stem}.fit.png")
    tmp = target.with_name(target.name + ".tmp")
    written: list[Path] = []
    try:
        tmp.write_text(text, encoding="utf-8")
        written.append(tmp)
        write_fit_png(fit, png)
        written.append(png)
        os.replace(tmp, target)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise ConfigurationError(f"cannot write the station: {exc.strerror or exc}",
                                 source=str(target)) from None
    return png


def cmd_fit(args: argparse.Namespace, out: Console) -> int:
    """Fit, print, draw and write the station with its twin. Exit 0, or 2 (nothing written)."""
    target = _output_path(args)
    station, text = load_station(args.station)
    _check_output(target, text, args.station)
    without_twin(text, args.station)  # its old twin can be replaced: known before the fit
    dirs = [Path(d) for d in args.batch_dirs]
    fit = fit_station(dirs, station, args.station)
    new_text = with_twin(text, fit, source=args.station)
    load_station_text(new_text, str(target))
    _print_fit(out, fit)
    png = _write(target, new_text, fit)
    _say(out, f"figure: {png}")
    _say(out, f"station with the twin: {target} (dry runs and `furnace plan --station "
              f"{target}` now play it; `furnace twin tune RECIPE --station {target}` reports "
              "the loop's overshoot)")
    return EXIT_OK


def approaches(plan: Plan, ambient_c: float) -> tuple[Approach, ...]:
    """Each ramp of ``plan`` to a setpoint, from where the furnace then is, with the band of
    the dwell that follows (or ``_SETTLE_BAND_C``); the same approach once."""
    found: list[Approach] = []
    at_c = ambient_c
    steps = plan.steps
    for i, step in enumerate(steps):
        if isinstance(step, Ramp):
            after = steps[i + 1] if i + 1 < len(steps) else None
            band_c = after.band_c if isinstance(after, Dwell) else _SETTLE_BAND_C
            a = Approach(at_c, step.to_c, step.rate_c_per_min, band_c)
            if a not in found and abs(step.to_c - at_c) > band_c:
                found.append(a)
            at_c = step.to_c
        elif isinstance(step, Cool):
            at_c = step.to_c
        elif isinstance(step, OperatorStep) and step.opens_tube:
            at_c = max(ambient_c, at_c)
    return tuple(found)


def _response_table(title: str, rows: tuple[tuple[Approach, Response], ...]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("setpoint", "approach", "overshoot K", "settled within", "band"):
        table.add_column(col)
    for a, r in rows:
        table.add_row(f"{a.to_c:g} °C", f"from {a.from_c:g} °C at {a.rate_c_per_min:g} °C/min",
                      f"{r.overshoot_k:.1f}", span(r.settling_s), f"± {a.band_c:g} K")
    return table


def cmd_tune(args: argparse.Namespace, out: Console) -> int:
    """Print the overshoot and settling with the present terms and a suggestion. Exit 0
    when the present terms meet the limit or a suggestion does, 1 when none does."""
    station, _ = load_station(args.station)
    _, plan, _ = load_recipe(args.recipe, parse_overrides(args.set), station)
    twin = station_twin(station)
    ambient_c = station.envelope.ambient_c
    found = approaches(plan, ambient_c)
    if not found:
        raise ConfigurationError("no ramp to a setpoint to judge the loop on", source=args.recipe)
    now = responses(twin, found, ambient_c)
    terms = ", ".join(f"{n} {getattr(twin, n):g}" for n in PID_TERMS)
    out.print(_response_table(f"present terms ({terms}) on the twin",
                              tuple(zip(found, now, strict=True))))
    limit = args.overshoot_max_k
    noise_k = pv_noise_k(station.furnace.thermocouple)
    suggestion = suggest_terms(twin, found, ambient_c, limit, pv_noise_k=noise_k,
                               bounds=twin_bounds())
    if suggestion is None:
        _say(out, f"no terms tried keep every overshoot within {limit:g} K: slow the ramps "
                  "into the setpoints")
        status = EXIT_FAILED
    else:
        if suggestion.is_current:
            _say(out, f"the present terms keep every overshoot within {limit:g} K and settle "
                      f"about as fast as any of {suggestion.candidates_tried} others tried: "
                      "keep them")
        else:
            new = ", ".join(f"{n} {getattr(suggestion.params, n):.3g}" for n in PID_TERMS)
            out.print(_response_table(
                f"suggested terms ({new}), the best of {suggestion.candidates_tried} tried",
                tuple(zip(found, suggestion.responses, strict=True))))
            _say(out, f"output jitter on the Type {station.furnace.thermocouple} "
                      f"thermocouple's noise ({noise_k:g} K): "
                      f"{output_jitter_pct(twin, noise_k):.1f} % now, "
                      f"{output_jitter_pct(suggestion.params, noise_k):.1f} % with these")
        status = EXIT_OK
    if station.twin is None:
        whose = ("warning: this station has no [twin] (furnace twin fit): these are the "
                 "built-in furnace's figures")
    elif station.twin.fit is None:
        whose = "warning: this station's [twin] is set by hand, not fitted to its batches"
    else:
        whose = f"the twin was fitted at {station.twin.fit.fitted_utc}"
    _say(out, f"{whose}; {AUTOTUNE_CAVEAT}")
    return status


_COMMANDS = {"fit": cmd_fit, "tune": cmd_tune}


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Declare ``command``'s arguments (``controller.cli.CommandModule``)."""
    _arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Run ``args.command``; the exit code (``controller.cli.CommandModule``)."""
    return execute(_COMMANDS[args.twin_command], args)
