"""A station file's text with its ``[twin]`` section (and ``[twin.fit]``) replaced by a fitted
one: the rest of the file, comments included, is kept as the lab wrote it.

A twin may be written as tables (``[twin]``, ``[twin.fit]``, ``["twin"]``), or as dotted keys
or an inline table among the top-level keys (``twin.tc_tau_s = 90``); each is taken out,
with the note an earlier fit wrote above it (the lab's own comments stay). What is left is
checked to be the file without its twin, value for value; a twin written so that it
cannot be taken out line by line (a value spanning lines) is refused.

Not here: the fit (``fitting``) or checking the result (the caller loads it back as a
station before writing it).
"""

from __future__ import annotations

import re
import tomllib
from typing import Any, Final

import tomli_w

from controller.twin.fitting import TwinFit
from drivers.errors import ConfigurationError

__all__ = ["twin_section", "with_twin", "without_twin"]

_HEADER: Final = re.compile(r"^\s*\[\[?(?P<key>[^\[\]#]+)\]\]?\s*(#.*)?$")
_TOP_LEVEL_TWIN: Final = re.compile(r"""^\s*(twin|"twin"|'twin')\s*[.=]""")
_SIGNIFICANT: Final = 5
#: How the note ``with_twin`` writes above the ``[twin]`` starts, line by line.
_NOTE_STARTS: Final = ("# The furnace's twin, fitted by `furnace twin fit`",
                       "# Dry runs and `furnace plan` on this station play it")


def _round(value: float) -> float:
    return float(f"{value:.{_SIGNIFICANT}g}")


def twin_section(fit: TwinFit) -> dict[str, Any]:
    """The ``[twin]`` table of ``fit``: every parameter (the fitted ones and those held), and
    ``[twin.fit]``: when, from which batches, how well, how sure, what was left out."""
    r = fit.result
    batches = list(r.rms_k)
    sigma = {name: _round(value) for name, value in r.one_sigma.items()}
    tube: dict[str, float] = {}
    if fit.tube is not None:
        tube["tube_volume_l"] = _round(fit.tube.volume_l)
        sigma["tube_volume_l"] = _round(fit.tube.one_sigma_l)
    elif fit.station_tube_l is not None:  # the station's own [twin] gave one: kept
        tube["tube_volume_l"] = fit.station_tube_l
    return {
        **{name: _round(value) for name, value in r.params.as_dict().items()},
        **tube,
        "fit": {
            "fitted_utc": fit.fitted_utc,
            "batches": batches,
            "rms_k": [round(r.rms_k[b], 3) for b in batches],
            "one_sigma": sigma,
            "excluded": list(fit.excluded),
        },
    }


def _table(line: str) -> str | None:
    """The top-level name of the table a header line opens, or None if it is no header."""
    header = _HEADER.match(line)
    if header is None:
        return None
    try:
        return next(iter(tomllib.loads(f"[{header.group('key')}]\n")))
    except tomllib.TOMLDecodeError:
        return None


def _without_twin(text: str) -> str:
    """``text`` without its twin: ``[twin]`` and ``[twin.*]`` tables (header to the next
    header; the note ``with_twin`` wrote above it), and top-level keys that start with
    ``twin``. Comment lines directly above the next table stay: they are its own."""
    lines = text.splitlines(keepends=True)
    drop = [False] * len(lines)
    in_twin = False
    top_level = True
    for i, line in enumerate(lines):
        name = _table(line)
        if name is not None:
            top_level = False
            in_twin = name == "twin"
            above = i - 1
            while above >= 0 and lines[above].lstrip().startswith("#"):
                # Comments directly above a table are its own (a note on the next table
                # stays), but only this module's note on a fit goes with the twin.
                drop[above] = in_twin and lines[above].startswith(_NOTE_STARTS)
                above -= 1
        drop[i] = in_twin or (top_level and _TOP_LEVEL_TWIN.match(line) is not None)
    return "".join(line for line, dropped in zip(lines, drop, strict=True) if not dropped)


def without_twin(text: str, source: str) -> str:
    """The station file ``text`` without its twin, the rest as written. Raises
    ``ConfigurationError`` naming ``source`` if the twin cannot be taken out line by line
    (what is left would not be the file without it)."""
    kept = _without_twin(text)
    try:
        whole = {k: v for k, v in tomllib.loads(text).items() if k != "twin"}
        same = tomllib.loads(kept) == whole
    except tomllib.TOMLDecodeError:
        same = False
    if not same:
        raise ConfigurationError("written in a way `furnace twin fit` cannot replace (a value "
                                 "spanning lines?): write it as a [twin] table, or delete it",
                                 source=source, field="twin")
    return kept


def with_twin(text: str, fit: TwinFit, *, source: str) -> str:
    """The station file ``text`` with ``fit``'s ``[twin]`` in place of any it had. Raises
    ``ConfigurationError`` naming ``source`` as ``without_twin``."""
    body = without_twin(text, source).rstrip() + "\n"
    comment = (f"\n{_NOTE_STARTS[0]} at {fit.fitted_utc} from {len(fit.result.rms_k)} "
               f"batch(es).\n{_NOTE_STARTS[1]}; delete the section to go back to the built-in "
               "furnace.\n")
    return body + comment + tomli_w.dumps({"twin": twin_section(fit)})
