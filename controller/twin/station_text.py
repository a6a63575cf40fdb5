"""A station file's text with its ``[twin]`` section (and ``[twin.fit]``) replaced by a fitted
one: the rest of the file, comments included, is kept as the lab wrote it.

Not here: the fit (``fitting``) or checking the result (the caller loads it back as a
station before writing it).
"""

from __future__ import annotations

import re
from typing import Any, Final

import tomli_w

from controller.twin.fitting import TwinFit

__all__ = ["twin_section", "with_twin"]

_HEADER: Final = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_SIGNIFICANT: Final = 5


def _round(value: float) -> float:
    return float(f"{value:.{_SIGNIFICANT}g}")


def twin_section(fit: TwinFit) -> dict[str, Any]:
    """The ``[twin]`` table of ``fit``: every parameter (the fitted ones and those held), and
    ``[twin.fit]``: when, from which batches, how well, how sure, what was left out."""
    r = fit.result
    batches = list(r.rms_k)
    return {
        **{name: _round(value) for name, value in r.params.as_dict().items()},
        "fit": {
            "fitted_utc": fit.fitted_utc,
            "batches": batches,
            "rms_k": [round(r.rms_k[b], 3) for b in batches],
            "one_sigma": {name: _round(value) for name, value in r.one_sigma.items()},
            "excluded": list(fit.excluded),
        },
    }


def _without_twin(text: str) -> str:
    """``text`` without its ``[twin]`` and ``[twin.*]`` tables (header to the next header)."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        header = _HEADER.match(line)
        if header is not None:
            name = header.group(1)
            skipping = name == "twin" or name.startswith("twin.")
        if not skipping:
            kept.append(line)
    return "".join(kept)


def with_twin(text: str, fit: TwinFit) -> str:
    """The station file ``text`` with ``fit``'s ``[twin]`` in place of any it had."""
    body = _without_twin(text).rstrip() + "\n"
    comment = (f"\n# The furnace's twin, fitted by `furnace twin fit` at {fit.fitted_utc} from "
               f"{len(fit.result.rms_k)} batch(es).\n# Dry runs and `furnace plan` on this "
               "station play it; delete the section to go back to the built-in furnace.\n")
    return body + comment + tomli_w.dumps({"twin": twin_section(fit)})
